"""Jobs submitted with `ray job submit` to a Ray head started by the test (loopback, free ports)."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import SAMPLES, submit_job

pytestmark = pytest.mark.timeout(400)


def test_ingest_job(ray_head, tmp_path):
    out = tmp_path / "articles"
    logs = submit_job(
        ray_head, "python", "jobs/ingest.py", "--input", str(SAMPLES / "pubmed"), "--out", str(out)
    )
    assert "609 articles, 1 deletions, 0 errors" in logs
    assert pl.scan_parquet(out / "*.parquet").select(pl.len()).collect().item() == 609
    assert (out / "_run.json").exists()
