"""`notebooks/entities.ipynb` runs top to bottom on real tables (executed with nbclient)."""

from __future__ import annotations

import shutil

import pytest
from conftest import run_notebook

from biobert_ray import annotate
from biobert_ray.config import AnnotateConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]


def test_entities_notebook_executes(medline_160, tiny_ner_model, tmp_path):
    shutil.copytree(medline_160, tmp_path / "articles")
    config = AnnotateConfig(
        articles=str(tmp_path / "articles"),
        model=(tiny_ner_model,),
        out=str(tmp_path / "entities"),
        cpus_per_actor=0.5,
    )
    annotate.run("ner", config, log=lambda *_: None)
    printed = run_notebook("entities.ipynb", tmp_path)
    assert (tmp_path / "top_entities.png").stat().st_size > 1000
    assert "mentions in" in printed and "of 160 articles" in printed
