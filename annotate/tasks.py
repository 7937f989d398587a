"""The annotate side of a task type: what an answer is, how answers vote, agree, import,
export and render.

``Project.task`` returns the instance for the project's ``task_type`` (the same keys as
``learner.ml.tasks``, the model side of the same seam). Services, selectors, importers,
exporters and templates call it and never ask which task they serve; a new task type is
a new class here, registered in ``ANSWER_TASKS``, plus its partials under
``templates/annotate/tasks/``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar


class AnswerTask(ABC):
    """One kind of answer an annotator gives about a document. Stateless."""

    name: ClassVar[str]
    # The answer form's partial (annotate page) and its keyboard behaviour for
    # static/labelwise/annotate.js: "submit" (a label key submits) or "toggle".
    answer_template: ClassVar[str]
    keys_template: ClassVar[str]
    label_keys: ClassVar[str]
    # A lead's decision form (review, document pages): one input per label.
    input_type: ClassVar[str]
    final_legend: ClassVar[str]
    agreement_note: ClassVar[str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @abstractmethod
    def answer_error(self, label_ids: Sequence[int]) -> str | None:
        """Why these (known, distinct) label ids are not a valid answer; None if they are."""

    def vote(self, answers: Sequence[Sequence[int]], overlap: int) -> list[int] | None:
        """The final answer once ``overlap`` annotators answered: the majority answer; a
        tie (or too few answers) stays open (None) for a lead to adjudicate."""
        if len(answers) < overlap or not answers:
            return None
        ranked = Counter(tuple(sorted(a)) for a in answers).most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return None
        return list(ranked[0][0])

    @abstractmethod
    def agreement_questions(self, label_ids: Sequence[int]) -> list[Hashable]:
        """The questions agreement is measured on (kappa and alpha are averaged over
        them)."""

    @abstractmethod
    def agreement_value(self, labels: frozenset[int], question: Hashable) -> Hashable | None:
        """One answer's value for one question (None: it does not answer it)."""

    @abstractmethod
    def import_error(self, label_ids: Sequence[int], names: Sequence[str]) -> str | None:
        """Why an imported row's labels (``names``, resolved to distinct ``label_ids``)
        do not fit this task; None if they do."""

    @abstractmethod
    def export_value(self, names: list[str] | None) -> str | list[str] | None:
        """A document's answer (label names, None when it has none) as an export row's
        ``label`` value."""

    @abstractmethod
    def hf_column(self, names: list[str]) -> tuple[str, Any]:
        """The Hugging Face dataset column of the answer: (name, feature)."""

    @abstractmethod
    def hf_value(self, labels: list[str] | None, index: dict[str, int]) -> Any:
        """A document's answer as that column's value (``index``: name -> class index)."""


class SingleLabelAnswer(AnswerTask):
    name = "single_label"
    answer_template = "annotate/tasks/single_label_answer.html"
    keys_template = "annotate/tasks/single_label_keys.html"
    label_keys = "submit"
    input_type = "radio"
    final_legend = "Final label"
    agreement_note = ("κ and α correct the share of identical answers for agreement expected "
                      "by chance: 1 is perfect, 0 is chance level.")

    def answer_error(self, label_ids: Sequence[int]) -> str | None:
        return None if len(label_ids) == 1 else "Choose exactly one label."

    def agreement_questions(self, label_ids: Sequence[int]) -> list[Hashable]:
        return ["label"]  # one question: which label

    def agreement_value(self, labels: frozenset[int], question: Hashable) -> Hashable | None:
        return next(iter(labels)) if len(labels) == 1 else None

    def import_error(self, label_ids: Sequence[int], names: Sequence[str]) -> str | None:
        if len(label_ids) <= 1:
            return None
        return (f"{len(label_ids)} labels ({', '.join(names)}) but this is a single-label "
                "project: give one label per document")

    def export_value(self, names: list[str] | None) -> str | list[str] | None:
        return names[0] if names else None

    def hf_column(self, names: list[str]) -> tuple[str, Any]:
        from datasets import ClassLabel

        return "label", ClassLabel(names=names)

    def hf_value(self, labels: list[str] | None, index: dict[str, int]) -> Any:
        # ClassLabel's "no label" value, for unlabelled documents in an all-rows export.
        return index.get(labels[0], -1) if labels else -1


class MultiLabelAnswer(AnswerTask):
    name = "multi_label"
    answer_template = "annotate/tasks/multi_label_answer.html"
    keys_template = "annotate/tasks/multi_label_keys.html"
    label_keys = "toggle"
    input_type = "checkbox"
    final_legend = "Final labels"
    agreement_note = ("Multi-label: κ and α are computed per label as a yes/no question and "
                      "averaged over the labels.")

    def answer_error(self, label_ids: Sequence[int]) -> str | None:
        return None  # any subset, none included, is an answer

    def agreement_questions(self, label_ids: Sequence[int]) -> list[Hashable]:
        return list(label_ids)  # per label: does it apply?

    def agreement_value(self, labels: frozenset[int], question: Hashable) -> Hashable | None:
        return question in labels

    def import_error(self, label_ids: Sequence[int], names: Sequence[str]) -> str | None:
        return None

    def export_value(self, names: list[str] | None) -> str | list[str] | None:
        return names

    def hf_column(self, names: list[str]) -> tuple[str, Any]:
        from datasets import ClassLabel, List

        return "labels", List(ClassLabel(names=names))

    def hf_value(self, labels: list[str] | None, index: dict[str, int]) -> Any:
        return [index[name] for name in labels or [] if name in index]


ANSWER_TASKS: dict[str, AnswerTask] = {
    task.name: task for task in (SingleLabelAnswer(), MultiLabelAnswer())
}


def answer_task_for(task_type: str) -> AnswerTask:
    try:
        return ANSWER_TASKS[task_type]
    except KeyError:
        raise ValueError(f"task type {task_type!r} is not available yet") from None
