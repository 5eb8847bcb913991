"""Tasks by name: one entry per module implementing :class:`biobert_ray.tasks.base.Task`.

``TASKS`` maps a task's name (on the command line and in a model's ``biobert_ray.json``) to its
class; :func:`make_task` builds one with its options. :func:`register` adds a task defined elsewhere
(the tests register one of their own).
"""

from __future__ import annotations

from typing import Any

from biobert_ray.tasks.base import Task
from biobert_ray.tasks.ner import NerTask
from biobert_ray.tasks.qa import QaTask, YesNoTask
from biobert_ray.tasks.relation import RelationTask

TASKS: dict[str, type] = {"ner": NerTask, "re": RelationTask, "qa": QaTask, "yesno": YesNoTask}


def register(task_class: type) -> None:
    """Make ``task_class`` (a :class:`Task` with a ``name``) known to :func:`make_task` and the CLI."""
    TASKS[task_class.name] = task_class


def task_class(name: str) -> type:
    """The class of the task called ``name``; ValueError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def make_task(name: str, options: Any = None) -> Task:
    """The task called ``name`` with ``options`` (an instance of its ``Options``; None: the defaults)."""
    return task_class(name)(options)
