"""Question answering over a corpus (``annotate qa``): the question batches and their work lists
(:mod:`.plan`), the run (:mod:`.driver`), the yes/no pass (:mod:`.votes`), and the merge of each
question's answers (:mod:`.merge`)."""

from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """``run`` is imported on first use, as in :mod:`biobert_ray.annotate`: importing a module of this
    package does not import the driver."""
    if name == "run":
        from biobert_ray.answers.driver import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
