"""Size CPU reservations so that a job never waits for CPUs nobody will free.

Ray schedules by reservation: Ray Train workers and Ray Data actors hold their CPUs for the whole run,
and the Ray Data tasks that feed them (reading, tokenizing, packing, decoding) need CPUs of their own.
If the workers reserve every CPU, those tasks never start and the job waits forever, with only a
Ray log line to say so. Before a job starts, :func:`cpus_per_unit` compares what its workers or
actors would reserve with what the cluster has:

- On a single-node Ray (the local Ray a command starts, or a one-machine cluster) an unset
  reservation is sized to share the node's CPUs among the units, minus what the data stages need,
  and the choice is printed; a reservation that cannot fit is refused with a message naming the
  option to change; CPUs held now by other work (another job's actors) are named in a warning, since
  the job waits for them.
- On a multi-node cluster an unset reservation is one CPU per unit (Ray's default), and one that
  does not fit the CPUs there now is reported as a warning: the autoscaler may add nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ray

#: Reservations are multiples of this (Ray accepts fractions of a CPU).
STEP = 0.25


class ResourceError(ValueError):
    """A reservation that cannot fit on this Ray; the message names the option to change."""


def alive_nodes() -> int:
    return sum(1 for node in ray.nodes() if node.get("Alive"))


def cpus_per_unit(
    requested: float | None,
    units: int,
    data_cpus: float,
    flag: str,
    unit: str,
    use_gpu: bool = False,
    log: Callable[[str], Any] = print,
) -> float:
    """CPUs each of ``units`` workers or actors reserves, leaving ``data_cpus`` for the data stages.

    ``requested`` is the user's ``flag`` value (None: choose). Raises :class:`ResourceError` naming ``flag``
    when the reservation cannot fit on a single-node Ray. Call after Ray is connected.
    """
    total = ray.cluster_resources().get("CPU", 0.0)
    single_node = alive_nodes() <= 1
    room = total - data_cpus
    if requested is None:
        if use_gpu or not single_node:
            return 1.0
        per = math.floor(room / units / STEP) * STEP
        if per < STEP:
            raise ResourceError(
                f"{units} {unit}(s) do not fit on this Ray's {total:g} CPUs with {data_cpus:g} kept for the "
                f"data stages: use fewer {unit}s"
            )
        log(
            f"{units} {unit}(s) x {per:g} CPUs ({total:g} CPUs here, {data_cpus:g} kept for the data stages; "
            f"{flag} to change)"
        )
        _warn_if_held(units * per + data_cpus, total, log)
        return per
    if requested * units <= room:
        if single_node:
            _warn_if_held(units * requested + data_cpus, total, log)
        return requested
    fit = math.floor(room / units / STEP) * STEP
    message = (
        f"{units} {unit}(s) x {flag} {requested:g} = {requested * units:g} CPUs, but this Ray has {total:g} "
        f"CPUs and the data stages need {data_cpus:g}"
    )
    if single_node:
        advice = f"set {flag} {fit:g} or lower" if fit >= STEP else f"use fewer {unit}s"
        raise ResourceError(f"{message}: the job would wait forever; {advice}")
    log(f"warning: {message}; the job waits until the cluster adds CPUs")
    return requested


def _warn_if_held(needed: float, total: float, log: Callable[[str], Any]) -> None:
    """Say so when other work on this single-node Ray holds CPUs that this job's ``needed`` CPUs count
    on (another job's actors or workers): the job then waits for them, and without this line nothing
    says why."""
    free = ray.available_resources().get("CPU", 0.0)
    if free < needed:
        log(
            f"warning: {total - free:g} of this Ray's {total:g} CPUs are held by other work now; this job "
            f"needs {needed:g} and waits until they are free"
        )
