"""Domain pretraining: masked-LM training of a BERT on an ``articles`` table with Ray Train.

- :mod:`~biobert_ray.pretrain.corpus`: the corpus shards, held-out documents, document text;
- :mod:`~biobert_ray.pretrain.packing`: tokenize and pack documents into full sequences (Ray Data);
- :mod:`~biobert_ray.pretrain.position`: which packed sequences a run has consumed (exact resume);
- :mod:`~biobert_ray.pretrain.masking`: BERT's 80/10/10 masking, whole-word optional;
- :mod:`~biobert_ray.pretrain.mlm`: the masked-LM loss at the masked positions only;
- :mod:`~biobert_ray.pretrain.vocab`: a WordPiece vocabulary and a fresh BERT for from-scratch runs;
- :mod:`~biobert_ray.pretrain.loop`: the Ray Train worker loop;
- :mod:`~biobert_ray.pretrain.driver`: the run: plan, resume checks, trainer, summary.

The optimizer, schedule, checkpoints and progress line come from :mod:`biobert_ray.training`,
shared with fine-tuning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run"]


def __getattr__(name: str) -> Any:
    """``run`` is imported on first use: a Ray worker that unpickles a stage function of this package
    then imports that stage's module only, not the driver with Ray Train, torch and transformers."""
    if name == "run":
        from biobert_ray.pretrain.driver import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
