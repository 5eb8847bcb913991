"""`notebooks/entities.ipynb` runs top to bottom on real tables (executed with nbclient)."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

from biobert_ray import annotate
from biobert_ray.config import AnnotateConfig

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]


def test_entities_notebook_executes(medline_160, tiny_ner_model, tmp_path, monkeypatch):
    shutil.copytree(medline_160, tmp_path / "articles")
    config = AnnotateConfig(
        articles=str(tmp_path / "articles"),
        model=(tiny_ner_model,),
        out=str(tmp_path / "entities"),
        cpus_per_actor=0.5,
    )
    annotate.run("ner", config, log=lambda *_: None)
    monkeypatch.setenv("BIOBERT_RAY_OUT", str(tmp_path))
    notebook = nbformat.read(REPO / "notebooks" / "entities.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert (tmp_path / "top_entities.png").stat().st_size > 1000
    printed = "".join(o.get("text", "") for o in outputs)
    assert "mentions in" in printed and "of 160 articles" in printed
