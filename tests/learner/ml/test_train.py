from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModel

from learner.ml.calibration import softmax, tune_thresholds
from learner.ml.config import Mode, TrainConfig
from learner.ml.tasks.multi_label import pos_weights
from learner.ml.tasks.single_label import class_weights
from learner.ml.train import (
    TextClassifier,
    _set_gradual_trainable,
    build_loss,
    build_model,
    crossfits,
    param_groups,
    plan_epochs,
    refit_steps,
    unused_parameters,
    validation_noise,
    validation_split,
)

LABELS = ["positive", "negative", "neutral"]
Toy = tuple[list[str], list[int]]


@pytest.fixture
def tiny_config(tiny_model_dir: Path) -> TrainConfig:
    return TrainConfig(
        model_name_or_path=str(tiny_model_dir), max_length=32, batch_size=8, epochs=2,
        learning_rate=1e-3, head_learning_rate=1e-3, device="cpu",
        crossfit_max_labels=0,  # the validation-split path; cross-fitting has its own tests
    )


def _multi_targets(labels: list[int]) -> np.ndarray:
    """Each text gets its own class plus, for every 4th text, the next one."""
    Y = np.eye(3, dtype=np.int64)[labels]
    Y[::4, 1] = 1
    return Y


@pytest.mark.parametrize("mode", ["auto", "full", "head", "gradual", "lora"])
def test_every_mode_fits_and_gives_probability_rows(
    tiny_config: TrainConfig, toy_texts: Toy, mode: Mode
) -> None:
    texts, labels = toy_texts
    clf = TextClassifier(replace(tiny_config, mode=mode), LABELS).fit(texts, labels)

    probs = clf.predict_proba(texts[:10])
    assert probs.shape == (10, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert clf.predict(texts[:10]).tolist() == probs.argmax(axis=1).tolist()
    assert clf.embed(texts[:10]).shape == (10, 32)
    assert clf.metrics_["n_train"] + clf.metrics_["n_validation"] == len(texts)
    assert clf.metrics_["ladder"]["pick"] == clf.rung_
    assert clf.rung_ == (mode if mode != "auto" else clf.rung_)
    assert "head" in clf.metrics_["ladder"]["candidates"]


@pytest.mark.parametrize("mode", ["full", "head"])
def test_multi_label_gives_independent_probabilities_and_tuned_thresholds(
    tiny_config: TrainConfig, toy_texts: Toy, mode: Mode
) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode=mode, task_type="multi_label")
    clf = TextClassifier(config, LABELS).fit(texts, _multi_targets(labels))

    probs = clf.predict_proba(texts)
    assert probs.shape == (60, 3)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert clf.thresholds_ is not None and clf.thresholds_.shape == (3,)
    assert ((clf.thresholds_ > 0) & (clf.thresholds_ < 1)).all()
    np.testing.assert_array_equal(clf.predict(texts), (probs >= clf.thresholds_).astype(int))


def test_multi_label_accepts_lists_of_label_names(tiny_config: TrainConfig, toy_texts: Toy) -> None:
    texts, labels = toy_texts
    y = [[LABELS[i]] + (["negative"] if n % 4 == 0 else []) for n, i in enumerate(labels)]
    config = replace(tiny_config, mode="head", task_type="multi_label")
    by_name = TextClassifier(config, LABELS).fit(texts, y)
    by_matrix = TextClassifier(config, LABELS).fit(texts, _multi_targets(labels))
    assert by_name.data_fingerprint_ == by_matrix.data_fingerprint_
    np.testing.assert_allclose(by_name.predict_proba(texts), by_matrix.predict_proba(texts))


def _encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "pooler" not in k}


