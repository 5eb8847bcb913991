"""One writer per output directory: a lease file that a second concurrent run refuses to share.

A run that writes a table (ingest, annotate) holds ``<out>/_lease.json`` while it runs: its run id,
command, host, process id, start time and a heartbeat time that a background thread renews every
:data:`HEARTBEAT_SECONDS`. Another run on the same output then stops with a message naming the
holder, unless

- the lease's heartbeat is older than :data:`STALE_SECONDS` (its holder died without cleaning up, on
  any machine), or its holder is a process of this host that no longer exists (a killed run): the new
  run takes it over with a warning;
- the new run passes ``--force``: it takes the lease over whatever its state (the other run's outputs
  may then mix with this one's; use it only when you know the other run is gone).

The lease is removed when the run ends, even when it fails. Local files are created exclusively
(``O_EXCL``); on an object store, which has no exclusive create, the run writes its lease, waits
briefly and reads it back, and refuses if another run's lease replaced it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from biobert_ray import storage

LEASE_FILE = "_lease.json"
#: How often the holder renews its heartbeat.
HEARTBEAT_SECONDS = 30.0
#: A lease whose heartbeat is older than this is abandoned (a few missed heartbeats).
STALE_SECONDS = 300.0
#: How long a run waits before reading back its lease on an object store.
SETTLE_SECONDS = 1.0


class LeaseHeldError(ValueError):
    """Another run holds the output directory's lease; the message names it."""

    def __init__(self, uri: str, holder: dict[str, Any]) -> None:
        super().__init__(
            f"{uri} is held by {_describe(holder)}: another run is writing this output. Wait for it to "
            "finish, or pass --force if you know it is gone"
        )


def _now() -> float:
    return time.time()


def _describe(lease: dict[str, Any]) -> str:
    age = _now() - lease.get("heartbeat", 0)
    return (
        f"run {lease.get('run_id')} ({lease.get('command')}, host {lease.get('host')}, "
        f"pid {lease.get('pid')}, started {lease.get('started_at')}, last heartbeat {age:.0f}s ago)"
    )


def _holder_is_gone(lease: dict[str, Any]) -> str | None:
    """Why ``lease`` may be taken over, or None while its holder may still be running."""
    age = _now() - lease.get("heartbeat", 0)
    if age > STALE_SECONDS:
        return f"its heartbeat is {age:.0f}s old"
    if lease.get("host") == socket.gethostname():
        try:
            os.kill(int(lease.get("pid", 0)), 0)
        except ProcessLookupError:
            return "its process no longer exists"
        except PermissionError:
            return None
    return None


class Lease:
    """Context manager holding ``<out>/_lease.json`` for one run (see the module docstring)."""

    def __init__(
        self, out: str, run_id: str, command: str, force: bool = False, log: Callable[[str], Any] = print
    ) -> None:
        self.uri = storage.join(out, LEASE_FILE)
        self.force, self.log = force, log
        self.record = {
            "run_id": run_id,
            "command": command,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            return storage.read_json(self.uri)
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"run_id": "unknown", "heartbeat": 0}  # a torn lease: treat as abandoned

    def _write(self, exclusive: bool) -> bool:
        """Write our lease; with ``exclusive``, only if none exists (False if another appeared)."""
        payload = json.dumps({**self.record, "heartbeat": _now()}, indent=2).encode()
        fs, path = storage.filesystem(self.uri)
        if exclusive and storage.is_local(fs):
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            return True
        with storage.atomic_open(self.uri) as f:
            f.write(payload)
        return True

    def _ours(self) -> bool:
        current = self._read()
        return current is not None and current.get("run_id") == self.record["run_id"]

    def __enter__(self) -> Lease:
        current = self._read()
        if current is not None:
            gone = _holder_is_gone(current)
            if not (gone or self.force):
                raise LeaseHeldError(self.uri, current)
            why = gone or "--force"
            self.log(f"warning: taking over the lease of {_describe(current)}: {why}")
            storage.remove(self.uri)
        if not self._write(exclusive=True):
            raise LeaseHeldError(self.uri, self._read() or {})
        fs, _ = storage.filesystem(self.uri)
        if not storage.is_local(fs):
            time.sleep(SETTLE_SECONDS)
            if not self._ours():
                raise LeaseHeldError(self.uri, self._read() or {})
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if not self._ours():
                self.log(f"warning: another run took over {self.uri}; this run's outputs may mix with it")
                return
            self._write(exclusive=False)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._ours():
            storage.remove(self.uri)
