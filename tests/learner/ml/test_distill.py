from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.ml import distill
from learner.ml.calibration import match_temperature, softmax
from learner.ml.config import DistillConfig, TrainConfig
from learner.ml.distill import (
    Distiller,
    DistillLoss,
    every_other_layer,
    layer_list,
    student_from,
)
from learner.ml.exporting import OnnxTextClassifier
from learner.ml.serving import folder_size, measure_serving, write_onnx
from learner.ml.tasks import SINGLE_LABEL
from learner.ml.train import TextClassifier

from .conftest import NEGATIVE, NEUTRAL, POSITIVE

LABELS = ["positive", "negative", "neutral"]
Toy = tuple[list[str], list[int]]


def _texts(n: int, seed: int) -> Toy:
    """Toy texts like the ``toy_texts`` fixture's, from another seed."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        words = [POSITIVE, NEGATIVE, NEUTRAL][i % 3]
        texts.append(" ".join(rng.choice(words) for _ in range(rng.choice([2, 3, 5, 8, 13]))))
        labels.append(i % 3)
    return texts, labels


@pytest.fixture(scope="module")
def teacher(tiny_model_dir: Path, toy_texts: Toy) -> TextClassifier:
    """The tiny BERT (2 layers) fully fine-tuned on the toy task: it learns it."""
    torch.set_num_threads(1)
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), mode="full", max_length=32,
                         batch_size=8, epochs=2, learning_rate=1e-3, head_learning_rate=1e-3,
                         device="cpu", crossfit_max_labels=0)
    return TextClassifier(config, LABELS).fit(*toy_texts)


def _scrambled(teacher: TextClassifier, layers: Sequence[int] | None = None
               ) -> TextClassifier:
    """A student whose head starts random: on the toy task a pruned copy of the teacher
    agrees with it from the start, so this one has to learn what it agrees on."""
    student = student_from(teacher, layers)
    torch.manual_seed(0)
    student.model_.head.reset_parameters()
    return student


@pytest.fixture(scope="module")
def distilled(teacher: TextClassifier, toy_texts: Toy) -> Distiller:
    """A student keeping the teacher's bottom layer, with a random head, distilled."""
    torch.set_num_threads(1)
    pool, _ = _texts(240, seed=5)
    config = DistillConfig(layers=(0,), epochs=4, max_steps=30, learning_rate=1e-3,
                           head_learning_rate=1e-3, device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distill, "student_from", _scrambled)
        return Distiller(config).fit(teacher, pool, *toy_texts)


def test_every_other_layer_keeps_the_top_one() -> None:
    assert every_other_layer(6) == (1, 3, 5)
    assert every_other_layer(2) == (1,)
    assert every_other_layer(1) == (0,)


def test_the_student_keeps_every_other_layer_and_the_teachers_other_weights(
    teacher: TextClassifier,
) -> None:
    student = student_from(teacher)
    teacher_layers = layer_list(teacher.model_.encoder)[2]
    student_layers = layer_list(student.model_.encoder)[2]

    assert student.model_.encoder.config.num_hidden_layers == 1 == len(student_layers)
    assert teacher.model_.encoder.config.num_hidden_layers == 2 == len(teacher_layers)
    kept, original = student_layers[0].state_dict(), teacher_layers[1].state_dict()
    assert all(torch.equal(kept[name], original[name]) for name in original)
    assert torch.equal(student.model_.encoder.embeddings.word_embeddings.weight,
                       teacher.model_.encoder.embeddings.word_embeddings.weight)
    assert torch.equal(student.model_.head.weight, teacher.model_.head.weight)
    assert student.temperature_ == teacher.temperature_
    # A copy: training the student leaves the teacher as it was.
    assert student.model_.head.weight.data_ptr() != teacher.model_.head.weight.data_ptr()


def test_student_layers_must_be_increasing_indices_of_the_teachers(
    teacher: TextClassifier,
) -> None:
    for bad in [(), (2,), (1, 0), (0, 0), (-1,)]:
        with pytest.raises(ValueError):
            student_from(teacher, bad)


def test_the_distilled_student_agrees_with_the_teacher_on_new_texts(
    teacher: TextClassifier, distilled: Distiller,
) -> None:
    texts, gold = _texts(90, seed=99)
    said = teacher.predict(texts)
    # The teacher spreads its answers over the classes, so a constant or random student
    # agrees on about a third of the texts, as this one did before distillation.
    assert np.bincount(said, minlength=3).max() <= 0.5 * len(texts)
    assert np.mean(_scrambled(teacher, (0,)).predict(texts) == said) <= 0.6
    student = distilled.student_

    assert isinstance(student, TextClassifier) and student.rung_ == "distilled"
    assert student.model_.encoder.config.num_hidden_layers == 1
    assert np.mean(student.predict(texts) == said) >= 0.85
    assert distilled.agreement_ >= 0.8  # on the pool's held-out slice
    record = student.metrics_["distillation"]
    assert record["layers"] == [0] and record["teacher_layers"] == 2
    assert record["n_labelled"] == 60 and record["steps"] == 30  # the cap, not 4 epochs


def test_the_student_gets_its_own_temperature_matched_to_the_teacher(
    distilled: Distiller,
) -> None:
    student = distilled.student_
    calibration = student.metrics_["calibration"]

    assert calibration["on"] == "teacher, held-out pool" and calibration["n"] == 24
    assert student.temperature_ == pytest.approx(calibration["temperature"], rel=1e-4)
    assert float(student.model_.temperature) == pytest.approx(student.temperature_)