def test_head_only_leaves_the_encoder_unchanged_and_full_changes_it(
    tiny_config: TrainConfig, tiny_model_dir: Path, toy_texts: Toy
) -> None:
    texts, labels = toy_texts
    pretrained = _encoder_state(AutoModel.from_pretrained(tiny_model_dir))

    head = TextClassifier(replace(tiny_config, mode="head"), LABELS).fit(texts, labels)
    after_head = _encoder_state(head.model_.encoder)
    assert all(torch.equal(pretrained[k], after_head[k]) for k in pretrained)

    full = TextClassifier(replace(tiny_config, mode="full"), LABELS).fit(texts, labels)
    after_full = _encoder_state(full.model_.encoder)
    changed = [k for k in pretrained if not torch.equal(pretrained[k], after_full[k])]
    assert any("encoder.layer.0." in k for k in changed)
    assert any("embeddings" in k for k in changed)


def test_every_mode_reads_the_checkpoints_pooling_not_the_cls_pooler(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    """The head classifies the pooled vector the checkpoint declares (mean for a plain
    one); BERT's pooler is never used, so it stays as loaded."""
    from learner.ml.encoder import embed, load_encoder

    texts, labels = toy_texts
    clf = TextClassifier(replace(tiny_config, mode="head"), LABELS).fit(texts, labels)
    tokenizer, encoder = load_encoder(tiny_config.model_name_or_path, device="cpu")
    np.testing.assert_allclose(clf.embed(texts[:5]),
                               embed(texts[:5], tokenizer=tokenizer, model=encoder,
                                     max_length=32), atol=1e-5)
    full = TextClassifier(replace(tiny_config, mode="full"), LABELS).fit(texts, labels)
    pooler = {k: v for k, v in full.model_.encoder.state_dict().items() if "pooler" in k}
    original = {k: v for k, v in encoder.state_dict().items() if "pooler" in k}
    assert pooler and all(torch.equal(pooler[k], original[k]) for k in pooler)


def test_param_groups_cover_each_trainable_parameter_once_without_decay_on_norms(
    tiny_config: TrainConfig,
) -> None:
    model, _ = build_model(tiny_config, 3)
    unused = {id(p) for p in unused_parameters(model)}
    names = {id(p): n for n, p in model.named_parameters() if id(p) not in unused}
    groups = param_groups(model, replace(tiny_config, weight_decay=0.05))

    covered = [id(p) for g in groups for p in g["params"]]
    assert sorted(covered) == sorted(names)  # every used parameter exactly once
    assert unused and not unused & set(covered)  # the unused pooler is left out
    for group in groups:
        for param in group["params"]:
            name = names[id(param)]
            exempt = name.endswith("bias") or "LayerNorm" in name
            assert group["weight_decay"] == (0.0 if exempt else 0.05), name


def test_learning_rate_decays_layer_by_layer_with_its_own_head_rate(
    tiny_config: TrainConfig,
) -> None:
    model, _ = build_model(tiny_config, 3)
    config = replace(tiny_config, learning_rate=1e-4, layer_lr_decay=0.5, head_learning_rate=3e-3)
    lrs = {g["name"].split("/")[0]: g["lr"] for g in param_groups(model, config)}
    assert lrs == pytest.approx(
        {"head": 3e-3, "layer_1": 1e-4, "layer_0": 5e-5, "embeddings": 2.5e-5}
    )


def test_training_length_scales_with_the_label_count_and_is_capped() -> None:
    config = TrainConfig(batch_size=16, min_steps=150, max_epochs=20, max_steps=600)
    assert plan_epochs(80, config) == (20, 5, 100)  # few labels: max_epochs binds
    assert plan_epochs(400, config) == (6, 25, 150)  # enough epochs for min_steps
    epochs, per_epoch, total = plan_epochs(20_000, config)
    assert (per_epoch, total) == (1250, 600) and epochs == 1  # the cap bounds round time
    assert plan_epochs(400, replace(config, epochs=3)) == (3, 25, 75)  # a lead's choice
    assert plan_epochs(400, replace(config, max_steps=None, min_steps=5000)) == (20, 25, 500)


def test_training_reports_progress_up_to_the_total(tiny_config: TrainConfig, toy_texts: Toy
                                                   ) -> None:
    texts, labels = toy_texts
    calls: list[tuple[str, int, int]] = []
    config = replace(tiny_config, mode="full", early_stopping_patience=5)
    TextClassifier(config, LABELS).fit(texts, labels, progress=lambda *a: calls.append(a))
    train = [c for c in calls if c[0] == "train"]
    assert [c[1] for c in train] == list(range(1, len(train) + 1))
    assert train[-1][1] == train[-1][2]
    assert {"features", "head", "validate", "calibrate"} <= {c[0] for c in calls}


def test_refit_trains_as_many_epochs_as_the_kept_one_on_every_label() -> None:
    history = [{"epoch": -1.0, "steps": 0.0, "kept": 1.0},
               {"epoch": 0.0, "steps": 5.0, "kept": 1.0},
               {"epoch": 1.0, "steps": 10.0, "kept": 1.0},
               {"epoch": 2.0, "steps": 15.0, "kept": 0.0}]
    assert refit_steps(history, 80, 100) == 13  # 10 steps on 80 labels: 2 epochs of 100
    # The starting point kept: fine-tuning never beat the probe, nothing to refit.
    assert refit_steps([history[0], {**history[1], "kept": 0.0}], 80, 100) == 0
    assert refit_steps([], 80, 100) == 0


def test_the_picked_rung_is_trained_again_on_every_label(tiny_config: TrainConfig,
                                                          toy_texts: Toy) -> None:
    """The validation split's labels are used twice: to choose how long to train, then as
    training data. The model kept is the refit, not the validation run's (kept in
    ``candidates_``), and the round's progress shows the refit as its own phase."""
    texts, labels = toy_texts
    calls: list[tuple[str, int, int]] = []
    config = replace(tiny_config, mode="full", epochs=None, min_steps=10, max_epochs=3)
    clf = TextClassifier(config, LABELS).fit(texts, labels, keep_candidates=True,
                                             progress=lambda *a: calls.append(a))
    refit = clf.metrics_["ladder"]["refit"]
    kept = [h["steps"] for h in clf.metrics_["history"] if h.get("kept")][-1]
    n_train = clf.metrics_["n_train"]
    assert refit["n"] == len(texts) > n_train
    assert refit["steps"] == refit_steps(clf.metrics_["history"], n_train, len(texts)) > kept
    steps = [c for c in calls if c[0] == "refit"]
    assert steps[-1][1] == steps[-1][2] == refit["steps"]
    assert not np.allclose(clf.predict_proba(texts),
                           clf.candidates_["full"].predict_proba(texts))
    assert clf.metrics_["calibration"]["on"] == "validation"  # the validation run's logits

    without = TextClassifier(replace(config, refit_max_labels=0), LABELS).fit(
        texts, labels, keep_candidates=True)
    assert without.metrics_["ladder"]["refit"] is None
    np.testing.assert_allclose(without.predict_proba(texts),
                               without.candidates_["full"].predict_proba(texts), atol=1e-6)


def test_few_labels_cross_fit_the_rungs_and_refit_the_pick_on_every_label(
        tiny_config: TrainConfig, toy_texts: Toy) -> None:
    """Every label is scored out of fold: the rung choice and the temperature rest on all
    60, not on the dozen a validation split would hold, and the model kept trains on all
    60 for the mean of the steps the folds kept."""
    texts, labels = toy_texts
    calls: list[tuple[str, int, int]] = []
    config = replace(tiny_config, mode="auto", ladder_min_labels=10, crossfit_max_labels=200,
                     crossfit_folds=3, epochs=None, min_steps=10, max_epochs=3)
    assert crossfits(config, len(texts))
    clf = TextClassifier(config, LABELS).fit(texts, labels,
                                             progress=lambda *a: calls.append(a))
    ladder = clf.metrics_["ladder"]
    assert ladder["folds"] == 3
    assert clf.metrics_["n_validation"] == clf.metrics_["n_train"] == len(texts)
    full, head = ladder["candidates"]["full"], ladder["candidates"]["head"]
    assert full["folds"] == 3 and 0 <= full["val_score"] <= 1 and 0 <= head["val_score"] <= 1
    assert head["tolerance"] == pytest.approx(
        validation_noise(max(full["val_score"], head["val_score"]), len(texts)), abs=1e-4)
    assert clf.metrics_["calibration"]["n"] == len(texts)
    if clf.rung_ == "full":
        assert clf.metrics_["calibration"]["on"] == "out-of-fold"
        assert ladder["refit"]["n"] == len(texts) and ladder["refit"]["steps"] > 0
        refit = [c for c in calls if c[0] == "refit"]
        assert refit[-1][1] == refit[-1][2] == ladder["refit"]["steps"]
    # The folds' training reports one rising count over all of them.
    train = [c for c in calls if c[0] == "train"]
    assert [c[1] for c in train] == sorted(c[1] for c in train)
    assert len({c[2] for c in train}) == 1
    probs = clf.predict_proba(texts)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_cross_fitting_applies_to_few_labels_and_never_from_a_warm_start() -> None:
    config = TrainConfig(crossfit_max_labels=200, min_examples_for_validation=40)
    assert crossfits(config, 100)
    assert not crossfits(config, 30)  # too few even for folds: the head alone
    assert not crossfits(config, 201)  # enough for a validation split
    assert not crossfits(config, 100, warm=True)  # the warm encoder saw every fold
    assert not crossfits(replace(config, refit_max_labels=0), 100)
    assert not crossfits(replace(config, mode="head"), 100)
    assert not crossfits(replace(config, crossfit_max_labels=0), 100)
    with pytest.raises(ValueError):
        TrainConfig(crossfit_max_labels=100, crossfit_folds=1)


def test_the_same_seed_gives_identical_probabilities(tiny_config: TrainConfig, toy_texts: Toy
                                                     ) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="full")
    first = TextClassifier(config, LABELS).fit(texts, labels).logits(texts)
    second = TextClassifier(config, LABELS).fit(texts, labels).logits(texts)
    other = TextClassifier(replace(config, seed=1), LABELS).fit(texts, labels)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other.logits(texts))


