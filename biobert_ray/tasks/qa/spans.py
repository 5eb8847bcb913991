"""Question-context windows and the answer spans read back from start/end logits (BERT's SQuAD recipe).

**Windows.** The question's sub-tokens (at most ``max_query_length``) and a window of the context's
sub-tokens make one input, ``[CLS] question [SEP] context window [SEP]``, with token type 0 over the
question and 1 over the context. A context longer than one window is split into overlapping windows
that share at least ``stride`` sub-tokens (run_qa's ``--doc_stride``;
:func:`~biobert_ray.tasks.base.plan_windows`). In training, a window whose context holds the whole answer
is labelled with the answer's first and last sub-tokens; one that does not is labelled ``[CLS]``
(position 0), as in SQuAD v1.1 training.

**Spans.** In each window, the ``n_best`` highest start logits and end logits over its context give the
candidate spans: end at or after start, at most ``max_answer_length`` sub-tokens. A span's score is its
start logit plus its end logit; its text is the context's characters from the first sub-token's start
to the last one's end, widened to whole words (a span that starts or ends inside a run of letters and
digits takes the whole run, as BERT's SQuAD code maps sub-tokens back to whole words).

**Overlapping windows** (BERT's and BioBERT's ``token_is_max_context``). Each sub-token of the context
belongs to the window where it has the most context: the largest ``min(left, right) + 0.01 * length``,
the first such window on a tie. A span is read from the window its *start* sub-token belongs to; other
windows' copies of it are dropped. Where that window does not hold the span's end (the answer crosses
its edge), the span is read instead from the windows that hold all of it, the one giving it the most
context on its shorter side, so that such answers are not lost (BERT drops them). Spans that widen to
the same characters keep the best score. The ``n_best`` best distinct spans of a context get
probabilities by a softmax over their scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biobert_ray.tasks.base import attention_mask, pad, plan_windows, softmax


@dataclass(frozen=True)
class Span:
    """An answer span of a context: its text, character offsets, score (start + end logit) and
    probability among the context's n-best spans."""

    text: str
    char_start: int
    char_end: int
    score: float
    probability: float


def _token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """Sub-tokens ``(first, last)`` (inclusive) covering characters ``[start, end)``, or None."""
    first = next((i for i, (a, b) in enumerate(offsets) if b > start), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def encode_pair(
    question: str,
    context: str,
    tokenizer: Any,
    max_length: int,
    stride: int,
    max_query_length: int,
    answer: tuple[str, int] | None = None,
    labelled: bool = False,
) -> list[dict[str, Any]]:
    """The windows of one question-context pair (module docstring).

    Each window holds ``input_ids``, ``token_type_ids`` (when the tokenizer's models take them: BERT
    does, RoBERTa and DistilBERT do not), ``context_start`` (position of its first context sub-token)
    and ``offsets`` (character span of each of its context sub-tokens); when ``labelled``,
    ``start_positions`` and ``end_positions`` of ``answer`` (``(text, char_start)``), or 0.
    """
    question_ids = tokenizer(question, add_special_tokens=False)["input_ids"][:max_query_length]
    encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], [tuple(o) for o in encoded["offset_mapping"]]
    capacity = max_length - len(question_ids) - 3
    if capacity < 1:
        raise ValueError(
            f"--max-seq-length {max_length} leaves no room for the context after a question of "
            f"{len(question_ids)} sub-tokens (--max-query-length {max_query_length})"
        )
    target = None
    if labelled and answer is not None:
        target = _token_span(offsets, answer[1], answer[1] + len(answer[0]))
    head = [tokenizer.cls_token_id, *question_ids, tokenizer.sep_token_id]
    windows = []
    for span in plan_windows([1] * len(ids), capacity, stride) if ids else ():
        body = ids[span.first : span.last]
        window = {
            "input_ids": [*head, *body, tokenizer.sep_token_id],
            "context_start": len(head),
            "offsets": offsets[span.first : span.last],
        }
        if "token_type_ids" in tokenizer.model_input_names:
            window["token_type_ids"] = [0] * len(head) + [1] * (len(body) + 1)
        if labelled:
            inside = target is not None and span.first <= target[0] and target[1] < span.last
            start = len(head) + target[0] - span.first if inside else 0
            end = len(head) + target[1] - span.first if inside else 0
            window |= {"start_positions": start, "end_positions": end}
        windows.append(window)
    return windows


