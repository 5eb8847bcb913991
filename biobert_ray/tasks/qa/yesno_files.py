"""Yes/no question files: PubMedQA (PQA-L) and the yes/no questions of BioASQ golden files.

- **PubMedQA** (``ori_pqal.json``: ``{pmid: {"QUESTION", "CONTEXTS", "final_decision", ...}}``): one
  example per question, its context the abstract's sections (``CONTEXTS``, without the conclusion)
  joined by spaces, its label ``yes``, ``no`` or ``maybe`` (the reasoning-required setting). A path is
  the file or its directory, with a split: ``#test`` is the official 500-question test set (the PMIDs of
  ``test_ground_truth.json`` beside it), ``#train`` and ``#dev`` split the other 500 by document:
  ``sha256(pmid) mod 10 == 0`` is dev (about 50 questions), the rest train. Without a split, all 1,000.
- **BioASQ** golden files: one example per yes/no question, its context its snippets joined by spaces
  (in the file's order), its label the exact answer ``yes`` or ``no``.

The format is recognised from the document (BioASQ's top-level ``questions``); a record missing a field
stops the reader with :class:`~biobert_ray.tasks.qa.formats.QaFormatError` naming the file and record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from biobert_ray import storage
from biobert_ray.tasks.qa.formats import QaFormatError, bioasq_questions, load_json, sniff

PUBMEDQA_FILE, PUBMEDQA_TEST = "ori_pqal.json", "test_ground_truth.json"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class YesNoExample:
    """A question, the text that answers it, its label, and where it came from (``id``: the PMID for
    PubMedQA, the question id for BioASQ)."""

    id: str
    question: str
    context: str
    label: str


def _dev(pmid: str) -> bool:
    return int(hashlib.sha256(pmid.encode()).hexdigest(), 16) % 10 == 0


def _pubmedqa_examples(document: object, path: str, split: str) -> list[YesNoExample]:
    """The examples of a parsed PubMedQA document read from ``path``, in ``split`` ('' for all)."""
    if not isinstance(document, dict):
        raise QaFormatError(path, "document", "neither BioASQ JSON nor a PubMedQA object keyed by PMID")
    test: set[str] = set()
    if split:
        directory = path.rsplit("/", 1)[0] if "/" in path else "."
        test = set(load_json(storage.join(directory, PUBMEDQA_TEST)))
    examples = []
    for pmid, record in document.items():
        if split == "test" and pmid not in test:
            continue
        if split in ("train", "dev") and (pmid in test or _dev(pmid) != (split == "dev")):
            continue
        fields = record if isinstance(record, dict) else {}
        question, contexts, label = (fields.get(k) for k in ("QUESTION", "CONTEXTS", "final_decision"))
        if (
            not isinstance(question, str)
            or not isinstance(contexts, list)
            or label not in ("yes", "no", "maybe")
        ):
            raise QaFormatError(path, f"PMID {pmid}", "missing QUESTION, CONTEXTS or final_decision")
        examples.append(YesNoExample(pmid, question, " ".join(map(str, contexts)), label))
    return examples


def _bioasq_examples(document: dict, uri: str) -> list[YesNoExample]:
    """The yes/no questions of a parsed BioASQ golden document, with their snippets as context."""
    examples = []
    for question in bioasq_questions(document, uri, ("yesno",)):
        label = question.get("exact_answer")
        if not isinstance(label, str) or label.lower() not in ("yes", "no"):
            raise QaFormatError(uri, f"question {question['id']}", f"exact_answer {label!r} is not yes or no")
        context = " ".join(s.get("text") or "" for s in question.get("snippets") or ())
        examples.append(YesNoExample(question["id"], question["body"], context, label.lower()))
    return examples


def read_yesno(uri: str) -> list[YesNoExample]:
    """The yes/no examples of a BioASQ golden file, or of a PubMedQA file or directory with an optional
    ``#train``, ``#dev`` or ``#test`` split (module docstring)."""
    path, _, split = uri.partition("#")
    if split and split not in SPLITS:
        raise ValueError(f"{uri}: unknown split {split!r}; use #train, #dev or #test")
    if not path.endswith((".json", ".json.gz")):
        path = storage.join(path, PUBMEDQA_FILE)
    document = load_json(path)
    if sniff(document) == "bioasq":
        if split:
            raise ValueError(f"{uri}: a BioASQ file has no {split!r} split")
        return _bioasq_examples(document, path)
    return _pubmedqa_examples(document, path, split)
