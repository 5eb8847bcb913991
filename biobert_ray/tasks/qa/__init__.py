"""Question answering: the span task (:mod:`.task`), its files (:mod:`.formats`), the BioASQ training set
(:mod:`.bioasq_train`), windows and spans (:mod:`.spans`) and BioASQ's scores (:mod:`.metrics`)."""

from biobert_ray.tasks.qa.task import QaTask

__all__ = ["QaTask"]