def pair_inputs(windows: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """A padded batch of question-context windows: ``input_ids``, ``attention_mask`` and, when the
    windows have them, ``token_type_ids``."""
    batch = {"input_ids": pad(windows, "input_ids", pad_id), "attention_mask": attention_mask(windows)}
    if "token_type_ids" in windows[0]:
        batch["token_type_ids"] = pad(windows, "token_type_ids", 0)
    return batch


def window_spans(
    window: dict[str, Any],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int,
    max_answer_length: int,
) -> list[tuple[float, int, int]]:
    """``(score, first, last)`` candidate spans of one window, in context sub-tokens of the window
    (``start_logits``/``end_logits``: the window's context part)."""
    n = len(window["offsets"])
    starts = np.argsort(start_logits[:n])[::-1][:n_best]
    ends = np.argsort(end_logits[:n])[::-1][:n_best]
    return [
        (float(start_logits[s] + end_logits[e]), int(s), int(e))
        for s in starts
        for e in ends
        if s <= e < s + max_answer_length
    ]


def _word_start(context: str, start: int) -> int:
    """``start`` moved left to the first character of the run of letters and digits it cuts."""
    while 0 < start < len(context) and context[start - 1].isalnum() and context[start].isalnum():
        start -= 1
    return start


def _word_end(context: str, end: int) -> int:
    """``end`` moved right past the last character of the run of letters and digits it cuts."""
    while 0 < end < len(context) and context[end - 1].isalnum() and context[end].isalnum():
        end += 1
    return end


def whole_words(context: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` widened so that it does not cut a run of letters and digits of ``context``."""
    return _word_start(context, start), _word_end(context, end)


def _start_windows(windows: Sequence[dict[str, Any]]) -> tuple[list[dict[Any, int]], dict[Any, int]]:
    """Each window's position of every context sub-token (keyed by its character span), and the window
    each sub-token has the most context in (module docstring)."""
    positions = [{tuple(offset): j for j, offset in enumerate(window["offsets"])} for window in windows]
    owner: dict[Any, tuple[float, int]] = {}
    for index, (window, position) in enumerate(zip(windows, positions, strict=True)):
        n = len(window["offsets"])  # the window's length, even where two sub-tokens share a span
        for key, j in position.items():
            context = min(j, n - 1 - j) + 0.01 * n
            if key not in owner or context > owner[key][0]:
                owner[key] = (context, index)
    return positions, {key: index for key, (_, index) in owner.items()}


def best_spans(
    context: str,
    windows: Sequence[dict[str, Any]],
    logits: Sequence[tuple[np.ndarray, np.ndarray]],
    n_best: int,
    max_answer_length: int,
) -> list[Span]:
    """The ``n_best`` best distinct spans of a context over all its windows, with their softmax
    probabilities, best first (``logits``: each window's start and end logits over its context)."""
    positions, owner = _start_windows(windows)
    read: dict[tuple[Any, Any], tuple[int, float, int, int]] = {}  # sub-token span -> (margin, score, chars)
    for index, (window, (start_logits, end_logits)) in enumerate(zip(windows, logits, strict=True)):
        offsets, n = window["offsets"], len(window["offsets"])
        for score, first, last in window_spans(window, start_logits, end_logits, n_best, max_answer_length):
            span = (tuple(offsets[first]), tuple(offsets[last]))
            home = owner[span[0]]
            if home == index:
                margin = n  # read from its start's window: no other copy competes
            elif span[1] in positions[home]:
                continue  # its start's window holds it and reads it
            else:
                margin = min(first, n - 1 - last)  # crosses its start's window's edge: the most context
            if span not in read or (margin, score) > read[span][:2]:
                read[span] = (margin, score, offsets[first][0], offsets[last][1])
    found: dict[tuple[int, int], float] = {}  # whole-word character span -> best score
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for _, score, char_start, char_end in read.values():
        if char_start not in starts:
            starts[char_start] = _word_start(context, char_start)
        if char_end not in ends:
            ends[char_end] = _word_end(context, char_end)
        key = (starts[char_start], ends[char_end])
        if key not in found or score > found[key]:
            found[key] = score
    ranked = sorted(found.items(), key=lambda item: -item[1])[:n_best]
    if not ranked:
        return []
    probabilities = softmax(np.array([score for _, score in ranked]))
    return [
        Span(context[a:b], a, b, float(score), float(p))
        for ((a, b), score), p in zip(ranked, probabilities, strict=True)
    ]
