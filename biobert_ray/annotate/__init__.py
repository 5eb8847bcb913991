"""Corpus annotation with Ray Data: fine-tuned models of one task over a whole ``articles`` table.

- :mod:`~biobert_ray.annotate.plan`: what a run must do (complete inputs, run identity, reuse);
- :mod:`~biobert_ray.annotate.stages`: the stage functions and the model actor;
- :mod:`~biobert_ray.annotate.build`: the Ray Data chain, with every resource setting;
- :mod:`~biobert_ray.annotate.driver`: the run: lease, chain, merging shards, markers, summary.
"""

from biobert_ray import lazy

__all__ = ["run"]
__getattr__ = lazy.attributes(__name__, {"run": "biobert_ray.annotate.driver"})