def test_full_fine_tuning_learns_an_easy_task(tiny_config: TrainConfig, toy_texts: Toy) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="full", epochs=10, learning_rate=3e-3,
                     head_learning_rate=3e-3, validation_fraction=0.0, lp_init=False)
    clf = TextClassifier(config, LABELS).fit(texts, labels)
    losses = [h["train_loss"] for h in clf.metrics_["history"]]
    assert losses[-1] < 0.7 * losses[0]
    assert (clf.predict(texts) == np.array(labels)).mean() > 0.5  # chance is 1/3


def test_auto_fits_only_the_head_below_the_ladders_label_count(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="auto", ladder_min_labels=1000)
    clf = TextClassifier(config, LABELS).fit(texts, labels)
    assert clf.rung_ == "head"
    assert list(clf.metrics_["ladder"]["candidates"]) == ["head"]
    # The head kept every label (it was not held back for a comparison that never ran),
    # and was calibrated on its cross-validated logits.
    assert clf.metrics_["calibration"]["on"] == "cross-validation"
    assert clf.metrics_["calibration"]["n"] == len(texts)


def test_auto_scores_every_rung_on_validation_and_keeps_the_deepest_within_noise(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="auto", ladder=("lora", "full"), ladder_min_labels=10)
    clf = TextClassifier(config, LABELS).fit(texts, labels)
    candidates = clf.metrics_["ladder"]["candidates"]
    assert list(candidates) == ["head", "lora", "full"]
    scores = {rung: c["val_score"] for rung, c in candidates.items()}
    tolerance = candidates["head"]["tolerance"]
    n_val = clf.metrics_["n_validation"]
    assert tolerance == pytest.approx(validation_noise(max(scores.values()), n_val), abs=1e-4)
    within = [r for r in ["head", "lora", "full"] if scores[r] >= max(scores.values()) - tolerance]
    assert clf.rung_ == within[-1]
    assert all(c["seconds"] >= 0 for c in candidates.values())