def test_the_student_saves_and_loads_as_a_smaller_model(
    teacher: TextClassifier, distilled: Distiller, tmp_path: Path,
) -> None:
    texts, _ = _texts(30, seed=11)
    student = distilled.student_
    folder = student.save(tmp_path / "student")
    loaded = TextClassifier.load(folder, device="cpu")

    assert loaded.model_.encoder.config.num_hidden_layers == 1
    np.testing.assert_allclose(loaded.predict_proba(texts), student.predict_proba(texts),
                               atol=1e-5)
    assert loaded.metrics_["distillation"]["layers"] == [0]
    assert folder_size(folder) < folder_size(teacher.save(tmp_path / "teacher"))


def test_the_int8_onnx_student_runs_and_agrees_with_the_float_one(
    distilled: Distiller, tmp_path: Path,
) -> None:
    texts, _ = _texts(60, seed=13)
    student = distilled.student_
    paths = write_onnx(student.save(tmp_path / "student"))
    int8 = OnnxTextClassifier(paths["int8"].parent, paths["int8"].name, threads=1)

    probs = int8.predict_proba(texts)
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert SINGLE_LABEL.agreement(probs, student.predict_proba(texts)) >= 0.9
    assert paths["int8"].stat().st_size < 0.5 * paths["float"].stat().st_size


def test_serving_figures_are_measured_for_a_classifier_and_an_onnx_file(
    distilled: Distiller, tmp_path: Path,
) -> None:
    texts, _ = _texts(20, seed=17)
    student = distilled.student_
    paths = write_onnx(student.save(tmp_path / "student"), int8=False)

    for model in (student, paths["float"]):
        figures = measure_serving(model, texts, batch_size=8, batches=2, singles=3,
                                  threads=1)
        assert figures.texts_per_second > 0 and figures.p50_ms > 0
        assert figures.size_bytes > 0 and figures.batch_size == 8
    assert measure_serving(paths["float"], texts, batches=1, singles=1
                           ).size_bytes == paths["float"].stat().st_size


def test_distillation_reports_progress_and_repeats_for_a_seed(
    teacher: TextClassifier,
) -> None:
    pool, _ = _texts(40, seed=21)
    config = DistillConfig(epochs=1, max_steps=3, batch_size=8, device="cpu",
                           holdout_fraction=0.0)
    seen: list[tuple[str, int, int]] = []
    first = Distiller(config).fit(teacher, pool,
                                  progress=lambda *event: seen.append(event)).student_
    again = Distiller(config).fit(teacher, pool).student_

    assert ("train", 3, 3) in seen and seen[-1] == ("calibrate", 1, 1)
    # No held-out slice and no labels: the teacher's temperature is kept.
    assert first.temperature_ == teacher.temperature_
    np.testing.assert_array_equal(first.predict_proba(pool), again.predict_proba(pool))


def test_validation_labels_calibrate_the_student_when_given(
    teacher: TextClassifier,
) -> None:
    pool, _ = _texts(40, seed=23)
    held, gold = _texts(30, seed=29)
    config = DistillConfig(epochs=1, max_steps=2, batch_size=8, device="cpu")
    student = Distiller(config).fit(teacher, pool, validation_texts=held,
                                    validation_labels=gold).student_

    assert student.metrics_["calibration"]["on"] == "validation"
    assert student.metrics_["validation"]["n"] == 30


def test_a_multi_label_teacher_distils_to_a_multi_label_student(
    teacher: TextClassifier, toy_texts: Toy,
) -> None:
    texts, labels = toy_texts
    Y = np.eye(3, dtype=np.int64)[labels]
    Y[::4, 1] = 1
    multi = TextClassifier(replace(teacher.config, mode="head", task_type="multi_label"),
                           LABELS).fit(texts, Y)
    student = Distiller(DistillConfig(epochs=1, max_steps=2, batch_size=8, device="cpu")
                        ).fit(multi, _texts(40, seed=31)[0], texts, Y).student_

    probs = student.predict_proba(texts[:5])
    assert probs.shape == (5, 3) and not np.allclose(probs.sum(axis=1), 1.0)
    assert student.thresholds_ is not None
    np.testing.assert_array_equal(student.thresholds_, multi.thresholds_)


def test_the_loss_is_the_scaled_kl_plus_the_labelled_texts_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    same = torch.full((2, 2, 3), -1.0)
    same[:, 0] = torch.softmax(logits / 2.0, dim=-1)
    loss = DistillLoss(2.0, hard_weight=1.0, task=SINGLE_LABEL)

    assert float(loss(logits, same)) == pytest.approx(0.0, abs=1e-6)
    labelled = same.clone()
    labelled[0, 1] = torch.tensor([0.0, 1.0, 0.0])
    ce = float(torch.nn.functional.cross_entropy(logits[:1], torch.tensor([1])))
    assert float(loss(logits, labelled)) == pytest.approx(ce / 2, rel=1e-5)


def test_a_temperature_is_matched_to_target_probabilities() -> None:
    logits = np.random.default_rng(0).normal(scale=3.0, size=(200, 4))

    matched = match_temperature(logits, softmax(logits / 2.5), task=SINGLE_LABEL)
    assert matched == pytest.approx(2.5, rel=1e-2)
    assert match_temperature(logits[:1], softmax(logits[:1]), task=SINGLE_LABEL) == 1.0


def test_bad_distill_config_fails_at_construction() -> None:
    for bad in [{"layers": ()}, {"temperature": 0.0}, {"max_steps": 0},
                {"holdout_fraction": 1.0}, {"hard_weight": -1.0}]:
        with pytest.raises(ValueError):
            DistillConfig(**bad)  # type: ignore[arg-type]
