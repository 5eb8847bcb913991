"""Writers publish whole files or nothing; one run holds an output's lease at a time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biobert_ray import lease, schemas, storage

ROW = {"pmid": 1, "source_file": "a.xml", "record_index": 0}


def test_a_row_its_schema_cannot_hold_publishes_nothing(tmp_path):
    target = tmp_path / "deletions.parquet"
    with (
        pytest.raises((OverflowError, pa.ArrowInvalid)),
        storage.ParquetSink(str(target), schemas.DELETIONS) as sink,
    ):
        sink.add(ROW)
        sink.add({**ROW, "pmid": 10**20})  # fails only when the last row group is flushed, at close
    assert not target.exists() and not list(tmp_path.iterdir()), "no file, no temporary file"


def test_a_failed_commit_publishes_nothing(tmp_path):
    target = tmp_path / "deletions.parquet"
    target.mkdir()  # the final rename fails, as a full disk or a lost mount would
    with pytest.raises(OSError), storage.ParquetSink(str(target), schemas.DELETIONS) as sink:
        sink.add(ROW)
    assert [p.name for p in tmp_path.iterdir()] == ["deletions.parquet"] and target.is_dir()


def test_a_failed_flush_on_s3_uploads_nothing(s3_bucket):
    uri = f"{s3_bucket}/deletions.parquet"
    with (
        pytest.raises((OverflowError, pa.ArrowInvalid)),
        storage.ParquetSink(uri, schemas.DELETIONS, 1) as sink,
    ):
        sink.add(ROW)
        sink.add({**ROW, "pmid": 10**20})
    assert not storage.exists(uri)


def test_a_complete_sink_is_readable(tmp_path):
    target = tmp_path / "deletions.parquet"
    with storage.ParquetSink(str(target), schemas.DELETIONS, 2) as sink:
        for i in range(5):
            sink.add({**ROW, "pmid": i})
    assert pq.read_metadata(target).num_rows == 5


def write_lease(out, **fields) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {"run_id": "other", "command": "annotate", "host": socket.gethostname(), "pid": os.getpid()}
    (out / lease.LEASE_FILE).write_text(json.dumps({**record, "heartbeat": time.time(), **fields}))


def test_a_live_lease_is_refused_and_force_takes_it_over(tmp_path):
    write_lease(tmp_path)  # held by this very process: alive
    with pytest.raises(lease.LeaseHeldError, match="run other"), lease.Lease(str(tmp_path), "mine", "ingest"):
        pass
    said: list[str] = []
    with lease.Lease(str(tmp_path), "mine", "ingest", force=True, log=said.append):
        assert json.loads((tmp_path / lease.LEASE_FILE).read_text())["run_id"] == "mine"
    assert "--force" in said[0] and not (tmp_path / lease.LEASE_FILE).exists()


def test_a_dead_holder_or_an_old_heartbeat_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    write_lease(tmp_path, pid=int(dead.stdout))
    said: list[str] = []
    with lease.Lease(str(tmp_path), "mine", "ingest", log=said.append):
        pass
    assert "no longer exists" in said[0]
    write_lease(tmp_path, host="another-host", heartbeat=time.time() - lease.STALE_SECONDS - 1)
    with lease.Lease(str(tmp_path), "mine", "ingest", log=said.append):
        pass
    assert "heartbeat is" in said[1]
    write_lease(tmp_path, host="another-host")  # on another machine and fresh: may be running
    with pytest.raises(lease.LeaseHeldError), lease.Lease(str(tmp_path), "mine", "ingest"):
        pass


def test_the_lease_works_on_s3(s3_bucket):
    out = f"{s3_bucket}/table"
    with lease.Lease(out, "first", "ingest"):
        assert storage.exists(f"{out}/{lease.LEASE_FILE}")
        with pytest.raises(lease.LeaseHeldError), lease.Lease(out, "second", "ingest"):
            pass
    assert not storage.exists(f"{out}/{lease.LEASE_FILE}")
