"""RE accuracy baseline: a plain ``transformers.Trainer`` sequence-classification run on a relation set.

The recipe every Hugging Face text-classification example uses, with nothing of ours in the training
path, so that ``biobert-ray finetune re`` + ``biobert-ray evaluate re`` can be compared with it on the
same base model, marking and hyper-parameters:

- data: read with our readers only, so that both see exactly the same examples and marked texts:
  ``biobert_ray.tasks.relation.formats.read_relations(path, "auto", ReadOptions(marking=--marking,
  max_sentence_distance=--max-sentence-distance))`` (``--marking`` applies to PubTator and DDI XML
  files, the distance to PubTator's candidate pairs; GAD/EU-ADR are anonymised and ChemProt positional
  as shipped; a DDI path takes a ``#train``, ``#dev`` or ``#test`` suffix); the first
  ``--max-train-samples`` training examples, as ours takes them; labels: the sorted distinct labels of
  the training and test examples, the negative class ``negative_label(labels, "auto")`` (``0`` for 0/1
  labels, else ``false`` where present, else none);
- marker tokens: with typed marking, ``marker_tokens(types, "typed")`` of the training examples'
  argument types are added with ``tokenizer.add_tokens(tokens, special_tokens=True)`` and
  ``model.resize_token_embeddings(len(tokenizer))``, the standard recipe and the same as ours;
- encoding: ``tokenizer(text, truncation=True, max_length=--max-length)`` (128 sub-tokens with
  ``[CLS]`` and ``[SEP]``), which keeps a long text's *first* sub-tokens, whether or not they hold the
  arguments; ours centres its window on the two arguments instead. That difference is part of what is
  compared: the script counts the texts truncated and those whose second argument is cut off;
- training: ``Trainer`` with its defaults (AdamW, linear schedule, gradient clipping at 1.0, no weight
  decay), ``DataCollatorWithPadding`` (dynamic padding), warm-up ``--warmup-ratio``, on CPU, no
  checkpoints; the model of the last epoch is scored (ours without ``--dev`` exports its last epoch too);
- scoring: our metric functions, so that the numbers are comparable: ``metrics.relation_scores(gold,
  pred, negative)`` (micro over the positive classes, or over all labels without a negative class)
  and, for PubTator files, whose examples carry their document's relations, ``metrics.document_scores``
  (BioCreative V's CID measure, then the primary score), printed with ``metrics.format_report``;
- cross-validation (GAD, EU-ADR): ``--folds-dir D --folds N`` replaces ``--train``/``--test`` by the folds
  ``D/<k>/train.*`` and ``D/<k>/test.*``, ``k = 1..N``, run one after the other, and prints each fold's
  primary score and the mean and sample standard deviation, as ``biobert-ray crossval`` does.

The pairs of commands (ours, then the baseline), each with 2 torch threads on a 2-CPU machine (ours: one
worker of 1.5 reserved CPUs, 0.5 kept for its data stage):

BC5CDR-CID at sentence distance 0, the bundled files at the demo's scale::

    biobert-ray finetune re --train biobert_ray/sample_data/bc5cdr_cid/train.pubtator.gz \\
        --marking anonymized --max-sentence-distance 0 --max-train-samples 2250 --epochs 1 \\
        --learning-rate 2e-4 --batch-size 16 --warmup-ratio 0.1 --max-seq-length 128 --num-workers 1 \\
        --out /tmp/bench_re/cid-ours
    biobert-ray evaluate re --model /tmp/bench_re/cid-ours \\
        --data biobert_ray/sample_data/bc5cdr_cid/test.pubtator.gz --out /tmp/bench_re/cid-ours-test.json
    HF_HUB_OFFLINE=1 python benchmarks/re_baseline.py \\
        --train biobert_ray/sample_data/bc5cdr_cid/train.pubtator.gz \\
        --test biobert_ray/sample_data/bc5cdr_cid/test.pubtator.gz --marking anonymized \\
        --max-sentence-distance 0 --max-train-samples 2250 --epochs 1 --learning-rate 2e-4 --batch-size 16 \\
        --warmup-ratio 0.1 --threads 2 --out /tmp/bench_re/cid-baseline.json

GAD, BioBERT's 10 folds::

    biobert-ray crossval re --data ../shared/data/gad --folds 10 --epochs 3 --learning-rate 5e-5 \\
        --batch-size 32 --warmup-ratio 0.1 --max-seq-length 128 --num-workers 1 \\
        --max-concurrent-folds 1 --out /tmp/bench_re/gad-ours
    HF_HUB_OFFLINE=1 python benchmarks/re_baseline.py --folds-dir ../shared/data/gad --folds 10 --epochs 3 \\
        --learning-rate 5e-5 --batch-size 32 --warmup-ratio 0.1 --threads 2 \\
        --out /tmp/bench_re/gad-baseline.json

ChemProt (SciBERT's files: positional marks, no negative class)::

    biobert-ray finetune re --train ../shared/data/chemprot/train.txt --epochs 3 --learning-rate 5e-5 \\
        --batch-size 32 --warmup-ratio 0.1 --max-seq-length 128 --num-workers 1 \\
        --out /tmp/bench_re/chemprot-ours
    biobert-ray evaluate re --model /tmp/bench_re/chemprot-ours --data ../shared/data/chemprot/test.txt \\
        --out /tmp/bench_re/chemprot-ours-test.json
    HF_HUB_OFFLINE=1 python benchmarks/re_baseline.py --train ../shared/data/chemprot/train.txt \\
        --test ../shared/data/chemprot/test.txt --epochs 3 --learning-rate 5e-5 --batch-size 32 \\
        --warmup-ratio 0.1 --threads 2 --out /tmp/bench_re/chemprot-baseline.json

DDI-2013 (the training release, split by document; typed entity markers)::

    biobert-ray finetune re --train '../shared/data/ddi2013/DDI2013_Train2.tar.gz#train' --marking typed \\
        --epochs 3 --learning-rate 5e-5 --batch-size 32 --warmup-ratio 0.1 --max-seq-length 128 \\
        --num-workers 1 --out /tmp/bench_re/ddi-ours
    biobert-ray evaluate re --model /tmp/bench_re/ddi-ours \\
        --data '../shared/data/ddi2013/DDI2013_Train2.tar.gz#test' --out /tmp/bench_re/ddi-ours-test.json
    HF_HUB_OFFLINE=1 python benchmarks/re_baseline.py \\
        --train '../shared/data/ddi2013/DDI2013_Train2.tar.gz#train' \\
        --test '../shared/data/ddi2013/DDI2013_Train2.tar.gz#test' --marking typed --epochs 3 \\
        --learning-rate 5e-5 --batch-size 32 --warmup-ratio 0.1 --threads 2 \\
        --out /tmp/bench_re/ddi-baseline.json

The base model is the offline all-MiniLM-L6-v2 (``biobert_ray.models.default_base_model()``) unless
``--base-model`` names another local directory.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from biobert_ray import models
from biobert_ray.samples import sample_path
from biobert_ray.tasks.relation import marking, metrics
from biobert_ray.tasks.relation.formats import ReadOptions, RelationExample, read_relations
from biobert_ray.tasks.relation.task import negative_label

#: The options saved with the results.
SETTINGS = (
    "marking", "max_sentence_distance", "max_train_samples", "max_test_samples", "epochs", "learning_rate",
    "batch_size", "warmup_ratio", "max_length", "seed",
)  # fmt: skip


class RelationDataset(torch.utils.data.Dataset):
    """Encoded texts as the list of feature dicts the Trainer's collator expects."""

    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def read(path: str, args: argparse.Namespace, limit: int | None) -> list[RelationExample]:
    """The first ``limit`` (all when None) examples of the relation file at ``path``, read by our reader
    with ``--marking`` and ``--max-sentence-distance``."""
    options = ReadOptions(marking=args.marking, max_sentence_distance=args.max_sentence_distance)
    return read_relations(path, "auto", options)[1][:limit]


