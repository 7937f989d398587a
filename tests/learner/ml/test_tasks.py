"""Every task type through the same checks, then what sets each apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from learner.ml.config import TrainConfig
from learner.ml.evaluate import evaluate
from learner.ml.tasks import (
    MULTI_LABEL,
    SINGLE_LABEL,
    TASKS,
    MultiLabel,
    SingleLabel,
    Task,
    task_for,
    task_of,
    task_type_in,
)

LOGITS = np.array([[2.0, 0.0, -1.0], [-1.0, 3.0, 0.5], [0.2, 0.1, 0.0], [-2.0, -2.0, 1.0]])
# One complete answer per document, valid for every task.
ANSWERS = [[0], [1], [0], [2]]


@pytest.fixture(params=sorted(TASKS))
def task(request: pytest.FixtureRequest) -> Task:
    return task_for(request.param)


def test_task_for_knows_each_task_by_its_name_and_rejects_others(task: Task) -> None:
    assert task_for(task.name) is task
    assert task_for(task) is task
    with pytest.raises(ValueError, match="unknown task type"):
        task_for("spans_of_text")


def test_targets_round_trip_through_label_lists(task: Task) -> None:
    targets = task.targets(ANSWERS, 3)
    assert task.label_lists(targets) == ANSWERS
    assert len(targets) == len(ANSWERS)


def test_targets_reject_a_label_index_outside_the_schema(task: Task) -> None:
    with pytest.raises(ValueError, match="out of range"):
        task.targets([[0], [3]], 3)


def test_activation_gives_probabilities_in_the_unit_interval(task: Task) -> None:
    probs = task.activate(LOGITS)
    assert probs.shape == LOGITS.shape
    assert ((probs >= 0) & (probs <= 1)).all()
    # The torch activation (what the ONNX graph traces) computes the same numbers.
    traced = task.activate_tensor(torch.as_tensor(LOGITS)).numpy()
    np.testing.assert_allclose(traced, probs, atol=1e-6)


def test_decoding_confident_probabilities_gives_the_answers_back(task: Task) -> None:
    targets = task.targets(ANSWERS, 3)
    confident = np.full((len(ANSWERS), 3), 0.01)
    for row, labels in enumerate(ANSWERS):
        confident[row, labels] = 0.98
    assert task.predicted_lists(confident) == ANSWERS
    assert task.exact(targets, task.decode(confident)).all()
    assert task.macro_f1(targets, task.decode(confident)) == 1.0
    assert (task.confidence(confident) > 0.9).all()


def test_the_loss_is_lower_for_logits_that_agree_with_the_targets(task: Task) -> None:
    targets = task.targets(ANSWERS, 3)
    loss = task.loss(targets, 3, class_weighting=True)
    right = torch.full((4, 3), -4.0)
    for row, labels in enumerate(ANSWERS):
        right[row, labels] = 4.0
    tensor = task.tensor(targets)
    assert float(loss(right, tensor)) < float(loss(-right, tensor))
    # The numpy NLL (calibration's) agrees on which logits are better.
    assert task.nll(right.numpy(), targets) < task.nll(-right.numpy(), targets)
    # Moving mass off the truth makes perfectly confident logits look worse.
    assert task.nll(right.numpy(), targets, eps=0.1) > task.nll(right.numpy(), targets)


def test_cross_entropy_is_smallest_against_the_logits_own_probabilities(task: Task) -> None:
    own = task.activate(LOGITS)
    assert task.cross_entropy(LOGITS, own) < task.cross_entropy(LOGITS, task.activate(-LOGITS))


def test_the_linear_head_learns_separable_answers(task: Task) -> None:
    rng = np.random.default_rng(0)
    answers = [[j] for j in range(3) for _ in range(20)]
    X = np.eye(3)[[a[0] for a in answers]] * 3 + rng.normal(scale=0.1, size=(60, 3))
    targets = task.targets(answers, 3)
    assert task.learnable(targets)
    weight, bias = task.fit_linear(X, targets, 3, C=1.0, balanced=True, seed=0)
    probs = task.activate(X @ weight.T + bias)
    assert task.predicted_lists(probs) == answers


def test_metrics_count_what_decoding_predicts(task: Task) -> None:
    targets = task.targets(ANSWERS, 3)
    probs = task.activate(LOGITS)
    result = evaluate(targets, probs, ["a", "b", "c"], task=task)
    predicted = task.predicted_lists(probs)
    hits = [sum(j in p and j in t for p, t in zip(predicted, ANSWERS, strict=True))
            for j in range(3)]
    support = [sum(j in t for t in ANSWERS) for j in range(3)]
    per_class = result["per_class"].values()
    assert [row["support"] for row in per_class] == support
    assert [round(row["recall"] * s) for row, s in zip(per_class, support, strict=True)] \
        == hits
    assert 0.0 <= task.ece(probs, targets) <= 1.0
    assert result["accuracy"] == pytest.approx(float(task.exact(targets,
                                                                task.decode(probs)).mean()))


def test_macro_f1_counts_only_the_labels_present(task: Task) -> None:
    """A group without some label is not charged for it: scikit-learn's default label
    set, for both tasks."""
    answers = ANSWERS[:3]  # no document is, nor is predicted, label 2
    targets = task.targets(answers, 3)
    pred = task.targets([[0], [0], [1]], 3)  # decoded predictions take the targets' shape
    present = sorted({j for row in answers for j in row}
                     | {j for row in task.label_lists(pred) for j in row})
    assert 2 not in present
    expected = f1_score(task.indicator(targets, 3), task.indicator(pred, 3),
                        labels=present, average="macro", zero_division=0)
    assert task.macro_f1(targets, pred) == pytest.approx(expected)
    charged = f1_score(task.indicator(targets, 3), task.indicator(pred, 3),
                       average="macro", zero_division=0)
    assert task.macro_f1(targets, pred) > charged


def test_distillation_rows_and_losses_prefer_the_truth(task: Task) -> None:
    targets = task.targets(ANSWERS, 3)
    rows = task.hard_rows(targets, 3)
    assert rows.shape == (4, 3) and rows.dtype == np.float32
    assert [np.flatnonzero(r).tolist() for r in rows] == ANSWERS
    good = torch.as_tensor(rows * 8 - 4)
    hard = torch.as_tensor(rows)
    assert float(task.hard_loss(good, hard)) < float(task.hard_loss(-good, hard))
    soft = torch.as_tensor(task.activate(LOGITS), dtype=torch.float32)
    near = torch.as_tensor(LOGITS, dtype=torch.float32)
    assert float(task.soft_loss(near, soft)) < float(task.soft_loss(-near, soft))


def test_agreement_is_total_with_itself_and_lower_with_the_opposite(task: Task) -> None:
    probs = task.activate(LOGITS)
    assert task.agreement(probs, probs) == 1.0
    assert task.agreement(probs, task.activate(-LOGITS)) < 1.0
    assert np.isnan(task.agreement(probs[:0], probs[:0]))


def test_uncertainty_inputs_are_distributions_per_question(task: Task) -> None:
    probs = task.activate(LOGITS)
    dists = task.uncertainty_inputs(probs)
    assert dists.shape[0] == len(probs) and dists.ndim == 3
    np.testing.assert_allclose(dists.sum(axis=-1), 1.0)
    # Leading axes (MC samples) are kept.
    assert task.uncertainty_inputs(np.stack([probs, probs])).shape == (2, *dists.shape)
    # The gradient factor vanishes where the model is certain of its own prediction.
    certain = np.zeros((1, 3))
    certain[0, 1] = 1.0
    np.testing.assert_allclose(task.gradient_factor(certain), 0.0, atol=1e-12)


def test_the_sklearn_head_reproduces_the_tasks_probabilities(task: Task) -> None:
    rng = np.random.default_rng(1)
    weight, bias, X = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(7, 5))
    estimator = task.sklearn_head(weight, bias)
    np.testing.assert_allclose(estimator.predict_proba(X), task.activate(X @ weight.T + bias),
                               atol=1e-6)


# --- what sets them apart ---------------------------------------------------------------


def test_single_label_needs_exactly_one_label_per_document_and_two_in_the_schema() -> None:
    assert SINGLE_LABEL.accepts([1]) and not SINGLE_LABEL.accepts([]) \
        and not SINGLE_LABEL.accepts([0, 1])
    with pytest.raises(ValueError, match="one label"):
        SINGLE_LABEL.targets([[0, 1]], 3)
    with pytest.raises(ValueError, match="two labels"):
        SINGLE_LABEL.check_schema(1)
    assert not SINGLE_LABEL.learnable(SINGLE_LABEL.targets([[1], [1]], 2))
    assert SINGLE_LABEL.default_thresholds(3) is None


def test_single_label_decodes_the_argmax_and_keeps_the_softmax_row() -> None:
    probs = SINGLE_LABEL.activate(LOGITS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert SINGLE_LABEL.decode(probs).tolist() == LOGITS.argmax(axis=1).tolist()
    assert SINGLE_LABEL.uncertainty_inputs(probs).shape == (4, 1, 3)
    assert SINGLE_LABEL.fit_thresholds(SINGLE_LABEL.targets(ANSWERS, 3), probs) is None


def test_multi_label_takes_any_subset_and_decodes_by_threshold() -> None:
    assert MULTI_LABEL.accepts([]) and MULTI_LABEL.accepts([0, 2])
    targets = MULTI_LABEL.targets([[0, 2], []], 3)
    assert targets.tolist() == [[1, 0, 1], [0, 0, 0]]
    assert MULTI_LABEL.learnable(targets)
    probs = np.array([[0.6, 0.4, 0.9]])
    assert MULTI_LABEL.predicted_lists(probs) == [[0, 2]]
    assert MULTI_LABEL.predicted_lists(probs, [0.7, 0.3, 0.95]) == [[1]]
    assert MULTI_LABEL.uncertainty_inputs(probs).shape == (1, 3, 2)
    np.testing.assert_allclose(MULTI_LABEL.default_thresholds(3), 0.5)


def test_multi_label_thresholds_are_tuned_per_label() -> None:
    Y = MULTI_LABEL.targets([[0], [0], [], []], 2)
    probs = np.array([[0.3, 0.1], [0.35, 0.2], [0.1, 0.1], [0.05, 0.2]])
    thresholds = MULTI_LABEL.fit_thresholds(Y, probs)
    assert thresholds is not None
    assert MULTI_LABEL.predicted_lists(probs, thresholds) == [[0], [0], [], []]
    assert thresholds[1] == 0.5  # no positive example: left alone


def test_multi_label_agreement_counts_cells() -> None:
    a = np.array([[0.9, 0.9], [0.1, 0.1]])
    b = np.array([[0.9, 0.1], [0.1, 0.1]])
    assert MULTI_LABEL.agreement(a, b) == pytest.approx(0.75)
    assert SINGLE_LABEL.agreement(a, b) == pytest.approx(1.0)  # the top label only


# --- stored data -------------------------------------------------------------------------


def test_stored_dicts_name_their_task_old_and_new() -> None:
    assert task_type_in({"task_type": "multi_label"}) == "multi_label"
    assert task_type_in({"multi_label": True}) == "multi_label"
    assert task_type_in({"multi_label": False}) == "single_label"
    assert task_type_in({}) is None
    # A saved model's meta: top level first, then its config, then the default.
    assert task_of({"config": {"multi_label": True}}) is MULTI_LABEL
    assert task_of({"multi_label": True, "config": {}}) is MULTI_LABEL
    assert task_of({"config": {}}) is SINGLE_LABEL


def test_train_config_reads_configs_stored_before_task_types_had_names() -> None:
    old = {**TrainConfig().to_dict(), "multi_label": True}
    old.pop("task_type")
    assert TrainConfig.from_dict(old).task is MULTI_LABEL
    assert TrainConfig.from_dict(TrainConfig(task_type="multi_label").to_dict()).task \
        is MULTI_LABEL
    assert TrainConfig().task is SINGLE_LABEL
    with pytest.raises(ValueError, match="unknown task type"):
        TrainConfig(task_type="spans_of_text")


def test_task_classes_are_the_registered_instances() -> None:
    assert isinstance(SINGLE_LABEL, SingleLabel) and isinstance(MULTI_LABEL, MultiLabel)
    assert set(TASKS) == {"single_label", "multi_label"}
