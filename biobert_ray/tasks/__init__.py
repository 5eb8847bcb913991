"""Tasks by name: a plain dict, one entry per module implementing ``tasks.base.Task``."""

from biobert_ray.tasks.base import Task
from biobert_ray.tasks.ner import NerTask

TASKS: dict[str, Task] = {"ner": NerTask()}


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]
