"""Question answering over a corpus (``annotate qa``): the question batches and their work lists
(:mod:`.plan`), the run (:mod:`.driver`), the yes/no pass (:mod:`.votes`), and the merge of each
question's answers (:mod:`.merge`)."""

from biobert_ray import lazy

__all__ = ["run"]
__getattr__ = lazy.attributes(__name__, {"run": "biobert_ray.answers.driver"})