def test_validation_overrules_fine_tuning_only_beyond_its_noise() -> None:
    assert validation_noise(0.8, 0) == 0.0
    assert validation_noise(0.8, 20) == pytest.approx((0.8 * 0.2 / 20) ** 0.5)
    assert validation_noise(0.8, 2000) < validation_noise(0.8, 20) / 9
    assert validation_noise(1.0, 100) == validation_noise(0.95, 100)  # never zero


def test_a_fine_tuning_rung_that_never_helps_comes_back_as_it_started(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    """With nothing learnt (zero learning rates) the kept epoch is the starting point: the
    probe's head on the unchanged encoder."""
    texts, labels = toy_texts
    config = replace(tiny_config, mode="full", learning_rate=0.0, head_learning_rate=0.0,
                     calibrate=False)
    clf = TextClassifier(config, LABELS).fit(texts, labels)
    history = clf.metrics_["history"]
    assert history[0]["epoch"] == -1.0
    assert {h["val_score"] for h in history} == {history[0]["val_score"]}
    probe = TextClassifier(replace(config, mode="head"), LABELS).fit(texts, labels)
    np.testing.assert_allclose(clf.embed(texts), probe.embed(texts), atol=1e-6)


def test_probabilities_are_calibrated_by_a_fitted_temperature(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    texts, labels = toy_texts
    clf = TextClassifier(replace(tiny_config, mode="full", refit_max_labels=0), LABELS).fit(
        texts, labels)
    calibration = clf.metrics_["calibration"]
    assert calibration["on"] == "validation"
    assert calibration["temperature"] == pytest.approx(clf.temperature_, rel=1e-4)
    assert clf.temperature_ != 1.0
    # Both recorded; "after" may read worse on these few validation texts, which the
    # temperature deliberately does not fit exactly (tests/learner/ml/test_calibration.py).
    assert 0 <= calibration["ece_before"] <= 1 and 0 <= calibration["ece_after"] <= 1
    logits = clf.logits(texts[:6])
    np.testing.assert_allclose(clf.predict_proba(texts[:6]),
                               softmax(logits / clf.temperature_), atol=1e-5)
    raw = TextClassifier(replace(tiny_config, mode="full", calibrate=False), LABELS).fit(
        texts, labels)
    assert raw.temperature_ == 1.0


def test_labels_may_be_given_by_name(tiny_config: TrainConfig, toy_texts: Toy) -> None:
    texts, labels = toy_texts
    config = replace(tiny_config, mode="head")
    by_index = TextClassifier(config, LABELS).fit(texts, labels)
    by_name = TextClassifier(config, LABELS).fit(texts, [LABELS[i] for i in labels])
    np.testing.assert_array_equal(by_index.predict_proba(texts), by_name.predict_proba(texts))


def test_mc_dropout_samples_differ_but_repeat_for_a_seed(tiny_config: TrainConfig, toy_texts: Toy
                                                         ) -> None:
    texts, labels = toy_texts
    clf = TextClassifier(replace(tiny_config, mode="head"), LABELS).fit(texts, labels)
    torch.manual_seed(99)
    before = torch.rand(1)
    torch.manual_seed(99)
    samples = clf.mc_dropout_proba(texts[:8], n_samples=4, seed=5)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    assert samples.shape == (4, 8, 3)
    np.testing.assert_allclose(samples.sum(axis=2), 1.0, atol=1e-5)
    assert not np.allclose(samples[0], samples[1])
    np.testing.assert_array_equal(samples, clf.mc_dropout_proba(texts[:8], n_samples=4, seed=5))
    assert not clf.model_.training  # dropout is off again for normal prediction


def test_class_weights_are_balanced_inverse_frequencies() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(weights, [4 / (3 * 3), 4 / (3 * 1), 1.0])
    assert weights.dtype == np.float32
    np.testing.assert_allclose(class_weights(np.array([0, 1, 2, 0, 1, 2]), 3), 1.0)


def test_pos_weights_are_negatives_over_positives() -> None:
    Y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(pos_weights(Y), [3.0, 1.0, 1 / 3])


def test_class_weighting_is_used_by_the_head(tiny_config: TrainConfig, toy_texts: Toy) -> None:
    texts, labels = toy_texts
    skewed = [0 if i < 45 else labels[i] for i in range(60)]
    config = replace(tiny_config, mode="head", head_c=1.0, calibrate=False)
    with_w = TextClassifier(config, LABELS).fit(texts, skewed).predict_proba(texts)
    without = TextClassifier(replace(config, class_weighting=False), LABELS).fit(texts, skewed)
    # Up-weighting the rare classes raises their predicted probability on average.
    assert with_w[:, 1:].mean() > without.predict_proba(texts)[:, 1:].mean()


def test_validation_split_is_stable_as_labels_grow() -> None:
    """A document's side never depends on the others: one validated on later was never
    trained on earlier, which keeps a warm-started round's early stopping honest."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    keys = [f"doc-{i}" for i in range(2000)]
    small_train, small_val = validation_split(keys[:500], y[:500], fraction=0.2, seed=0,
                                              min_examples=40)
    train, val = validation_split(keys, y, fraction=0.2, seed=0, min_examples=40)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 2000
    assert set(small_val) <= set(val) and set(small_train) <= set(train)
    assert 0.17 < len(val) / 2000 < 0.23
    for c in range(3):  # roughly stratified
        assert 0.15 < np.isin(np.flatnonzero(y == c), val).mean() < 0.25
    other_seed = validation_split(keys, y, fraction=0.2, seed=1, min_examples=40)[1]
    assert set(other_seed) != set(val)


def test_validation_split_is_skipped_when_data_is_small_and_keeps_every_class() -> None:
    y = np.array([0] * 30 + [1] * 10)
    train, val = validation_split([str(i) for i in range(40)], y, fraction=0.2, seed=0,
                                  min_examples=50)
    assert len(val) == 0 and len(train) == 40
    y = np.array([0] * 60 + [1])
    train, val = validation_split([str(i) for i in range(61)], y, fraction=0.999, seed=0,
                                  min_examples=10)
    assert 60 in train and set(y[train]) == {0, 1}


def test_thresholds_are_tuned_per_label() -> None:
    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probs = np.array([[0.3, 0.1], [0.25, 0.2], [0.1, 0.9], [0.05, 0.6]])
    thresholds = tune_thresholds(Y, probs)
    assert 0.1 < thresholds[0] <= 0.25  # separates 0.25/0.3 from 0.1/0.05
    assert 0.6 < thresholds[1] <= 0.9


def test_gradual_unfreezing_opens_one_layer_per_epoch_from_the_top(
    tiny_config: TrainConfig,
) -> None:
    model, _ = build_model(tiny_config, 3)

    def trainable() -> set[str]:
        parts = set()
        for name, param in model.named_parameters():
            if param.requires_grad:
                parts.add("embeddings" if "embeddings" in name else
                          name.split(".")[3] if ".layer." in name else "head")
        return parts

    expected = [{"head"}, {"head", "1"}, {"head", "1", "0"}, {"head", "1", "0", "embeddings"}]
    for epoch, parts in enumerate(expected):
        _set_gradual_trainable(model, epoch)
        assert trainable() == parts
    assert not any(p.requires_grad for p in unused_parameters(model))


def test_predicting_before_fit_raises(tiny_config: TrainConfig) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        TextClassifier(tiny_config, LABELS).predict_proba(["x"])


def test_bad_config_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ladder"):
        TrainConfig(ladder=("head",))
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_config_round_trips_through_a_dict() -> None:
    config = TrainConfig(mode="lora", ladder=("lora", "full"), epochs=None, head_c=3.0)
    assert TrainConfig.from_dict({**config.to_dict(), "from_a_newer_version": 1}) == config


# ----------------------------------------------------------------- slow: the real MiniLM


def _split(rows: list[dict[str, Any]], n_train: int, n_test: int, seed: int = 0
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[i] for i in order[:n_train]], [rows[i] for i in order[n_train:n_train + n_test]]


def _holdout_check(clf: TextClassifier, test: list[dict[str, Any]], labels: list[str],
                   margin: float) -> float:
    truth = np.array([labels.index(r["label"]) for r in test])
    accuracy = float((clf.predict([r["text"] for r in test]) == truth).mean())
    majority = np.bincount(truth).max() / len(truth)
    assert accuracy >= majority + margin, (accuracy, majority)
    return accuracy


@pytest.mark.slow
def test_real_minilm_full_fine_tuning_beats_the_majority_class_on_bbc_news(
    real_dataset: Callable[[str], list[dict[str, Any]]],
) -> None:
    rows = real_dataset("bbc_news")
    labels = sorted({r["label"] for r in rows})
    train, test = _split(rows, 300, 300)
    # About a minute of training on 2 idle cores (capped at 60 steps at max_length 64).
    config = TrainConfig(mode="full", max_length=64, max_steps=60)
    clf = TextClassifier(config, labels).fit([r["text"] for r in train],
                                             [r["label"] for r in train])
    _holdout_check(clf, test, labels, margin=0.3)


@pytest.mark.slow
def test_real_minilm_head_only_beats_the_majority_class_on_bbc_news(
    real_dataset: Callable[[str], list[dict[str, Any]]],
) -> None:
    rows = real_dataset("bbc_news")
    labels = sorted({r["label"] for r in rows})
    train, test = _split(rows, 300, 300, seed=1)
    clf = TextClassifier(TrainConfig(mode="head", max_length=128), labels).fit(
        [r["text"] for r in train], [r["label"] for r in train]
    )
    _holdout_check(clf, test, labels, margin=0.3)


def test_local_backend_trains_and_scores_the_pool_chunk_by_chunk(
    tiny_config: TrainConfig, toy_texts: Toy
) -> None:
    from learner.ml.backends.local import LocalBackend
    from learner.ml.config import ScoreConfig

    texts, labels = toy_texts
    backend = LocalBackend(ScoreConfig(batch_size=4))
    clf = backend.train(replace(tiny_config, mode="head"), LABELS, texts, labels)
    pulled: list[int] = []

    def chunks() -> Iterator[tuple[list[int], list[str]]]:
        for start in range(0, 60, 25):
            pulled.append(start)
            yield list(range(start, min(start + 25, 60))), texts[start : start + 25]

    stream = backend.score_chunks(clf, chunks(), total=60)
    ids, probs, embeddings = next(stream)
    assert pulled == [0]  # lazy: the second chunk is not read before it is needed
    assert ids == list(range(25)) and probs.shape == (25, 3) and embeddings.shape == (25, 32)
    rest = list(stream)
    assert [len(r[0]) for r in rest] == [25, 10]
    all_probs = np.concatenate([probs] + [r[1] for r in rest])
    np.testing.assert_allclose(all_probs, clf.predict_proba(texts), atol=1e-6)


def test_label_smoothing_spreads_the_target_over_the_other_labels() -> None:
    targets = np.array([0, 1, 2, 0])
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
    y = torch.as_tensor(targets)
    plain = build_loss(TrainConfig(class_weighting=False), targets, 3)(logits, y)
    smooth = build_loss(TrainConfig(class_weighting=False, label_smoothing=0.3), targets, 3)
    # Confident right answers cost more once part of the target sits on the other labels:
    # (1 - 0.3 + 0.1) * plain + 0.1 * 2 * (4 + plain), the cross-entropy of the mixture.
    expected = 0.8 * plain + 0.2 * (4.0 + plain)
    assert float(smooth(logits, y)) == pytest.approx(float(expected), rel=1e-5)
    assert float(smooth(logits, y)) > float(plain)
