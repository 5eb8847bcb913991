"""Corpus annotation with Ray Data: fine-tuned models of one task over a whole ``articles`` table.

- :mod:`~biobert_ray.annotate.plan`: what a run must do (complete inputs, run identity, reuse);
- :mod:`~biobert_ray.annotate.stages`: the stage functions and the model actor;
- :mod:`~biobert_ray.annotate.build`: the Ray Data chain, with every resource setting;
- :mod:`~biobert_ray.annotate.driver`: the run: lease, chain, merging shards, markers, summary.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """``run`` is imported on first use: a Ray worker that unpickles a stage function of this package
    then imports that stage's module only, not the driver with Ray Train, torch and transformers."""
    if name == "run":
        from biobert_ray.annotate.driver import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