def encode(
    examples: Sequence[RelationExample], tokenizer: Any, max_length: int, label2id: dict[str, int]
) -> tuple[list[dict[str, Any]], int, int]:
    """Right-truncated labelled features of ``examples``, how many texts were truncated and in how many
    of those the second argument (its marks included) is not wholly kept."""
    encoded = tokenizer(
        [e.text for e in examples], truncation=True, max_length=max_length, return_offsets_mapping=True
    )
    features, truncated, cut = [], 0, 0
    for index, example in enumerate(examples):
        kept = max(end for _, end in encoded["offset_mapping"][index])
        if example.text[kept:].strip():
            truncated += 1
            cut += marking.argument_spans(example.text, example.marking)[-1][1] > kept
        features.append(
            {
                "input_ids": encoded["input_ids"][index],
                "attention_mask": encoded["attention_mask"][index],
                "labels": label2id[example.label],
            }
        )
    return features, truncated, cut


def run(train_path: str, test_path: str, args: argparse.Namespace, base: str) -> dict[str, Any]:
    """Train on ``train_path``, score the last epoch's model on ``test_path``; returns the data, label
    and training figures, the scores (``relation_scores``, with ``document`` for PubTator files) and wall
    times."""
    started = time.perf_counter()
    set_seed(args.seed)
    train = read(train_path, args, args.max_train_samples)
    test = read(test_path, args, args.max_test_samples)
    styles = sorted({e.marking for e in train})
    if len(styles) != 1:
        raise ValueError(f"{train_path}: training examples must share one marking, found {styles}")
    labels = sorted({e.label for e in [*train, *test]})
    label2id = {label: i for i, label in enumerate(labels)}
    negative = negative_label(labels, "auto")
    types = sorted({t for e in train for t in e.types})
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    added = marking.marker_tokens(types, styles[0])
    if added:
        tokenizer.add_tokens(added, special_tokens=True)
    train_features, train_truncated, train_cut = encode(train, tokenizer, args.max_length, label2id)
    test_features, test_truncated, test_cut = encode(test, tokenizer, args.max_length, label2id)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
    )
    if added:
        model.resize_token_embeddings(len(tokenizer))
    steps_per_epoch = -(-len(train_features) // args.batch_size)
    training_args = TrainingArguments(
        output_dir=os.path.join(os.environ.get("TMPDIR", "/tmp"), "re_baseline_trainer"),
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
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=RelationDataset(train_features),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    print(
        f"{train_path}: {len(train)} training examples ({train_truncated} truncated at {args.max_length}, "
        f"{train_cut} of them with an argument cut off), {len(test)} test examples ({test_truncated} "
        f"truncated, {test_cut} cut off); labels {labels}, negative {negative!r}, marking {styles[0]!r}, "
        f"{len(added)} marker tokens; {steps_per_epoch} steps/epoch; {torch.get_num_threads()} torch threads",
        flush=True,
    )
    train_start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - train_start
    logits = trainer.predict(RelationDataset(test_features)).predictions
    pred = [labels[int(i)] for i in logits.argmax(axis=-1)]
    scores = metrics.relation_scores([e.label for e in test], pred, negative)
    if test and test[0].document is not None:
        scores["document"] = metrics.document_scores(
            [e.document for e in test], [p != negative for p in pred]
        )
        scores["primary"] = {"name": "document f1", "value": scores["document"]["f1"]}
    print(metrics.format_report(scores), flush=True)
    return {
        "train": train_path,
        "test": test_path,
        "train_examples": len(train),
        "test_examples": len(test),
        "truncated": {"train": train_truncated, "test": test_truncated},
        "argument_cut_off": {"train": train_cut, "test": test_cut},
        "labels": labels,
        "negative_label": negative,
        "marking_used": styles[0],
        "added_tokens": added,
        "steps": train_output.global_step,
        "train_loss": train_output.training_loss,
        "scores": scores,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def fold_files(folds_dir: str, folds: int) -> list[tuple[int, str, str]]:
    """``(fold, train file, test file)`` of folds ``1..folds``: ``<folds_dir>/<k>/train.*`` and
    ``test.*`` (FileNotFoundError naming a fold without exactly one of each)."""
    found = []
    for fold in range(1, folds + 1):
        train = sorted(glob.glob(os.path.join(folds_dir, str(fold), "train*")))
        test = sorted(glob.glob(os.path.join(folds_dir, str(fold), "test*")))
        if len(train) != 1 or len(test) != 1:
            raise FileNotFoundError(
                f"{folds_dir}/{fold}: expected one train.* and one test.* file, found {train + test}"
            )
        found.append((fold, train[0], test[0]))
    return found


def headline(scores: dict[str, Any]) -> dict[str, float]:
    """The primary score of one run with precision, recall and F1 of its ``overall`` row."""
    overall = scores["overall"]
    return {"primary": scores["primary"]["value"], **{k: overall[k] for k in ("precision", "recall", "f1")}}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the bundled BC5CDR-CID files, typed markers at distance 0, and
    ``biobert-ray finetune re``'s defaults: 3 epochs, lr 5e-5, batch 32, warm-up 0.1, length 128)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = sample_path("bc5cdr_cid")
    parser.add_argument("--train", default=os.path.join(data, "train.pubtator.gz"), help="training file")
    parser.add_argument("--test", default=os.path.join(data, "test.pubtator.gz"), help="test file")
    parser.add_argument("--folds-dir", default=None, help="cross-validate <dir>/<k>/train.*, test.* instead")
    parser.add_argument("--folds", type=int, default=10, help="with --folds-dir: folds 1..N")
    parser.add_argument(
        "--marking", choices=("typed", "anonymized"), default="typed", help="marking of PubTator/DDI files"
    )
    parser.add_argument(
        "--max-sentence-distance",
        type=int,
        default=0,
        help="PubTator pairs: mentions at most N sentences apart",
    )
    parser.add_argument("--base-model", default=None, help="model directory (default: all-MiniLM-L6-v2)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="use the first N (default: all)")
    parser.add_argument("--max-test-samples", type=int, default=None, help="use the first N (quick runs)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=128, help="sub-tokens per text (truncated)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train and score once, or on every fold; print (and optionally save) scores and wall times."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = args.base_model or models.default_base_model()
    result: dict[str, Any] = {"base_model": base, **{key: getattr(args, key) for key in SETTINGS}}
    if args.folds_dir:
        runs = []
        for fold, train, test in fold_files(args.folds_dir, args.folds):
            runs.append({"fold": fold, **run(train, test, args, base)})
            primary = runs[-1]["scores"]["primary"]
            print(f"fold {fold}: {primary['name']} {primary['value']:.4f}", flush=True)
        rows = [headline(r["scores"]) for r in runs]
        mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
        sd = {k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0 for k in rows[0]}
        result |= {"folds_dir": args.folds_dir, "folds": runs, "mean": mean, "sd": sd}
        summary = ", ".join(f"{k} {mean[k]:.4f} (sd {sd[k]:.4f})" for k in mean)
        print(f"{len(runs)} folds of {args.folds_dir}, mean {summary}")
    else:
        result |= run(args.train, args.test, args, base)
        overall, primary = result["scores"]["overall"], result["scores"]["primary"]
        print(
            f"test P {overall['precision']:.4f} R {overall['recall']:.4f} F1 {overall['f1']:.4f} "
            f"({primary['name']} {primary['value']:.4f}); {result['steps']} steps, "
            f"train {result['train_seconds']} s"
        )
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"wall {result['wall_seconds']} s")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
