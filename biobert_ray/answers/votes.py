"""The yes/no pass of ``annotate qa``: a yes/no model's answer for each (question, article) pair.

:class:`YesNoVotes` is the yes/no task (:class:`~biobert_ray.tasks.qa.yesno.YesNoTask`: windows of
``[CLS] question [SEP] context [SEP]``, the class probabilities averaged over an article's windows) as
the annotation chain runs it over a question batch's yes/no work list: a unit is one yes/no question
with the abstract of one of its articles (the title when the article has no abstract), as PubMedQA
pairs a question with an abstract; its rows (``schemas.YESNO_VOTES``) are the article's probability of
each class. :func:`biobert_ray.answers.merge.answer_rows` turns a question's rows into its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from biobert_ray import schemas
from biobert_ray.tasks.qa.yesno import YesNoPrediction, YesNoTask
from biobert_ray.tasks.qa.yesno_files import YesNoExample


@dataclass(frozen=True)
class ArticleQuestion(YesNoExample):
    """A yes/no question with the text of one of its articles (``label`` is empty: not known)."""

    question_id: str
    pmid: int
    retrieval_rank: int | None


class YesNoVotes(YesNoTask):
    """The yes/no task over (question, article) pairs of a question batch's work list."""

    schema = schemas.YESNO_VOTES
    sort_keys = ("question_id", "pmid", "answer", "model")
    article_columns = ("pmid", "title", "abstract")

    def side_tables(self) -> dict[str, str]:
        """None: each batch's yes/no work list comes with its work items."""
        return {}

    def for_models(self, metadata: Sequence[dict[str, Any]]) -> YesNoVotes:
        """This task, as it is for any yes/no model."""
        return self

    def units(self, articles: pa.Table, side: dict[str, pa.Table]) -> list[ArticleQuestion]:
        """The (question, article) pairs of one row group: each ``work`` side row (``schemas.QA_WORK``)
        with its article's abstract, else its title; an article with neither gives no unit."""
        texts = {a["pmid"]: a["abstract"] or a["title"] for a in articles.to_pylist()}
        units = []
        for row in side["work"].to_pylist():
            if texts.get(row["pmid"]):
                qid, pmid = row["question_id"], row["pmid"]
                units.append(
                    ArticleQuestion(
                        id=f"{qid}/{pmid}", question=row["question"], context=texts[pmid], label="",
                        question_id=qid, pmid=pmid, retrieval_rank=row["retrieval_rank"],
                    )
                )  # fmt: skip
        return units

    def rows(
        self, units: Sequence[ArticleQuestion], predictions: Sequence[YesNoPrediction]
    ) -> list[dict[str, Any]]:
        """One ``schemas.YESNO_VOTES`` row per class of each pair, with the pair's mean probability."""
        return [
            {
                "question_id": unit.question_id,
                "pmid": unit.pmid,
                "answer": label,
                "probability": probability,
                "retrieval_rank": unit.retrieval_rank,
            }
            for unit, prediction in zip(units, predictions, strict=True)
            for label, probability in prediction.probabilities.items()
        ]
