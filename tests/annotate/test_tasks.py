"""The annotate side of each task type: answers, votes, agreement, import, export."""

from __future__ import annotations

import pytest
from django.template.loader import get_template

from annotate.models import Project
from annotate.tasks import ANSWER_TASKS, AnswerTask, answer_task_for

SINGLE, MULTI = ANSWER_TASKS["single_label"], ANSWER_TASKS["multi_label"]


@pytest.fixture(params=sorted(ANSWER_TASKS))
def task(request: pytest.FixtureRequest) -> AnswerTask:
    return answer_task_for(request.param)


def test_a_project_answers_with_the_task_of_its_task_type() -> None:
    assert Project(task_type=Project.TaskType.SINGLE_LABEL).task is SINGLE
    assert Project(task_type=Project.TaskType.MULTI_LABEL).task is MULTI
    with pytest.raises(ValueError, match="not available"):
        answer_task_for(Project.TaskType.SPANS)


def test_every_task_names_partials_that_exist(task: AnswerTask) -> None:
    get_template(task.answer_template)
    get_template(task.keys_template)
    assert task.label_keys in {"submit", "toggle"}
    assert task.input_type in {"radio", "checkbox"}


def test_one_label_is_an_answer_for_every_task(task: AnswerTask) -> None:
    assert task.answer_error([7]) is None
    assert task.import_error([7], ["sport"]) is None


def test_the_majority_answer_wins_and_a_tie_stays_open(task: AnswerTask) -> None:
    assert task.vote([[1], [1], [2]], overlap=3) == [1]
    assert task.vote([[1], [2]], overlap=2) is None
    assert task.vote([[1]], overlap=2) is None  # not everyone has answered
    # The order of labels within an answer does not split the vote.
    assert task.vote([[2, 1], [1, 2], [3]], overlap=3) == [1, 2]


def test_single_label_answers_are_exactly_one_label() -> None:
    assert SINGLE.answer_error([]) == "Choose exactly one label."
    assert SINGLE.answer_error([1, 2]) == "Choose exactly one label."
    assert "single-label project" in SINGLE.import_error([1, 2], ["a", "b"])


def test_multi_label_answers_are_any_subset() -> None:
    assert MULTI.answer_error([]) is None
    assert MULTI.answer_error([1, 2, 3]) is None
    assert MULTI.import_error([1, 2], ["a", "b"]) is None


def test_agreement_asks_one_question_or_one_per_label() -> None:
    assert SINGLE.agreement_questions([4, 5]) == ["label"]
    assert SINGLE.agreement_value(frozenset({4}), "label") == 4
    assert SINGLE.agreement_value(frozenset({4, 5}), "label") is None
    assert MULTI.agreement_questions([4, 5]) == [4, 5]
    assert MULTI.agreement_value(frozenset({4}), 4) is True
    assert MULTI.agreement_value(frozenset({4}), 5) is False


def test_export_values_are_a_name_or_a_list_of_names() -> None:
    assert SINGLE.export_value(["sport"]) == "sport"
    assert SINGLE.export_value(None) is None
    assert MULTI.export_value(["sport", "tech"]) == ["sport", "tech"]
    assert MULTI.export_value(None) is None
    index = {"sport": 0, "tech": 1}
    assert SINGLE.hf_value(["tech"], index) == 1
    assert SINGLE.hf_value(None, index) == -1
    assert MULTI.hf_value(["tech", "gone"], index) == [1]
    assert SINGLE.hf_column(["a"])[0] == "label"
    assert MULTI.hf_column(["a"])[0] == "labels"
