"""The training toolkit shared by fine-tuning and pretraining on Ray Train.

- :mod:`~biobert_ray.training.raytrain`: workers, storage, run names, failure reporting;
- :mod:`~biobert_ray.training.optim`: BERT's AdamW parameter groups and the linear schedule;
- :mod:`~biobert_ray.training.checkpoints`: one checkpoint layout, saved and restored with
  ``weights_only=True``, falling back to an older checkpoint when the newest does not load;
- :mod:`~biobert_ray.training.progress`: interval meters, the progress line and ``metrics.jsonl``.
"""
