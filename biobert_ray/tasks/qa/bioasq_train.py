"""A span-extraction training set from BioASQ golden files (``biobert-ray data bioasq-train``).

BioBERT's own BioASQ training files are not distributed here; they were made the same way: for every
factoid and list question of the golden files, each snippet in which an exact answer occurs becomes a
SQuAD entry with that answer's span. A synonym occurs in a snippet where it appears case-insensitively
between word boundaries (not inside a longer word: ``ACE`` does not occur in ``surface``); its first
occurrence is the span, with the snippet's own spelling. A list question gets one entry per snippet and
answer entity found in it. Questions are taken once (the first golden file that holds an id wins).

The result is a SQuAD v1.1 document (entries carry their question ``type``), with a report of what was
kept and why the rest was dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from biobert_ray.tasks.qa.formats import SPAN_TYPES, bioasq_questions, gold_answers, load_json


def find_answer(snippet: str, synonyms: Sequence[str]) -> tuple[str, int] | None:
    """The first occurrence ``(text, char_start)`` in ``snippet`` of the first synonym that occurs
    (module docstring), or None."""
    for synonym in synonyms:
        if not synonym.strip():
            continue
        pattern = r"(?<!\w)" + re.escape(synonym.strip()) + r"(?!\w)"
        match = re.search(pattern, snippet, flags=re.IGNORECASE)
        if match:
            return match.group(0), match.start()
    return None


def build_training_set(golden: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(SQuAD document, report)`` from BioASQ golden files (module docstring).

    The report counts questions read per type, duplicates skipped, questions kept per type, entries
    (question, snippet, answer) written, and questions dropped per reason.
    """
    seen: set[str] = set()
    read, kept, dropped = Counter(), Counter(), Counter()
    duplicates = entries = 0
    data = []
    for uri in golden:
        for question in bioasq_questions(load_json(uri), uri, ("factoid", "list", "yesno", "summary")):
            qid, kind = question["id"], question["type"]
            if qid in seen:
                duplicates += 1
                continue
            seen.add(qid)
            read[kind] += 1
            if kind not in SPAN_TYPES:
                dropped[f"{kind}: not answered by a span"] += 1
                continue
            entities = gold_answers(question, uri)
            paragraphs = []
            for s, snippet in enumerate(question.get("snippets") or ()):
                context = snippet.get("text") or ""
                qas = []
                for e, synonyms in enumerate(entities):
                    found = find_answer(context, synonyms)
                    if found:
                        answer = {"text": found[0], "answer_start": found[1]}
                        qas.append({"id": f"{qid}_{s:03d}_{e}", "question": question["body"], "type": kind,
                                    "answers": [answer]})  # fmt: skip
                if qas:
                    paragraphs.append({"context": context, "qas": qas})
            if not paragraphs:
                dropped[f"{kind}: no exact answer occurs in a snippet"] += 1
                continue
            kept[kind] += 1
            entries += sum(len(p["qas"]) for p in paragraphs)
            data.append({"title": qid, "paragraphs": paragraphs})
    report = {
        "golden_files": list(golden),
        "questions_read": dict(read),
        "duplicates_skipped": duplicates,
        "questions_kept": dict(kept),
        "entries": entries,
        "questions_dropped": dict(dropped),
    }
    return {"version": "bioasq-train", "data": data}, report


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`build_training_set` as console lines."""
    read = ", ".join(f"{n} {kind}" for kind, n in sorted(report["questions_read"].items()))
    kept = ", ".join(f"{n} {kind}" for kind, n in sorted(report["questions_kept"].items()))
    lines = [
        f"read {sum(report['questions_read'].values())} questions ({read}) from "
        f"{len(report['golden_files'])} golden file(s); {report['duplicates_skipped']} duplicate(s) skipped",
        f"kept {sum(report['questions_kept'].values())} questions ({kept}): {report['entries']} "
        "(question, snippet, answer) entries",
    ]
    lines += [f"dropped {n}: {reason}" for reason, n in sorted(report["questions_dropped"].items())]
    return "\n".join(lines)
