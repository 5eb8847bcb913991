"""NER accuracy baseline: a plain ``transformers.Trainer`` token-classification run on NCBI-disease.

The recipe every Hugging Face token-classification example uses, with nothing of ours in the training
path, so that ``biobert-ray finetune ner`` can be compared with it on the same hyper-parameters:

- data: the bundled NCBI-disease files (``biobert_ray/sample_data/ncbi_disease``), read with
  ``biobert_ray.tasks.conll.read_conll(path, entity_type="Disease")`` (untyped ``B``/``I``/``O`` become
  ``B-Disease``/``I-Disease``); labels ``O``, ``B-Disease``, ``I-Disease``;
- encoding: the fast tokenizer on pre-split words, truncated at ``--max-length`` sub-tokens (128), the
  word's label on its first sub-token and -100 on the others and on special tokens;
- training: ``Trainer`` with its defaults (AdamW, linear schedule, gradient clipping at 1.0, no weight
  decay), ``DataCollatorForTokenClassification`` (dynamic padding), warm-up ``--warmup-ratio``, on CPU,
  no checkpoints; the model of the last epoch is scored;
- scoring: strict IOB2 entity precision / recall / F1 on the test set
  (``biobert_ray.tasks.iob2.entity_scores``, equal to ``seqeval`` in strict IOB2 mode; with ``seqeval``
  installed its F1 is printed beside it for a check). Words cut off by truncation are predicted ``O``,
  so every gold entity counts.

    HF_HUB_OFFLINE=1 python benchmarks/ner_baseline.py --epochs 3 --learning-rate 5e-5 --batch-size 32 \\
        --warmup-ratio 0 --out /tmp/bench_ner/baseline.json

The base model is the offline all-MiniLM-L6-v2 (``biobert_ray.models.default_base_model()``) unless
``--base-model`` names another local directory.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

from biobert_ray import models
from biobert_ray.samples import sample_path
from biobert_ray.tasks import conll
from biobert_ray.tasks import iob2 as metrics

IGNORE = -100
LABELS = ["O", "B-Disease", "I-Disease"]


class TokenDataset(torch.utils.data.Dataset):
    """Encoded sentences as the list of feature dicts the Trainer's collator expects."""

    def __init__(self, features: list[dict[str, list[int]]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]


def encode(
    sentences: Sequence[conll.Sentence], tokenizer: Any, max_length: int
) -> tuple[list[dict[str, list[int]]], int]:
    """First-subtoken labelled features of ``sentences`` and how many of them were truncated."""
    label2id = {label: i for i, label in enumerate(LABELS)}
    encoded = tokenizer(
        [list(s.words) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length
    )
    features, truncated = [], 0
    for index, sentence in enumerate(sentences):
        labels, previous = [], None
        word_ids = encoded.word_ids(index)
        for word in word_ids:
            labels.append(IGNORE if word is None or word == previous else label2id[sentence.tags[word]])
            previous = word
        seen = {w for w in word_ids if w is not None}
        truncated += len(seen) < len(sentence.words)
        features.append(
            {
                "input_ids": encoded["input_ids"][index],
                "attention_mask": encoded["attention_mask"][index],
                "labels": labels,
            }
        )
    return features, truncated


def predicted_tags(
    sentences: Sequence[conll.Sentence], features: Sequence[dict[str, list[int]]], logits: np.ndarray
) -> list[list[str]]:
    """One predicted tag per word: the argmax at its first sub-token, ``O`` for words lost to truncation."""
    result = []
    for sentence, feature, sentence_logits in zip(sentences, features, logits, strict=True):
        first_subtokens = [i for i, label in enumerate(feature["labels"]) if label != IGNORE]
        tags = [LABELS[int(sentence_logits[i].argmax())] for i in first_subtokens]
        result.append(tags + [conll.OUTSIDE] * (len(sentence.words) - len(tags)))
    return result


def seqeval_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float | None:
    """seqeval's strict IOB2 F1, as a cross-check, or None when seqeval is not installed."""
    try:
        from seqeval.metrics import f1_score
        from seqeval.scheme import IOB2
    except ImportError:
        return None
    return float(f1_score([list(g) for g in gold], [list(p) for p in pred], mode="strict", scheme=IOB2))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (defaults: the full training set, 3 epochs, lr 5e-5, batch 32, no warm-up)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = sample_path("ncbi_disease")
    parser.add_argument("--train", default=os.path.join(data, "train.tsv.gz"), help="training file")
    parser.add_argument("--test", default=os.path.join(data, "test.tsv.gz"), help="test file")
    parser.add_argument("--base-model", default=None, help="model directory (default: all-MiniLM-L6-v2)")
    parser.add_argument("--train-sentences", type=int, default=None, help="use the first N (default: all)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup-ratio", type=float, default=0.0)
    parser.add_argument("--max-length", type=int, default=128, help="sub-tokens per sentence (truncated)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, score on the test set, print (and optionally save) scores and wall times."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_seed(args.seed)
    started = time.perf_counter()
    base = args.base_model or models.default_base_model()
    train_sentences = conll.read_conll(args.train, entity_type="Disease")[: args.train_sentences]
    test_sentences = conll.read_conll(args.test, entity_type="Disease")
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    train_features, train_truncated = encode(train_sentences, tokenizer, args.max_length)
    test_features, test_truncated = encode(test_sentences, tokenizer, args.max_length)
    model = AutoModelForTokenClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    steps_per_epoch = -(-len(train_features) // args.batch_size)
    training_args = TrainingArguments(
        output_dir=os.path.join(os.environ.get("TMPDIR", "/tmp"), "ner_baseline_trainer"),
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
    collator = DataCollatorForTokenClassification(tokenizer)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=TokenDataset(train_features),
        data_collator=collator,
    )
    print(
        f"{len(train_features)} training sentences ({train_truncated} truncated at {args.max_length}), "
        f"{len(test_features)} test sentences ({test_truncated} truncated); {steps_per_epoch} steps/epoch; "
        f"{torch.get_num_threads()} torch threads",
        flush=True,
    )
    train_start = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - train_start
    logits = trainer.predict(TokenDataset(test_features)).predictions
    gold = [s.tags for s in test_sentences]
    pred = predicted_tags(test_sentences, test_features, logits)
    overall = metrics.entity_scores(gold, pred)["overall"]
    result = {
        "base_model": base,
        "train_sentences": len(train_features),
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "warmup_ratio": args.warmup_ratio,
        "max_length": args.max_length,
        "seed": args.seed,
        "steps": train_output.global_step,
        "train_loss": train_output.training_loss,
        "test": overall,
        "seqeval_f1": seqeval_f1(gold, pred),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"test P {overall['precision']:.4f} R {overall['recall']:.4f} F1 {overall['f1']:.4f} "
        f"(seqeval F1 {result['seqeval_f1']}); {result['steps']} steps, train {result['train_seconds']} s, "
        f"wall {result['wall_seconds']} s"
    )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
