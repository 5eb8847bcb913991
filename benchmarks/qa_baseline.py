"""QA accuracy baseline: Hugging Face's question-answering and classification recipes, BioASQ and PubMedQA.

A plain ``transformers.Trainer`` run with nothing of ours in the training path, so that ``biobert-ray
finetune qa`` + ``biobert-ray evaluate qa`` (``--task qa``) and ``biobert-ray finetune yesno`` +
``biobert-ray evaluate yesno`` (``--task yesno``) can be compared with it on the same base model, data
and hyper-parameters. The model is trained once and scored on every ``--test`` file.

``--task qa`` (span extraction, BioASQ factoid and list questions), the recipe of Hugging Face's
``examples/pytorch/question-answering/run_qa.py`` and its ``utils_qa.py``:

- data: read with our reader only, so that both see exactly the same examples:
  ``biobert_ray.tasks.qa.formats.read_examples(path, "auto", gold=GOLD)`` (a SQuAD-format file, e.g.
  ``biobert-ray data bioasq-train``'s output or BioBERT's test batches, or a BioASQ golden file: one
  example per snippet of each factoid and list question); the first ``--max-train-samples`` training
  examples, as ours takes them. A test file given as ``TEST::GOLD`` takes its questions' exact answers
  and types from the BioASQ golden file ``GOLD`` (ours: ``--gold``); a training example is trained on
  its first answer ``(text, char_start)`` (one without an answer is labelled ``[CLS]``);
- pre-processing, run_qa's ``prepare_train_features`` and ``prepare_validation_features``: the question
  stripped on the left, ``tokenizer(question, context, truncation="only_second",
  max_length=--max-seq-length, stride=--doc-stride, return_overflowing_tokens=True,
  return_offsets_mapping=True, padding="max_length")``, so a long context becomes several features that
  overlap by ``--doc-stride`` sub-tokens; in training, a feature whose context holds the whole answer is
  labelled with the answer's first and last sub-tokens, any other with ``[CLS]`` (kept as run_qa has
  it: an answer that starts at a feature's last context sub-token gets a start label on the last
  padding position, as the search walks on over ``[SEP]`` and the padding, whose offsets are (0, 0);
  the script counts these, 1 feature of the bundled training set at 128). run_qa has no
  max-query-length: the whole question is kept (ours cuts it to ``--max-query-length``, 64 sub-tokens,
  which rarely matters for BioASQ questions; the script counts the questions longer than that);
- model and training: ``AutoModelForQuestionAnswering``, ``Trainer`` with its defaults (AdamW, linear
  schedule, gradient clipping at 1.0, no weight decay), ``default_data_collator``, warm-up
  ``--warmup-ratio``, on CPU, no checkpoints; the model of the last epoch is scored (ours without
  ``--dev`` exports its last epoch too);
- post-processing, ``postprocess_qa_predictions`` of ``utils_qa.py``: for each example, over all its
  features, the ``--n-best`` (20) highest start and end logits of each feature (over the whole padded
  feature; indexes outside the context are then skipped), spans with end >= start and at most
  ``--max-answer-length`` (30) sub-tokens, score start logit + end logit, text the context's characters
  from the first sub-token's start to the last one's end; the ``--n-best`` best (not deduplicated: a
  span two overlapping features both propose is there twice), then a softmax over their scores gives
  probabilities. (utils_qa's ``"empty"`` placeholder for an example without any span is left out: such
  a context gives no answer, as in ours.) Ours differs here: spans are widened to whole words and a
  span proposed by several windows is kept once, with the score of the window that gives it the most
  context;
- a question's answers, as our task documents them (BioBERT's rule): over all the question's
  examples, spans merged by ``metrics.normalize(text)``, an answer keeping its highest probability,
  ranked by probability (ties by text);
- scoring: our scoring function ``biobert_ray.tasks.qa.task.question_scores`` (the one ``evaluate
  qa`` uses), from each question's ranked answers. Factoid: ``metrics.factoid_scores`` (strict and
  lenient accuracy, MRR over the top five). List: the answers with probability >= ``--list-threshold``
  (0.5; always at least the first), ``metrics.list_scores`` (mean precision, recall, F1), and the F1 of
  each threshold 0.05, 0.10, ..., 0.95 and the best one. Gold entities per question: the example's
  ``gold`` (golden file), else its examples' answers (a list question: one entity per distinct answer
  text; a factoid: one entity with all of them as synonyms).

``--task yesno`` (PubMedQA yes/no/maybe, BioASQ yes/no), the recipe of run_glue.py:

- data: ``biobert_ray.tasks.qa.yesno_files.read_yesno(path)`` (PubMedQA ``ori_pqal.json`` or its
  directory with ``#train``, ``#dev`` or ``#test``; or a BioASQ golden file's yes/no questions, their
  snippets joined as context); the first ``--max-train-samples`` training examples; labels: the sorted
  distinct labels of the training and test examples;
- ``tokenizer(question, context, truncation="only_second", max_length=--max-seq-length)``: the context
  is cut after its first sub-tokens (the script counts the texts truncated); ours splits a long context
  into overlapping windows and answers with the class of the highest mean probability over them;
- ``AutoModelForSequenceClassification``, ``Trainer`` as above with ``DataCollatorWithPadding``;
- scoring: ``metrics.classification_scores(gold, predicted, sorted(set(gold) | set(predicted)))``
  (accuracy, macro-F1, per class).

Test files: each ``--test`` option is a group of files (``PATH`` or ``PATH::GOLD``) scored with the same
trained model; the script prints each file's scores and each group's mean over its files (BioBERT's
6b figure is the mean over the five batches), and writes everything, with the settings, counts and
wall times, to ``--out`` as JSON.

The pairs of commands (ours, then the baseline), each with 2 torch threads on a 2-CPU machine (ours: one
worker), after building the training set from the 4b and 5b golden files::

    biobert-ray data bioasq-train --golden '../shared/data/bioasq/golden/4B*' \\
        '../shared/data/bioasq/golden/5B*' --out /tmp/bench_qa/bioasq-train.json

BioASQ factoid (BioBERT's 6b batches and 7b with their golden files) and list questions (the 6b golden
files' snippets as contexts), one baseline run for all three groups::

    biobert-ray finetune qa --train /tmp/bench_qa/bioasq-train.json --epochs 2 --learning-rate 5e-5 \\
        --batch-size 16 --warmup-ratio 0.1 --max-seq-length 256 --doc-stride 64 --num-workers 1 \\
        --out /tmp/bench_qa/qa-ours
    for b in 1 2 3 4 5; do
      biobert-ray evaluate qa --model /tmp/bench_qa/qa-ours \\
          --data ../shared/data/bioasq/squad_test/BioASQ-test-factoid-6b-$b.json.gz \\
          --gold ../shared/data/bioasq/golden/6B${b}_golden.json.gz --max-seq-length 256 --doc-stride 64 \\
          --out /tmp/bench_qa/ours-6b$b.json
      biobert-ray evaluate qa --model /tmp/bench_qa/qa-ours \\
          --data ../shared/data/bioasq/golden/6B${b}_golden.json.gz --max-seq-length 256 --doc-stride 64 \\
          --out /tmp/bench_qa/ours-golden-6b$b.json
    done
    biobert-ray evaluate qa --model /tmp/bench_qa/qa-ours \\
        --data ../shared/data/bioasq/squad_test/BioASQ-test-factoid-7b.json.gz \\
        --gold ../shared/data/bioasq/golden/7B_golden.json.gz --max-seq-length 256 --doc-stride 64 \\
        --out /tmp/bench_qa/ours-7b.json
    T=../shared/data/bioasq/squad_test G=../shared/data/bioasq/golden
    HF_HUB_OFFLINE=1 python benchmarks/qa_baseline.py --task qa --train /tmp/bench_qa/bioasq-train.json \\
        --test $T/BioASQ-test-factoid-6b-1.json.gz::$G/6B1_golden.json.gz \\
               $T/BioASQ-test-factoid-6b-2.json.gz::$G/6B2_golden.json.gz \\
               $T/BioASQ-test-factoid-6b-3.json.gz::$G/6B3_golden.json.gz \\
               $T/BioASQ-test-factoid-6b-4.json.gz::$G/6B4_golden.json.gz \\
               $T/BioASQ-test-factoid-6b-5.json.gz::$G/6B5_golden.json.gz \\
        --test $T/BioASQ-test-factoid-7b.json.gz::$G/7B_golden.json.gz \\
        --test $G/6B{1,2,3,4,5}_golden.json.gz \\
        --epochs 2 --learning-rate 5e-5 --batch-size 16 --warmup-ratio 0.1 --max-seq-length 256 \\
        --doc-stride 64 --threads 2 --out /tmp/bench_qa/qa-baseline.json

Decoding apart from training: ``--trained /tmp/bench_qa/qa-ours`` scores our fine-tuned span model
with this recipe's pre- and post-processing instead of training one (same ``--test`` groups); beside
``biobert-ray evaluate qa`` on the same model, the difference is the decoding alone.

Ours' ``evaluate`` takes the model's ``--max-seq-length`` and ``--doc-stride`` unless given; they are
passed anyway so that each command reads on its own.

PubMedQA (reasoning-required, yes/no/maybe; 449 training, 500 test questions)::

    biobert-ray finetune yesno --train '../shared/data/pubmedqa#train' --dev '../shared/data/pubmedqa#dev' \\
        --epochs 3 --learning-rate 5e-5 --batch-size 16 --warmup-ratio 0.1 --max-seq-length 256 \\
        --doc-stride 64 --num-workers 1 --out /tmp/bench_qa/yesno-ours
    biobert-ray evaluate yesno --model /tmp/bench_qa/yesno-ours --data '../shared/data/pubmedqa#test' \\
        --max-seq-length 256 --doc-stride 64 --out /tmp/bench_qa/yesno-ours-test.json
    HF_HUB_OFFLINE=1 python benchmarks/qa_baseline.py --task yesno --train '../shared/data/pubmedqa#train' \\
        --test '../shared/data/pubmedqa#test' --epochs 3 --learning-rate 5e-5 --batch-size 16 \\
        --warmup-ratio 0.1 --max-seq-length 256 --threads 2 --out /tmp/bench_qa/yesno-baseline.json

With ``--dev`` ours exports the epoch of the best dev macro-F1 while the baseline scores its last epoch;
leave ``--dev`` out for a last-epoch-against-last-epoch comparison. BioASQ yes/no questions: score the
same PubMedQA-trained models on the golden files' yes/no questions, ours with ``biobert-ray evaluate
yesno --model /tmp/bench_qa/yesno-ours --data ../shared/data/bioasq/golden/6B1_golden.json.gz`` (and
6B2..6B5), the baseline with a second group in the same run:
``--test ../shared/data/bioasq/golden/6B{1,2,3,4,5}_golden.json.gz`` (a PubMedQA-trained model may answer
``maybe``, which then counts as a class of its own in both).

The base model is the offline all-MiniLM-L6-v2 (``biobert_ray.models.default_base_model()``) unless
``--base-model`` names another local directory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from biobert_ray import models
from biobert_ray.samples import sample_path
from biobert_ray.tasks.qa import metrics
from biobert_ray.tasks.qa.formats import QaExample, read_examples, type_counts
from biobert_ray.tasks.qa.task import DEFAULT_LIST_THRESHOLD, question_scores
from biobert_ray.tasks.qa.yesno_files import YesNoExample, read_yesno

#: The options saved with the results.
SETTINGS = (
    "task", "train", "max_train_samples", "max_test_samples", "epochs", "learning_rate", "batch_size",
    "warmup_ratio", "max_seq_length", "doc_stride", "max_answer_length", "n_best", "list_threshold", "seed",
)  # fmt: skip
#: Ours cuts questions to this many sub-tokens (``--max-query-length``); run_qa does not.
OUR_MAX_QUERY_LENGTH = 64


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded features as the list of dicts the Trainer's collator expects."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def test_spec(spec: str) -> tuple[str, str | None]:
    """``(path, gold file or None)`` of a ``--test`` value ``PATH`` or ``PATH::GOLD``."""
    path, _, gold = spec.partition("::")
    return path, gold or None


# --------------------------------------------------------------------------------------------------
# qa: run_qa's pre-processing and utils_qa's post-processing


def tokenize_pairs(
    examples: Sequence[QaExample], tokenizer: Any, args: argparse.Namespace
) -> tuple[Any, int]:
    """run_qa's tokenization of ``examples`` (overflowing features, offsets, padded to the maximum) and
    the sequence id of the context."""
    pad_on_right = tokenizer.padding_side == "right"
    questions = [e.question.lstrip() for e in examples]
    contexts = [e.context for e in examples]
    encoded = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=args.max_seq_length,
        stride=args.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    return encoded, 1 if pad_on_right else 0


def train_features(
    examples: Sequence[QaExample], tokenizer: Any, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int, int]:
    """run_qa's ``prepare_train_features``: labelled features, how many hold their answer and how many of
    those have a start label outside the context (run_qa's edge case, kept: an answer starting at the
    feature's last context sub-token walks on over ``[SEP]`` and the padding, whose offsets are (0, 0))."""
    encoded, context_id = tokenize_pairs(examples, tokenizer, args)
    sample_mapping = encoded.pop("overflow_to_sample_mapping")
    offset_mapping = encoded.pop("offset_mapping")
    keys = list(encoded.keys())
    features, answered, stray = [], 0, 0
    for i, offsets in enumerate(offset_mapping):
        input_ids = encoded["input_ids"][i]
        if tokenizer.cls_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.cls_token_id)
        elif tokenizer.bos_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.bos_token_id)
        else:
            cls_index = 0
        sequence_ids = encoded.sequence_ids(i)
        example = examples[sample_mapping[i]]
        start = end = cls_index
        if example.answers:
            text, start_char = example.answers[0]
            end_char = start_char + len(text)
            token_start = 0
            while sequence_ids[token_start] != context_id:
                token_start += 1
            token_end = len(input_ids) - 1
            while sequence_ids[token_end] != context_id:
                token_end -= 1
            if offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char:
                while token_start < len(offsets) and offsets[token_start][0] <= start_char:
                    token_start += 1
                start = token_start - 1
                while offsets[token_end][1] >= end_char:
                    token_end -= 1
                end = token_end + 1
                answered += 1
                stray += sequence_ids[start] != context_id
        features.append(
            {**{key: encoded[key][i] for key in keys}, "start_positions": start, "end_positions": end}
        )
    return features, answered, stray


