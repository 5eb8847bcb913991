"""Question answering: the span task (:mod:`.task`), its files (:mod:`.formats`), the BioASQ training set
(:mod:`.bioasq_train`), windows and spans (:mod:`.spans`), BioASQ's and PubMedQA's scores
(:mod:`.metrics`), and the yes/no task (:mod:`.yesno`) with its files (:mod:`.yesno_files`)."""

from biobert_ray.tasks.qa.task import QaTask
from biobert_ray.tasks.qa.yesno import YesNoTask

__all__ = ["QaTask", "YesNoTask"]
