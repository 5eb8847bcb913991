"""CPU seconds of a command's whole process tree, per process name: where a test's time goes.

Runs the command, samples its process tree (the command, its children and theirs: for a test, pytest,
Ray's GCS and raylet, every worker and actor) every ``--interval`` seconds with psutil, keeps the last
user + system time seen of each process, and prints the wall time, the total CPU seconds and the
processes grouped by command line, most CPU first. Processes detached from the tree (a ``ray start``
head's) are not counted; the last interval of a process that exits is lost.

    python benchmarks/process_cpu.py -- python -m pytest -q tests/test_relations.py -k crossval
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time

import psutil


def sample(root: psutil.Process, seen: dict[tuple[int, float], tuple[str, float]]) -> None:
    """Record ``(name, cpu seconds)`` of ``root`` and every process under it, keyed by pid and start."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for process in processes:
        try:
            times = process.cpu_times()
            name = " ".join(process.cmdline())[:90] or process.name()
            seen[(process.pid, process.create_time())] = (name, times.user + times.system)
        except psutil.Error:
            continue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("--top", type=int, default=20, help="process names to print")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.monotonic()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    seen: dict[tuple[int, float], tuple[str, float]] = {}
    while child.poll() is None:
        sample(root, seen)
        time.sleep(args.interval)
    wall = time.monotonic() - started
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for name, seconds in seen.values():
        by_name[name].append(seconds)
    total = sum(sum(v) for v in by_name.values())
    summary = f"wall {wall:.1f} s, CPU {total:.1f} s ({total / wall:.2f} cores), {len(seen)} processes"
    print(summary, file=sys.stderr)
    for name, seconds in sorted(by_name.items(), key=lambda item: -sum(item[1]))[: args.top]:
        print(f"{sum(seconds):8.1f} s {len(seconds):4d}x  {name}", file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
