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

from biobert_ray import lazy

__all__ = ["run"]
__getattr__ = lazy.attributes(__name__, {"run": "biobert_ray.pretrain.driver"})
