"""`annotate ner` over the bundled sample on a local Ray: offsets, several models, resume."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import save_tiny_ner_model

from biobert_ray import annotate as annotation
from biobert_ray import inference, query, runs, schemas
from biobert_ray.annotate import build, plan, stages
from biobert_ray.config import AnnotateConfig
from biobert_ray.tasks import make_task

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(300)]


def annotate(articles: str, models: tuple[str, ...], out, **kw) -> dict:
    config = AnnotateConfig(articles=articles, model=models, out=str(out), cpus_per_actor=0.5, **kw)
    return annotation.run("ner", config, log=lambda *_: None)


@pytest.fixture(scope="module")
def two_models(tiny_bert, tiny_ner_model, tmp_path_factory) -> tuple[str, str]:
    """The Disease tagger and a Chemical tagger with another head: their outputs differ."""
    chemical = save_tiny_ner_model(tiny_bert, tmp_path_factory.mktemp("second") / "model", "Chemical", seed=2)
    return tiny_ner_model, chemical


@pytest.fixture(scope="module")
def annotated(sample_articles, two_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("entities") / "entities"
    report = annotate(sample_articles, two_models, out, precision="fp32")  # rows do not depend on batching
    return out, report


def test_every_row_points_at_its_text(annotated, sample_articles):
    out, report = annotated
    entities = pl.read_parquet(out / "*.parquet")
    assert entities.height > 1000, "the biased untrained head predicts many mentions"
    assert pq.read_schema(out / "medline16n0902.parquet").equals(schemas.ENTITIES)
    articles = pl.read_parquet(f"{sample_articles}/*.parquet").select("pmid", "title", "abstract")
    joined = entities.join(articles, on="pmid", how="left")
    assert joined["title"].null_count() == 0
    for row in joined.iter_rows(named=True):
        section = row["title"] if row["section"] == "title" else row["abstract"]
        assert section[row["char_start"] : row["char_end"]] == row["text"], row
    assert entities["score"].is_between(0.0, 1.0).all()
    assert report["counts"]["articles"] == 609 and report["counts"]["shards_processed"] == 3
    assert report["counts"]["rows"] == entities.height and report["articles_per_second"] > 0


def test_several_models_in_one_pass_give_each_model_its_own_rows(
    annotated, two_models, sample_articles, tmp_path
):
    out, _ = annotated
    entities = pl.read_parquet(out / "*.parquet")
    assert sorted(entities["model"].unique()) == sorted(two_models)
    assert dict(entities.group_by("model").agg(pl.col("entity_type").unique().first()).iter_rows()) == {
        two_models[0]: "Disease", two_models[1]: "Chemical",
    }  # fmt: skip
    keys = ["pmid", "section", "sentence_index", "char_start", "char_end", "text", "entity_type"]
    for index, model in enumerate(two_models):  # each model alone, on the first 60 articles
        alone = tmp_path / f"alone{index}"
        annotate(sample_articles, (model,), alone, max_articles=60, precision="fp32")
        expected = pl.read_parquet(alone / "*.parquet").sort(keys)
        together = entities.filter(
            (pl.col("model") == model) & pl.col("pmid").is_in(expected["pmid"].unique())
        )
        mine = together.filter(
            pl.col("pmid").is_in(query.articles(sample_articles).head(60).collect()["pmid"])
        )
        assert mine.select(keys).sort(keys).equals(expected.select(keys)), f"rows of {model} mixed up"
        assert (mine.sort(keys)["score"] - expected["score"]).abs().max() < 1e-2


def test_long_sentences_are_windowed_not_truncated(annotated, sample_articles):
    out, _ = annotated
    entities = pl.read_parquet(out / "*.parquet")
    # the model's windows hold 22 sub-tokens; mentions far past that in a sentence must still exist
    sentence_starts = entities.group_by("pmid", "section", "sentence_index").agg(
        (pl.col("char_start").max() - pl.col("char_start").min()).alias("spread")
    )
    assert sentence_starts["spread"].max() > 150


def test_rerun_skips_complete_shards_and_redoes_a_missing_one(annotated, sample_articles, two_models):
    out, _ = annotated
    before = pl.read_parquet(out / "*.parquet").drop("run_id").sort(pl.all())
    report = annotate(sample_articles, two_models, out, precision="fp32")
    assert report["counts"]["shards_skipped"] == 3 and report["counts"]["shards_processed"] == 0
    (out / "test_current_medline.parquet").unlink()
    report = annotate(sample_articles, two_models, out, precision="fp32")
    assert [s["name"] for s in report["shards"] if s["status"] == "ok"] == ["test_current_medline"]
    assert pl.read_parquet(out / "*.parquet").drop("run_id").sort(pl.all()).equals(before)
    assert not list(out.rglob("_parts/*/*.parquet")), "part files are merged and removed"


def test_max_articles_caps_the_run(sample_articles, tiny_ner_model, tmp_path):
    report = annotate(sample_articles, (tiny_ner_model,), tmp_path / "capped", max_articles=10)
    assert report["counts"]["articles"] == 10
    assert query.entities(str(tmp_path / "capped")).select(pl.col("pmid").n_unique()).collect().item() <= 10


def test_articles_without_text_still_complete_their_shard(tiny_ner_model, tmp_path):
    rows = [
        {"pmid": 1, "title": "Huntington disease and ataxia.", "abstract": "Mutations cause ataxia. " * 30},
        {"pmid": 2, "title": None, "abstract": None},
        {"pmid": 3, "title": "\u200b\u200b", "abstract": "  "},
    ]
    table = pa.Table.from_pylist(
        [{**r, "source_file": "x.xml", "record_index": i} for i, r in enumerate(rows)],
        schema=schemas.ARTICLES,
    )
    (tmp_path / "articles").mkdir()
    shard = tmp_path / "articles" / "pubmed25n0001.parquet"
    pq.write_table(table, shard)
    runs.mark_complete(str(tmp_path / "articles"), "pubmed25n0001", {"input": "handmade"}, [str(shard)])
    report = annotate(str(tmp_path / "articles"), (tiny_ner_model,), tmp_path / "entities")
    assert report["counts"]["articles"] == 3 and report["counts"]["shards_processed"] == 1
    entities = pl.read_parquet(tmp_path / "entities" / "pubmed25n0001.parquet")
    assert set(entities["pmid"]) <= {1, 3}


def test_int8_quantized_run_writes_the_same_table_shape(sample_articles, tiny_ner_model, tmp_path):
    fp32 = annotate(sample_articles, (tiny_ner_model,), tmp_path / "fp32", max_articles=40, precision="fp32")
    int8 = annotate(sample_articles, (tiny_ner_model,), tmp_path / "int8", max_articles=40, quantize=True)
    assert int8["counts"]["articles"] == fp32["counts"]["articles"] == 40
    rows = {name: pl.read_parquet(tmp_path / name / "*.parquet") for name in ("fp32", "int8")}
    assert pq.read_schema(next((tmp_path / "int8").glob("*.parquet"))).equals(schemas.ENTITIES)
    spans = {
        name: set(t.select("pmid", "section", "char_start", "char_end").iter_rows())
        for name, t in rows.items()
    }
    assert len(spans["int8"] & spans["fp32"]) >= 0.8 * len(spans["fp32"]) > 0, "int8 keeps most mentions"


def test_each_row_group_is_its_own_task_and_block(medline_160, tiny_ner_model, tmp_path):
    """Ray Data must not bundle row groups: each is one read+encode task and one block for the actor.

    Bundled, the whole corpus reached the actor as one task, and decoding waited for the last forward.
    """
    config = AnnotateConfig(
        articles=medline_160, model=(tiny_ner_model,), out=str(tmp_path / "e"), cpus_per_actor=0.5
    )
    ner = make_task("ner")
    pending = plan.plan(ner, config, log=lambda *_: None)["pending"]
    work = [
        {"shard": p["shard"], "path": p["path"], "row_group": g, "limit": take, "side": "{}"}
        for p in pending
        for g, take in p["row_groups"]
    ]
    dataset = build.build(ner, config, work, "test-run", {p["shard"]: p["digest"] for p in pending}, 0.5)
    summaries = list(dataset.iter_rows())
    assert sum(s["articles"] for s in summaries) == 160
    operators = {
        line.split(": ")[0].split(" ", 2)[2]: line.split(": ")[1]
        for line in dataset.stats().splitlines()
        if line.startswith("Operator ")
    }
    row_groups = sum(len(p["row_groups"]) for p in pending)
    assert row_groups >= 4, "the sample's shards hold several row groups"
    read_and_encode = operators["MapBatches(read_and_encode)"]
    assert read_and_encode.startswith(f"{row_groups} tasks executed, {row_groups} blocks produced")
    predict_tasks = int(operators["MapBatches(Predictor)"].split(" tasks")[0])
    assert predict_tasks > 1, "row groups below a batch may share an actor call, not the whole corpus"


def test_bf16_run_finds_the_mentions_of_fp32(sample_articles, tiny_ner_model, tmp_path):
    runs = {
        precision: annotate(
            sample_articles, (tiny_ner_model,), tmp_path / precision, max_articles=40, precision=precision
        )
        for precision in ("fp32", "bf16")
    }
    assert runs["bf16"]["config"]["precision"] == "bf16" and runs["bf16"]["counts"]["articles"] == 40
    spans = {
        precision: set(
            pl.read_parquet(tmp_path / precision / "*.parquet")
            .select("pmid", "section", "char_start", "char_end")
            .iter_rows()
        )
        for precision in runs
    }
    assert len(spans["bf16"] & spans["fp32"]) >= 0.9 * len(spans["fp32"]) > 0


def test_precision_auto_uses_bf16_only_where_the_cpu_has_it():
    assert stages.cpu_bf16("auto", quantize=False) == inference.cpu_has_fast_bf16()
    assert stages.cpu_bf16("bf16", quantize=False) and not stages.cpu_bf16("fp32", quantize=False)
    assert not stages.cpu_bf16("bf16", quantize=True), "int8 models are not autocast"
