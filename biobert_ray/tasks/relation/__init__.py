"""Relation extraction: the task (:mod:`.task`), its file formats (:mod:`.formats`, :mod:`.pubtator`,
:mod:`.ddi`, with :mod:`biobert_ray.lines` for line-based files), argument marking (:mod:`.marking`),
candidate pairs (:mod:`.candidates`) and scores (:mod:`.metrics`)."""

from biobert_ray.tasks.relation.task import RelationTask

__all__ = ["RelationTask"]
