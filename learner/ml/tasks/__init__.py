"""Task types: what a document's annotation is and how a model learns it.

``task_for(name)`` gives the one instance of a kind, keyed by the same strings as the
annotate side's ``Project.TaskType``. A new task type is a new module here implementing
``Task`` (``base.py``), registered in ``TASKS``; the training loop, calibration, metrics,
strategies, distillation and export call its methods and never ask which one it is.

``task_type_in`` is the one place that reads stored data (a round's config, a model's
``labelwise.json``) written before task types had names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from learner.ml.tasks.base import Task
from learner.ml.tasks.multi_label import MultiLabel
from learner.ml.tasks.single_label import SingleLabel

SINGLE_LABEL = SingleLabel()
MULTI_LABEL = MultiLabel()
TASKS: dict[str, Task] = {task.name: task for task in (SINGLE_LABEL, MULTI_LABEL)}

# The key older configs and artifacts carried: a bool, true for multi-label.
_LEGACY_KEY = "multi_label"


def task_for(name: str | Task) -> Task:
    """The task registered under ``name`` (a ``Task`` passes through)."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}; known: {sorted(TASKS)}") from None


def task_type_in(data: Mapping[str, Any]) -> str | None:
    """The task type a stored dict names: its ``task_type``, else what the older bool
    key said, else None (nothing stored)."""
    if data.get("task_type"):
        return str(data["task_type"])
    if _LEGACY_KEY in data:
        return MULTI_LABEL.name if data[_LEGACY_KEY] else SINGLE_LABEL.name
    return None


def task_of(meta: Mapping[str, Any]) -> Task:
    """The task of a saved model's ``labelwise.json`` (old ones too)."""
    name = task_type_in(meta) or task_type_in(meta.get("config") or {})
    return task_for(name or SINGLE_LABEL.name)


__all__ = ["MULTI_LABEL", "SINGLE_LABEL", "TASKS", "MultiLabel", "SingleLabel", "Task",
           "task_for", "task_of", "task_type_in"]
