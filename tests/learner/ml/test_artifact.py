from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from learner.ml.artifact import META_FILE, data_fingerprint
from learner.ml.config import Mode, TrainConfig
from learner.ml.train import HEAD_FILE, TextClassifier

LABELS = ["positive", "negative", "neutral"]
Toy = tuple[list[str], list[int]]


@pytest.fixture
def tiny_config(tiny_model_dir: Path) -> TrainConfig:
    return TrainConfig(
        model_name_or_path=str(tiny_model_dir), max_length=32, batch_size=8, epochs=1,
        learning_rate=1e-3, device="cpu",
    )


@pytest.mark.parametrize("mode", ["full", "lora", "head"])
def test_save_load_round_trip_gives_identical_probabilities(
    tiny_config: TrainConfig, toy_texts: Toy, tmp_path: Path, mode: Mode
) -> None:
    texts, labels = toy_texts
    clf = TextClassifier(replace(tiny_config, mode=mode), LABELS).fit(
        texts, labels, doc_ids=list(range(100, 160))
    )
    clf.save(tmp_path / "model", metrics={"holdout": {"accuracy": 0.5}})
    loaded = TextClassifier.load(tmp_path / "model", device="cpu")

    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    np.testing.assert_array_equal(loaded.embed(texts[:5]), clf.embed(texts[:5]))
    assert loaded.config == clf.config
    assert loaded.labels == LABELS
    assert loaded.temperature_ == pytest.approx(clf.temperature_)
    assert loaded.rung_ == clf.rung_ == mode
    assert loaded.pooling_ == clf.pooling_
    assert loaded.data_fingerprint_ == clf.data_fingerprint_
    assert loaded.metrics_["holdout"] == {"accuracy": 0.5}
    assert loaded.metrics_["n_train"] == clf.metrics_["n_train"]


def test_saved_folder_is_a_sentence_transformers_model(
    tiny_config: TrainConfig, toy_texts: Toy, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    texts, labels = toy_texts
    clf = TextClassifier(replace(tiny_config, mode="full"), LABELS).fit(texts, labels)
    clf.save(tmp_path)
    vectors = SentenceTransformer(str(tmp_path), device="cpu").encode(texts)
    np.testing.assert_allclose(vectors, clf.embed(texts), atol=1e-5)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "sentence_bert_config.json").read_text())[
        "max_seq_length"] == 32


def test_lora_adapters_are_merged_before_saving(
    tiny_config: TrainConfig, toy_texts: Toy, tmp_path: Path
) -> None:
    texts, labels = toy_texts
    TextClassifier(replace(tiny_config, mode="lora"), LABELS).fit(texts, labels).save(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert not [k for k in keys if "lora" in k or "base_model" in k]
    assert set(load_file(tmp_path / HEAD_FILE)) == {"weight", "bias", "temperature"}


def test_labelwise_json_describes_the_model(
    tiny_config: TrainConfig, toy_texts: Toy, tmp_path: Path
) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="head", task_type="multi_label")
    Y = np.eye(3, dtype=int)[labels]
    clf = TextClassifier(config, LABELS).fit(texts, Y)
    clf.save(tmp_path)

    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["format_version"] == 2
    assert meta["labels"] == LABELS
    assert meta["task_type"] == "multi_label"
    assert TrainConfig.from_dict(meta["config"]) == config
    assert meta["pooling"] == {"modes": ["mean"], "normalize": False, "source": "default"}
    assert meta["temperature"] == pytest.approx(clf.temperature_)
    assert clf.thresholds_ is not None
    assert meta["thresholds"] == pytest.approx(clf.thresholds_.tolist())
    assert meta["data_fingerprint"] == clf.data_fingerprint_
    assert {"n_train", "n_validation", "validation", "history", "ladder",
            "calibration"} <= set(meta["metrics"])
    assert {"torch", "transformers"} <= set(meta["versions"])
    loaded = TextClassifier.load(tmp_path, device="cpu")
    np.testing.assert_array_equal(loaded.predict(texts), clf.predict(texts))


def test_a_model_saved_by_another_format_version_is_refused_with_a_clear_error(
    tiny_config: TrainConfig, toy_texts: Toy, tmp_path: Path
) -> None:
    texts, labels = toy_texts
    TextClassifier(replace(tiny_config, mode="head"), LABELS).fit(texts, labels).save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(ValueError, match="train a new round"):
        TextClassifier.load(tmp_path)


def test_fingerprint_ignores_order_but_sees_every_label_and_document() -> None:
    ids, labels = [3, 1, 2], ["a", "b", "a"]
    reference = data_fingerprint(ids, labels)
    assert len(reference) == 64
    assert data_fingerprint([1, 2, 3], ["b", "a", "a"]) == reference  # same pairs, reordered
    assert data_fingerprint(ids, ["a", "b", "b"]) != reference  # one label changed
    assert data_fingerprint([3, 1, 4], labels) != reference  # another document
    assert data_fingerprint(ids[:2], labels[:2]) != reference  # one fewer
    multi = data_fingerprint([1, 2], [["x", "y"], ["y"]])
    assert data_fingerprint([1, 2], [["y", "x"], ["y"]]) == multi  # a label set has no order
    assert data_fingerprint([1, 2], [["x"], ["y"]]) != multi
    # One label and a one-label set are the same labeled document.
    assert data_fingerprint(ids, [[lab] for lab in labels]) == reference


def test_fit_fingerprints_the_labeled_data(tiny_config: TrainConfig, toy_texts: Toy) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="head")
    ids = list(range(60))
    first = TextClassifier(config, LABELS).fit(texts, labels, doc_ids=ids).data_fingerprint_
    flipped = [*labels[:-1], (labels[-1] + 1) % 3]
    second = TextClassifier(config, LABELS).fit(texts, flipped, doc_ids=ids).data_fingerprint_
    assert first == data_fingerprint(ids, [LABELS[i] for i in labels])
    assert first != second
