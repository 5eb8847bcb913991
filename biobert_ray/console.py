"""The console is for people: what a command does, progress with rate and ETA, then one summary.

- :class:`Progress` shows how far a long step is: a ``tqdm`` bar when the output is a terminal, and
  otherwise (a log file, ``ray job logs``, CI) one plain line every :data:`LINE_SECONDS` and one at
  the end, so a log holds a few lines per step rather than one per unit of work.
- :func:`quiet_ray` keeps Ray's own INFO and WARNING lines (cluster start-up, Ray Data's execution
  plans and progress, Ray Train's scheduling) off the console: they go to :func:`log_file`, and
  worker processes' output stays in Ray's session logs. ``--verbose`` (:data:`VERBOSE`) brings
  them back. Warnings that matter to the user are printed by this package itself.
- :class:`Relay` carries lines and progress from Ray Train workers to the driver's console, so a
  training run shows one line per interval, printed once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

#: Seconds between progress lines when the output is not a terminal.
LINE_SECONDS = 30.0
#: Show Ray's own logs and worker output on the console (``--verbose``).
VERBOSE = False


def log_file() -> str:
    """Where Ray's driver-side log lines go when they are kept off the console."""
    return os.path.join(tempfile.gettempdir(), "biobert_ray", f"ray-driver-{os.getpid()}.log")


def quiet_ray() -> None:
    """Send Ray's driver-side INFO/WARNING logging to :func:`log_file` instead of the console.

    Call after importing ``ray.data`` (which sets up its own console handler) and before
    ``ray.init``. Ray's errors still reach the console; Ray Data's are reported by this package's
    summaries instead. Deprecation notices of the libraries are silenced. No-op with :data:`VERBOSE`.
    """
    if VERBOSE:
        return
    os.makedirs(os.path.dirname(log_file()), exist_ok=True)
    to_file = logging.FileHandler(log_file())
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name, console_level in (("ray", logging.ERROR), ("ray.data", logging.CRITICAL)):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(console_level)
        if not any(getattr(h, "baseFilename", None) == to_file.baseFilename for h in logger.handlers):
            logger.addHandler(to_file)
    _raylet_messages_to(to_file)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    with contextlib.suppress(ImportError):
        from ray.util.annotations import RayDeprecationWarning

        warnings.filterwarnings("ignore", category=RayDeprecationWarning)


def duration(seconds: float) -> str:
    """``0:04:07`` for 247 seconds."""
    return str(dt.timedelta(seconds=round(max(0.0, seconds))))


class Progress:
    """Progress of ``total`` units of work (articles, files, steps), reported by :meth:`update`.

    ``log`` receives the plain lines; with ``bar=None`` a bar is drawn when standard output is a
    terminal; ``initial`` units were done before (a resumed run). :meth:`close` ends the bar or
    prints the final line.
    """

    def __init__(
        self,
        what: str,
        total: int,
        unit: str,
        log: Callable[[str], Any] = print,
        bar: bool | None = None,
        initial: int = 0,
    ) -> None:
        self.what, self.total, self.unit, self.log = what, total, unit, log
        self.done = self.initial = initial
        self.start = self.last_line = time.perf_counter()
        self.bar = None
        if bar if bar is not None else sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, unit=f" {unit}", desc=what, dynamic_ncols=True, leave=True
            )

    @property
    def drawing(self) -> bool:
        """Whether a bar is drawn (else plain lines are printed)."""
        return self.bar is not None

    def rate(self) -> float:
        """Units per second so far (in this run: ``initial`` units were done before it)."""
        elapsed = time.perf_counter() - self.start
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``annotate: 1,200/2,120 articles (57%), 34.1 articles/s, eta 0:00:27``."""
        rate = self.rate()
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = duration((self.total - self.done) / rate) if rate > 0 else "?"
        counts = f"{self.done:,}/{self.total:,} {self.unit}{share}"
        return f"{self.what}: {counts}, {rate:,.1f} {self.unit}/s, eta {eta}"

    def update(self, n: int = 1, note: str = "") -> None:
        """Count ``n`` more units done; ``note`` (e.g. a loss) is shown beside the bar or line."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last_line >= LINE_SECONDS and self.done < self.total:
            self.last_line = now
            self.log(self.line() + (f" | {note}" if note else ""))

    def write(self, text: str) -> None:
        """Print a line of its own without breaking the bar."""
        if self.bar is not None:
            self.bar.write(text)
        else:
            self.log(text)

    def close(self) -> None:
        """End the bar; without one, print a final line if progress lines were printed."""
        if self.bar is not None:
            self.bar.close()
        elif self.last_line > self.start:
            self.log(self.line().split(", eta")[0] + f" in {duration(time.perf_counter() - self.start)}")


def _raylet_messages_to(handler: logging.Handler) -> None:
    """Send the messages Ray's raylets broadcast to every driver (``(raylet) WARNING: 8 PYTHON worker
    processes have been started ...``, ``A worker died ...``) to ``handler`` instead of the console.

    Ray prints them from a thread of its own through ``ray._private.worker.print_to_stdstream``, below
    its logging; this wraps that function. Worker output (``log_to_driver``) is off anyway; failures
    that matter are reported by this package's summaries.
    """
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_biobert_ray", False):
        return

    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            return original(data, ignore_prefix)
        for line in data.get("lines", []):
            handler.emit(
                logging.makeLogRecord(
                    {"name": "raylet", "levelno": logging.WARNING, "levelname": "WARNING", "msg": line}
                )
            )
        return None

    print_to_stdstream._biobert_ray = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream


class Relay:
    """Records from Ray workers to a handler on the driver, through a Ray queue read by a thread.

    Workers call :meth:`send` on the relay they got (it pickles as its queue's handle); the driver
    opens it with :meth:`running`, which calls ``handler(record)`` for each record, in order, until
    the block ends and the queue is drained. Sending never raises: the console must not stop training.
    """

    def __init__(self) -> None:
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})

    def send(self, record: dict[str, Any]) -> None:
        """Queue ``record`` for the driver (a worker-side call; never raises)."""
        with contextlib.suppress(Exception):
            self.queue.put_nowait(record)

    @contextlib.contextmanager
    def running(self, handler: Callable[[dict[str, Any]], Any]) -> Iterator[Relay]:
        """Hand every record sent to ``handler`` while the block runs (and those left at its end)."""
        from ray.util.queue import Empty

        stop = threading.Event()

        def pump() -> None:
            while True:
                try:
                    record = self.queue.get(timeout=0.5)
                except (Empty, queue.Empty):
                    if stop.is_set():
                        return
                    continue
                except Exception:  # the queue's actor is gone: nothing more will come
                    return
                handler(record)

        thread = threading.Thread(target=pump, name="console-relay", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=10)
            with contextlib.suppress(Exception):
                self.queue.shutdown()