def test_features(
    examples: Sequence[QaExample], tokenizer: Any, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[int], list[list[tuple[int, int] | None]]]:
    """run_qa's ``prepare_validation_features``: the model inputs of each feature, the example it
    belongs to, and its offsets (None outside the context)."""
    encoded, context_id = tokenize_pairs(examples, tokenizer, args)
    sample_mapping = encoded.pop("overflow_to_sample_mapping")
    offset_mapping = encoded.pop("offset_mapping")
    keys = list(encoded.keys())
    features, owners, offsets = [], [], []
    for i in range(len(encoded["input_ids"])):
        sequence_ids = encoded.sequence_ids(i)
        features.append({key: encoded[key][i] for key in keys})
        owners.append(int(sample_mapping[i]))
        offsets.append(
            [tuple(o) if sequence_ids[k] == context_id else None for k, o in enumerate(offset_mapping[i])]
        )
    return features, owners, offsets


def example_spans(
    examples: Sequence[QaExample],
    owners: Sequence[int],
    offsets: Sequence[Sequence[tuple[int, int] | None]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int,
    max_answer_length: int,
) -> list[list[tuple[str, float]]]:
    """utils_qa's ``postprocess_qa_predictions`` (SQuAD v1): each example's n-best ``(text,
    probability)`` spans over all its features (module docstring)."""
    features_per_example: dict[int, list[int]] = defaultdict(list)
    for feature, owner in enumerate(owners):
        features_per_example[owner].append(feature)
    result = []
    for index, example in enumerate(examples):
        prelim = []
        for feature in features_per_example[index]:
            starts, ends, mapping = start_logits[feature], end_logits[feature], offsets[feature]
            start_indexes = np.argsort(starts)[-1 : -n_best - 1 : -1].tolist()
            end_indexes = np.argsort(ends)[-1 : -n_best - 1 : -1].tolist()
            for s in start_indexes:
                for e in end_indexes:
                    if s >= len(mapping) or e >= len(mapping) or mapping[s] is None or mapping[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append({"offsets": (mapping[s][0], mapping[e][1]), "score": starts[s] + ends[e]})
        predictions = sorted(prelim, key=lambda p: p["score"], reverse=True)[:n_best]
        if not predictions:
            result.append([])
            continue
        scores = np.array([p["score"] for p in predictions])
        exp_scores = np.exp(scores - np.max(scores))
        probabilities = exp_scores / exp_scores.sum()
        result.append(
            [
                (example.context[p["offsets"][0] : p["offsets"][1]], float(prob))
                for p, prob in zip(predictions, probabilities, strict=True)
            ]
        )
    return result


def rank_answers(
    examples: Sequence[QaExample], spans: Sequence[Sequence[tuple[str, float]]]
) -> dict[str, list[tuple[str, float]]]:
    """Each question's distinct answers over all its examples, merged by normalised text with their
    highest probability, best first (ties by text)."""
    best: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
    for example, found in zip(examples, spans, strict=True):
        merged = best[example.question_id]
        for text, probability in found:
            key = metrics.normalize(text)
            if key and (key not in merged or probability > merged[key][1]):
                merged[key] = (text, probability)
    return {qid: sorted(found.values(), key=lambda a: (-a[1], a[0])) for qid, found in best.items()}


def qa_report(scores: dict[str, Any]) -> str:
    """Factoid accuracy and MRR, list precision, recall and F1 at the threshold and the best one."""
    lines = []
    if "factoid" in scores:
        f = scores["factoid"]
        lines.append(
            f"  factoid ({f['questions']} questions): strict accuracy {f['strict_accuracy']:.4f}, "
            f"lenient accuracy {f['lenient_accuracy']:.4f}, MRR {f['mrr']:.4f}"
        )
    if "list" in scores:
        s = scores["list"]
        lines.append(
            f"  list ({s['questions']} questions, threshold {s['threshold']:.2f}): precision "
            f"{s['precision']:.4f}, recall {s['recall']:.4f}, F1 {s['f1']:.4f} (best threshold here: "
            f"{s['best_threshold']:.2f}, F1 {s['f1_by_threshold'][s['best_threshold']]:.4f})"
        )
    return "\n".join(lines)


def qa_headline(scores: dict[str, Any]) -> dict[str, float]:
    """The figures of one file that a group's mean averages."""
    row = {"primary": scores["primary"]["value"]}
    if "factoid" in scores:
        row |= {f"factoid_{k}": scores["factoid"][k] for k in ("strict_accuracy", "lenient_accuracy", "mrr")}
    if "list" in scores:
        s = scores["list"]
        row |= {f"list_{k}": s[k] for k in ("precision", "recall", "f1")}
        row["list_f1_at_best_threshold"] = s["f1_by_threshold"][s["best_threshold"]]
    return row


def long_questions(examples: Sequence[QaExample], tokenizer: Any) -> int:
    """Distinct questions longer than ours keeps (``--max-query-length`` 64 sub-tokens)."""
    questions = sorted({e.question for e in examples})
    if not questions:
        return 0
    lengths = tokenizer(questions, add_special_tokens=False)["input_ids"]
    return sum(len(ids) > OUR_MAX_QUERY_LENGTH for ids in lengths)


def run_qa(args: argparse.Namespace, base: str) -> dict[str, Any]:
    """Train an ``AutoModelForQuestionAnswering`` on ``--train`` (or take the ``--trained`` one) and score
    it on every test group."""
    train = read_examples(args.train, "auto")[: args.max_train_samples]
    groups = [
        [
            (path, gold, read_examples(path, "auto", gold=gold)[: args.max_test_samples])
            for path, gold in group
        ]
        for group in args.test_groups
    ]
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if args.max_seq_length > tokenizer.model_max_length:
        print(
            f"--max-seq-length {args.max_seq_length} > the model's {tokenizer.model_max_length}; using that"
        )
        args.max_seq_length = tokenizer.model_max_length
    features, answered, stray = train_features(train, tokenizer, args)
    model = AutoModelForQuestionAnswering.from_pretrained(args.trained or base, local_files_only=True)
    trainer = Trainer(
        model=model,
        args=trainer_arguments(args, -(-len(features) // args.batch_size)),
        train_dataset=FeatureDataset(features),
        data_collator=default_data_collator,
    )
    kinds = type_counts(train)
    print(
        f"{args.train}: {len(train)} training examples of {sum(kinds.values())} questions ({dict(kinds)}), "
        f"{len(features)} features ({answered} holding their answer, {stray} of them with the start "
        "label past the context, the rest labelled [CLS]); "
        f"{long_questions(train, tokenizer)} questions over {OUR_MAX_QUERY_LENGTH} sub-tokens; "
        f"{-(-len(features) // args.batch_size)} steps/epoch; {torch.get_num_threads()} torch threads",
        flush=True,
    )
    train_start = time.perf_counter()
    steps, train_loss = 0, None
    if args.trained:
        print(f"--trained: scoring {args.trained} as it is, without training", flush=True)
    else:
        train_output = trainer.train()
        steps, train_loss = train_output.global_step, train_output.training_loss
    train_seconds = time.perf_counter() - train_start
    results = []
    for group in groups:
        files = []
        for path, gold, examples in group:
            predict_start = time.perf_counter()
            test, owners, offsets = test_features(examples, tokenizer, args)
            start_logits, end_logits = trainer.predict(FeatureDataset(test)).predictions[:2]
            spans = example_spans(
                examples, owners, offsets, start_logits, end_logits, args.n_best, args.max_answer_length
            )
            scores = question_scores(examples, rank_answers(examples, spans), args.list_threshold)
            kinds = type_counts(examples)
            files.append(
                {
                    "test": path,
                    "gold": gold,
                    "examples": len(examples),
                    "features": len(test),
                    "questions": dict(kinds),
                    "long_questions": long_questions(examples, tokenizer),
                    "scores": scores,
                    "predict_seconds": round(time.perf_counter() - predict_start, 1),
                }
            )
            where = f"{path}::{gold}" if gold else path
            print(
                f"{where}: {len(examples)} examples of {sum(kinds.values())} questions ({dict(kinds)}), "
                f"{len(test)} features\n{qa_report(scores)}",
                flush=True,
            )
        results.append(summarise(files, qa_headline))
    return {
        "train_examples": len(train),
        "train_questions": dict(type_counts(train)),
        "train_features": len(features),
        "train_features_with_answer": answered,
        "train_start_past_context": stray,
        "steps": steps,
        "train_loss": train_loss,
        "train_seconds": round(train_seconds, 1),
        "groups": results,
    }


# --------------------------------------------------------------------------------------------------
# yesno: run_glue's sequence-pair classification


def encode_yesno(
    examples: Sequence[YesNoExample], tokenizer: Any, max_length: int, label2id: dict[str, int]
) -> tuple[list[dict[str, Any]], int]:
    """Labelled, truncated question-context features and how many contexts were cut."""
    encoded = tokenizer(
        [e.question for e in examples],
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        return_offsets_mapping=True,
    )
    features, truncated = [], 0
    keys = [k for k in encoded if k != "offset_mapping"]
    for i, example in enumerate(examples):
        sequence_ids = encoded.sequence_ids(i)
        context_ends = [o[1] for k, o in enumerate(encoded["offset_mapping"][i]) if sequence_ids[k] == 1]
        truncated += bool(example.context[max(context_ends, default=0) :].strip())
        features.append({**{k: encoded[k][i] for k in keys}, "labels": label2id[example.label]})
    return features, truncated


def yesno_headline(scores: dict[str, Any]) -> dict[str, float]:
    """Accuracy and macro-F1 of one file."""
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}


def yesno_report(scores: dict[str, Any]) -> str:
    """Accuracy, macro-F1 and each class's scores."""
    lines = [f"  yes/no ({scores['questions']} questions): accuracy {scores['accuracy']:.4f}, "
             f"macro-F1 {scores['macro_f1']:.4f}"]  # fmt: skip
    for label, row in sorted(scores["per_class"].items()):
        lines.append(
            f"    {label:>6}: precision {row['precision']:.4f}, recall {row['recall']:.4f}, "
            f"F1 {row['f1']:.4f}, support {row['support']}"
        )
    return "\n".join(lines)


def run_yesno(args: argparse.Namespace, base: str) -> dict[str, Any]:
    """Train an ``AutoModelForSequenceClassification`` on ``--train`` and score it on every test group."""
    train = read_yesno(args.train)[: args.max_train_samples]
    groups = [
        [(path, read_yesno(path)[: args.max_test_samples]) for path, _ in group] for group in args.test_groups
    ]
    labels = sorted({e.label for e in train} | {e.label for g in groups for _, ex in g for e in ex})
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    features, truncated = encode_yesno(train, tokenizer, args.max_seq_length, label2id)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
    )
    trainer = Trainer(
        model=model,
        args=trainer_arguments(args, -(-len(features) // args.batch_size)),
        train_dataset=FeatureDataset(features),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    print(
        f"{args.train}: {len(train)} training questions ({dict(Counter(e.label for e in train))}), "
        f"{truncated} contexts truncated at {args.max_seq_length}; labels {labels}; "
        f"{-(-len(features) // args.batch_size)} steps/epoch; {torch.get_num_threads()} torch threads",
        flush=True,
    )
    train_start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - train_start
    results = []
    for group in groups:
        files = []
        for path, examples in group:
            predict_start = time.perf_counter()
            test, test_truncated = encode_yesno(examples, tokenizer, args.max_seq_length, label2id)
            logits = trainer.predict(FeatureDataset(test)).predictions
            gold = [e.label for e in examples]
            pred = [labels[int(i)] for i in np.asarray(logits).argmax(axis=-1)]
            scores = metrics.classification_scores(gold, pred, sorted(set(gold) | set(pred)))
            scores["primary"] = {"name": "macro f1", "value": scores["macro_f1"]}
            files.append(
                {
                    "test": path,
                    "examples": len(examples),
                    "features": len(test),
                    "questions": len(examples),
                    "truncated": test_truncated,
                    "scores": scores,
                    "predict_seconds": round(time.perf_counter() - predict_start, 1),
                }
            )
            print(
                f"{path}: {len(examples)} questions, {test_truncated} contexts truncated\n"
                + yesno_report(scores),
                flush=True,
            )
        results.append(summarise(files, yesno_headline))
    return {
        "labels": labels,
        "train_examples": len(train),
        "train_truncated": truncated,
        "steps": train_output.global_step,
        "train_loss": train_output.training_loss,
        "train_seconds": round(train_seconds, 1),
        "groups": results,
    }


# --------------------------------------------------------------------------------------------------


def summarise(files: list[dict[str, Any]], headline: Any) -> dict[str, Any]:
    """A group of scored files with the mean of each headline figure over the files that have it."""
    rows = [headline(f["scores"]) for f in files]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    mean = {k: statistics.fmean(row[k] for row in rows if k in row) for k in keys}
    counted = {k: sum(k in row for row in rows) for k in keys}
    if len(files) > 1:
        summary = ", ".join(f"{k} {v:.4f}" + (f" ({counted[k]} files)" if counted[k] < len(files) else "")
                            for k, v in mean.items())  # fmt: skip
        print(f"mean over {len(files)} files: {summary}", flush=True)
    return {"files": files, "mean": mean, "files_counted": counted}


def trainer_arguments(args: argparse.Namespace, steps_per_epoch: int) -> TrainingArguments:
    """``Trainer`` defaults with our hyper-parameters: CPU, no checkpoints, no evaluation, no reports."""
    return TrainingArguments(
        output_dir=os.path.join(os.environ.get("TMPDIR", "/tmp"), "qa_baseline_trainer"),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps in transformers 5
        lr_scheduler_type="linear",
        seed=args.seed,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(1, steps_per_epoch // 4),
        report_to="none",
        disable_tqdm=True,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: ``biobert-ray finetune qa``'s, and for ``--task qa`` the bundled
    BioASQ training set and 6b batch 1 golden file)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("qa", "yesno"), default="qa")
    parser.add_argument(
        "--train",
        default=None,
        help="training file (qa: SQuAD format with answers, default: the bundled BioASQ set; "
        "yesno: a PubMedQA path with #train, or a BioASQ golden file)",
    )
    parser.add_argument(
        "--test",
        nargs="+",
        action="append",
        default=None,
        metavar="PATH[::GOLD]",
        help="a group of test files scored with the same model, their mean printed; repeat for more "
        "groups; qa: PATH::GOLD takes the exact answers from the BioASQ golden file GOLD "
        "(default for qa: the bundled 6B1 golden file)",
    )
    parser.add_argument("--base-model", default=None, help="model directory (default: all-MiniLM-L6-v2)")
    parser.add_argument(
        "--trained",
        default=None,
        help="qa: score this fine-tuned span model (e.g. one of `biobert-ray finetune qa`) with the "
        "recipe's pre- and post-processing, without training: decoding apart from training",
    )
    parser.add_argument("--max-train-samples", type=int, default=None, help="use the first N (default: all)")
    parser.add_argument(
        "--max-test-samples", type=int, default=None, help="first N of each file (quick runs)"
    )
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-seq-length", type=int, default=128, help="sub-tokens per feature")
    parser.add_argument(
        "--doc-stride", type=int, default=32, help="qa: sub-tokens shared by overlapping features"
    )
    parser.add_argument("--max-answer-length", type=int, default=30, help="qa: longest span in sub-tokens")
    parser.add_argument("--n-best", type=int, default=20, help="qa: start and end candidates per feature")
    parser.add_argument(
        "--list-threshold", type=float, default=DEFAULT_LIST_THRESHOLD, help="qa: list answers kept"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.train is None:
        if args.task != "qa":
            parser.error("--task yesno needs --train (e.g. '../shared/data/pubmedqa#train')")
        args.train = sample_path("bioasq", "train.json.gz")
    if args.test is None:
        if args.task != "qa":
            parser.error("--task yesno needs --test (e.g. '../shared/data/pubmedqa#test')")
        args.test = [[sample_path("bioasq", "6B1_golden.json.gz")]]
    args.test_groups = [[test_spec(spec) for spec in group] for group in args.test]
    if args.trained and args.task != "qa":
        parser.error("--trained scores a span model: --task qa")
    if args.task == "yesno" and any(gold for group in args.test_groups for _, gold in group):
        parser.error("--task yesno reads its labels from the test file itself: no ::GOLD")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Train once, score every test file; print (and optionally save) scores, means and wall times."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    set_seed(args.seed)
    base = args.base_model or models.default_base_model()
    runner = run_qa if args.task == "qa" else run_yesno
    outcome = runner(args, base)
    result: dict[str, Any] = {
        "base_model": base,
        **{key: getattr(args, key) for key in SETTINGS},
        "test": [[{"test": path, "gold": gold} for path, gold in group] for group in args.test_groups],
        **outcome,
    }
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    for group in result["groups"]:
        mean = group["mean"]
        print(
            f"{len(group['files'])} file(s): primary {mean.get('primary', mean.get('macro_f1', 0.0)):.4f}; "
            + ", ".join(f"{k} {v:.4f}" for k, v in mean.items() if k != "primary")
        )
    print(f"{result['steps']} steps, train {result['train_seconds']} s, wall {result['wall_seconds']} s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
