"""glibc's malloc as ``biobert_ray.allocator.tune`` sets it, against glibc's defaults: the bare model
forward over the windows of ``annotate qa`` and a few fp32 training steps, each in a fresh process,
the two settings taking turns, in one run.

Input: the pairs of ``benchmarks/answers.py`` (the bundled sample's abstracts ``--repeat`` times over,
``--questions`` questions naming ``--docs-per-question`` articles each), cut into our actor's batches
(``answers.our_batches``). Each round starts one process per setting (``defaults``: nothing changed;
``tuned``: ``allocator.tune()`` before the model loads), which loads the model (``--model``, a span
model such as the demo's) and times ``model(**batch)`` over all batches at ``--precision`` (one untimed
warm-up batch), twice, then ``--train-steps`` fp32 training steps (forward, backward, AdamW) over every
third batch. Prints each process's seconds, the means per setting and tuned / defaults.

    HF_HUB_OFFLINE=1 python benchmarks/allocator.py --model out/demo/qa-bioasq --questions 40 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

# helpers of the other benchmarks (this script's directory is on sys.path when it runs)
from annotate import load_abstracts, time_forward, write_table
from answers import make_questions, our_batches, write_questions
from relations import THREADS, cpu_name, repeated

from biobert_ray import allocator, models
from biobert_ray.tasks.qa.questions import read_questions
from biobert_ray.tasks.qa.task import QaOptions, QaTask

SETTINGS = ("defaults", "tuned")


def time_training(model: torch.nn.Module, batches: Sequence[dict[str, torch.Tensor]], steps: int) -> float:
    """Seconds of ``steps`` fp32 training steps over every third batch (answers at position 0)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    chosen = batches[::3][:steps]
    start = time.perf_counter()
    for batch in chosen:
        zeros = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)
        model(**batch, start_positions=zeros, end_positions=zeros).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> int:
    """One measurement process: prints a JSON line of its seconds."""
    torch.set_num_threads(THREADS)
    if args.child == "tuned" and not allocator.tune():
        raise SystemExit("allocator.tune() changed nothing here (not glibc, or MALLOC_*_ set)")
    model_ref = models.resolve(args.model)
    questions = read_questions(str(Path(args.workdir) / "questions.jsonl"))
    _, batches = our_batches(
        str(Path(args.workdir) / "articles"), questions, QaTask(QaOptions()), model_ref, 16
    )
    model = models.load_model(model_ref, QaTask.model_class).eval()
    bf16 = args.precision == "bf16"
    forward = [time_forward(model, batches, cpu_bf16=bf16) for _ in range(2)]
    training = time_training(model, batches, args.train_steps) if args.train_steps else None
    print(json.dumps({"setting": args.child, "forward": forward, "training": training}), flush=True)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="out/demo/qa-bioasq", help="fine-tuned span (qa) model directory")
    parser.add_argument("--repeat", type=int, default=1, help="the sample's abstracts this many times over")
    parser.add_argument("--questions", type=int, default=40, help="questions")
    parser.add_argument("--docs-per-question", type=int, default=10, help="articles each question names")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16", help="of the forward")
    parser.add_argument("--train-steps", type=int, default=20, help="fp32 training steps (0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per setting")
    parser.add_argument("--child", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the input once, run the measurement processes in turns, print the comparison."""
    args = parse_args(argv)
    if args.child:
        return child(args)
    workdir = Path(tempfile.mkdtemp(prefix="allocator-bench-"))
    try:
        abstracts = repeated(load_abstracts(None, None, workdir), args.repeat)
        write_table(abstracts, workdir / "articles")
        write_questions(
            make_questions(abstracts, args.questions, args.docs_per_question), workdir / "questions.jsonl"
        )
        print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {THREADS} torch threads, "
              f"{args.precision} forward; load average {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        results: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
        for _ in range(args.rounds):
            for setting in SETTINGS:
                command = [sys.executable, __file__, *(argv or sys.argv[1:]), "--child", setting]
                output = subprocess.run([*command, "--workdir", str(workdir)], capture_output=True, text=True)
                if output.returncode:
                    raise SystemExit(f"the {setting} process failed:\n{output.stderr[-2000:]}")
                result = json.loads(output.stdout.strip().splitlines()[-1])
                results[setting].append(result)
                forward = " ".join(f"{seconds:.2f}" for seconds in result["forward"])
                training = f", training {result['training']:.2f} s" if result["training"] else ""
                print(f"{setting:<9} forward {forward} s{training}", flush=True)
        means = {
            setting: {
                "forward": statistics.mean(s for r in rs for s in r["forward"]),
                "training": statistics.mean(r["training"] for r in rs) if args.train_steps else None,
            }
            for setting, rs in results.items()
        }
        for measure in ("forward", "training"):
            defaults, tuned = means["defaults"][measure], means["tuned"][measure]
            if tuned is not None:
                ratio = tuned / defaults
                print(
                    f"{measure}: defaults {defaults:.2f} s, tuned {tuned:.2f} s, tuned / defaults {ratio:.2f}"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
