"""Relation extraction: the readers, BioBERT's scores, argument-centred windows, and fine-tuning and
evaluation through the shared Ray Train path and CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from conftest import SAMPLES, run_notebook, save_tiny_ner_model, save_tiny_re_model

from biobert_ray import annotate, cli, finetune, models, query, text
from biobert_ray.config import AnnotateConfig, FinetuneConfig
from biobert_ray.tasks.relation import RelationTask
from biobert_ray.tasks.relation.formats import RelationExample, RelationFormatError, read_relations
from biobert_ray.tasks.relation.marking import argument_spans
from biobert_ray.tasks.relation.metrics import relation_scores
from biobert_ray.tasks.relation.task import RelationOptions

GAD, CHEMPROT, CID = SAMPLES / "gad", SAMPLES / "chemprot", SAMPLES / "bc5cdr_cid"


def test_readers_recognise_biobert_tsv_and_scibert_jsonl():
    file_format, train = read_relations(str(GAD / "train.tsv.gz"))
    assert file_format == "biobert-tsv" and len(train) == 4796
    assert sum(e.label == "1" for e in train) == 2520 and train[0].line == 1
    assert "@GENE$" in train[0].text and "@DISEASE$" in train[0].text
    _, test = read_relations(str(GAD / "test.tsv.gz"))  # BioBERT's "index" header is skipped
    assert len(test) == 534 and test[0].line == 2 and {e.label for e in test} == {"0", "1"}
    file_format, chemprot = read_relations(str(CHEMPROT / "train.jsonl.gz"))
    assert file_format == "chemprot-jsonl" and len(chemprot) == 300
    assert chemprot[0].label == "INHIBITOR" and chemprot[0].text.startswith("<< Epidermal growth factor")


def test_a_bare_double_angle_in_a_chemprot_sentence_is_not_a_mark(tmp_path):
    """ChemProt's training line 1373 writes a potency order with ``>>``; its arguments are still found."""
    text = (
        "Prostaglandin E1, << 17-phenyl-trinor-PGE2 >> (an EP1-selective agonist) inhibited [[ HVA Ca2+ "
        "channels ]] was sulprostone>PGE2, PGE1>STA2>>17-phenyl-trinor-PGE2."
    )
    path = tmp_path / "chemprot.jsonl"
    path.write_text(json.dumps({"text": text, "label": "DOWNREGULATOR"}) + "\n")
    (example,) = read_relations(str(path))[1]
    first, second = argument_spans(example.text, "positional")
    assert text[slice(*first)] == "<< 17-phenyl-trinor-PGE2 >>"
    assert text[slice(*second)] == "[[ HVA Ca2+ channels ]]"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.tsv", "a @GENE$ b @DISEASE$\t1\nno tab here at all but @GENE$ @DISEASE$ x\n",
         r"bad\.tsv:2: expected 2 or 3 tab-separated columns, found 1"),
        ("bad2.tsv", "the gene and the disease\t1\n", r"bad2\.tsv:1: expected two anonymised arguments"),
        ("bad.jsonl", '{"text": "<< a >> [[ b ]]", "label": "X"}\n{"text": \n', r"bad\.jsonl:2: not JSON"),
        ("bad2.jsonl", '{"text": "<< a >> and b", "label": "X"}\n', r"bad2\.jsonl:1: expected one << >>"),
        ("bad3.jsonl", '{"text": "<< a >> [[ b ]] << c >>", "label": "X"}\n', r"bad3\.jsonl:1: expected one"),
    ],
)  # fmt: skip
def test_a_malformed_line_stops_the_reader_with_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RelationFormatError, match=message):
        read_relations(str(path))


def test_scores_match_hand_computed_values():
    # binary (GAD): precision, recall and F1 of class 1 (BioBERT's re_eval)
    binary = relation_scores(["1", "1", "1", "0", "0"], ["1", "0", "1", "1", "0"], negative="0")
    assert binary["overall"]["precision"] == pytest.approx(2 / 3) and binary["overall"][
        "recall"
    ] == pytest.approx(2 / 3)
    assert binary["primary"] == {"name": "f1", "value": pytest.approx(2 / 3)}
    # multi-class with a negative class: micro over the positive classes only
    gold = ["A", "A", "B", "false", "false", "B"]
    pred = ["A", "B", "B", "A", "false", "false"]
    multi = relation_scores(gold, pred, negative="false")
    # positive predictions: A, B, B, A (4), correct: A, B (2); positive gold: A, A, B, B (4)
    assert multi["overall"]["precision"] == pytest.approx(0.5) and multi["overall"][
        "recall"
    ] == pytest.approx(0.5)
    assert multi["per_class"]["A"]["f1"] == pytest.approx(0.5) and multi["per_class"]["B"][
        "f1"
    ] == pytest.approx(0.5)
    # no negative class (SciBERT's ChemProt): micro-F1 is accuracy, macro the mean over gold classes
    plain = relation_scores(["A", "A", "B", "C"], ["A", "B", "B", "A"], negative=None)
    assert plain["primary"] == {"name": "micro_f1", "value": pytest.approx(0.5)}
    # F1: A 2*(1/2*1/2)/1 = 0.5, B 2*(1/2*1)/(3/2) = 2/3, C 0
    assert plain["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    with pytest.raises(ValueError, match="3 gold labels but 2 predicted"):
        relation_scores(["A", "B", "C"], ["A", "B"], negative=None)


def test_a_long_sentence_keeps_both_arguments_in_its_window(tiny_bert):
    tokenizer = models.load_tokenizer(tiny_bert)
    filler = " ".join(["patients were enrolled in the study"] * 40)
    text = f"{filler} and @GENE$ variants were associated with @DISEASE$ in them . {filler}"
    task = RelationTask()
    ((window,),) = task.encode([RelationExample(text, "1", "x", 1)], tokenizer, 64, 0, {"0": 0, "1": 1})
    assert len(window["input_ids"]) == 64 and window["label"] == 1
    decoded = tokenizer.decode(window["input_ids"])
    assert "gene $" in decoded.lower() and "disease $" in decoded.lower(), decoded  # both arguments
    short = RelationExample("@GENE$ causes @DISEASE$ .", "0", "x", 1)
    ((window,),) = task.encode([short], tokenizer, 64, 0)
    assert "label" not in window and len(window["input_ids"]) < 64


def first_documents(source, out, count: int) -> str:
    """The first ``count`` documents of a PubTator file, written to ``out``."""
    with gzip.open(source, "rt") as f:
        documents = f.read().strip().split("\n\n")[:count]
    out.write_text("\n\n".join(documents) + "\n\n")
    return str(out)


@pytest.mark.usefixtures("ray_local")
@pytest.mark.timeout(400)
def test_finetune_cid_with_typed_markers_added_to_the_tokenizer(tiny_bert, tmp_path, capsys):
    train = first_documents(CID / "train.pubtator.gz", tmp_path / "train.pubtator", 30)
    dev = first_documents(CID / "test.pubtator.gz", tmp_path / "dev.pubtator", 20)
    model = str(tmp_path / "re-cid")
    config = FinetuneConfig(
        base_model=tiny_bert, train=train, dev=dev, out=model, epochs=1, batch_size=16,
        learning_rate=1e-3, max_seq_length=64, num_workers=1, cpus_per_worker=0.5,
    )  # fmt: skip
    summary = finetune.finetune("re", config, RelationOptions(max_sentence_distance=1), log=lambda *_: None)
    metadata = models.read_metadata(model)
    assert metadata["marking"] == "typed" and metadata["argument_types"] == ["Chemical", "Disease"]
    assert metadata["negative_label"] == "false" and metadata["max_sentence_distance"] == 1
    assert summary["dev_scores"]["primary"]["name"] == "document f1"
    tokenizer = models.load_tokenizer(model)
    assert all(len(tokenizer.tokenize(t)) == 1 for t in metadata["added_tokens"]) and len(tokenizer) == len(
        models.load_tokenizer(tiny_bert)
    ) + len(metadata["added_tokens"])
    # evaluation makes the candidates as the model was trained (sentence distance 1, typed markers)
    assert cli.main(["evaluate", "re", "--model", model, "--data", dev]) == 0
    out = capsys.readouterr().out
    assert "document level (" in out and "recall ceiling of the candidates" in out
    assert cli.main(["evaluate", "re", "--model", model, "--data", str(GAD / "test.tsv.gz")]) == 2
    assert "marks its arguments as 'anonymized'" in capsys.readouterr().err


def expected_candidates(entities: pl.DataFrame, articles: pl.DataFrame) -> set[tuple]:
    """Gene-disease mention pairs of one sentence, spans not overlapping, computed from the tables."""
    pairs = set()
    sections = {
        (r["pmid"], s): r[s] or "" for r in articles.iter_rows(named=True) for s in ("title", "abstract")
    }
    for (pmid, section, index), group in entities.group_by("pmid", "section", "sentence_index"):
        assert index < len(text.split_sentences(sections[(pmid, section)]))
        mentions = sorted(group.iter_rows(named=True), key=lambda m: (m["char_start"], m["char_end"]))
        for i, a in enumerate(mentions):
            for b in mentions[i + 1 :]:
                if b["char_start"] >= a["char_end"] and a["entity_type"] != b["entity_type"]:
                    pairs.add(
                        (pmid, section, index, a["char_start"], a["char_end"], b["char_start"], b["char_end"])
                    )
    return pairs


@pytest.mark.usefixtures("ray_local")
@pytest.mark.timeout(400)
def test_annotate_re_classifies_the_gene_disease_pairs_of_the_entities_table(
    tiny_bert, medline_160, tmp_path
):
    # taggers that find fewer mentions than the default tiny ones: every pair is classified, so the
    # pairs grow with the square of the mentions
    genes = save_tiny_ner_model(tiny_bert, tmp_path / "ner-gene", "Gene", seed=3, o_bias=0.25)
    diseases = save_tiny_ner_model(tiny_bert, tmp_path / "ner-disease", "Disease", seed=1, o_bias=0.25)
    entities = str(tmp_path / "entities")
    config = AnnotateConfig(articles=medline_160, model=(genes, diseases), out=entities, cpus_per_actor=0.5)
    assert annotate.run("ner", config, log=lambda *_: None)["status"] == "ok"
    model, out = save_tiny_re_model(tiny_bert, tmp_path / "re"), str(tmp_path / "relations")
    argv = ["annotate", "re", "--articles", medline_160, "--entities", entities, "--model", model,
            "--out", out, "--cpus-per-actor", "0.5"]  # fmt: skip
    assert cli.main([*argv, "--keep-negative"]) == 0
    everything = pl.read_parquet(f"{out}/*.parquet")
    expected = expected_candidates(
        pl.read_parquet(f"{entities}/*.parquet"), pl.read_parquet(f"{medline_160}/*.parquet")
    )
    keys = ["pmid", "section", "sentence_index", "arg1_char_start", "arg1_char_end"]
    found = set(everything.select(*keys, "arg2_char_start", "arg2_char_end").iter_rows())
    assert found == expected and everything.height == len(expected) > 0, "every candidate, once"
    texts = {
        (r["pmid"], section): r[section] or ""
        for r in pl.read_parquet(f"{medline_160}/*.parquet").iter_rows(named=True)
        for section in ("title", "abstract")
    }
    for row in everything.iter_rows(named=True):  # both arguments point at their text in the article
        body = texts[(row["pmid"], row["section"])]
        for n in (1, 2):
            assert body[row[f"arg{n}_char_start"] : row[f"arg{n}_char_end"]] == row[f"arg{n}_text"]
    assert set(zip(everything["arg1_type"], everything["arg2_type"], strict=True)) <= {
        ("Gene", "Disease"),
        ("Disease", "Gene"),
    }
    assert set(everything["relation"].unique()) <= {"0", "1"} and everything["model"].unique().to_list() == [
        model
    ]

    # query: the pairs of one entity, with their support
    arg = everything.row(0, named=True)["arg1_text"]
    pairs = query.relations_of(out, entity=arg).collect()
    assert pairs.height > 0 and ((pairs["arg1"] == arg.lower()) | (pairs["arg2"] == arg.lower())).all()
    assert (
        pairs["sentences"].sum()
        == everything.filter(
            (pl.col("arg1_text").str.to_lowercase() == arg.lower())
            | (pl.col("arg2_text").str.to_lowercase() == arg.lower())
        ).height
    )
    assert cli.main(["query", "relations", out, "--entity", arg, "--top", "3"]) == 0
    by_articles = query.relations_of(out, by="articles").collect()
    assert by_articles["articles"].to_list() == sorted(by_articles["articles"].to_list(), reverse=True)
    # the sentences behind one pair, in either argument order, from the articles' text
    first = everything.row(0, named=True)
    evidence = query.relation_evidence(out, medline_160, first["arg2_text"].upper(), first["arg1_text"])
    lowered = {first["arg1_text"].lower(), first["arg2_text"].lower()}
    same_pair = everything.filter(
        pl.col("arg1_text").str.to_lowercase().is_in(list(lowered))
        & pl.col("arg2_text").str.to_lowercase().is_in(list(lowered))
    )
    assert evidence.height == same_pair.height > 0
    for row in evidence.iter_rows(named=True):
        assert row["arg1_text"] in row["evidence"] and row["arg2_text"] in row["evidence"]
    pair = ["--pair", first["arg1_text"], first["arg2_text"], "--articles", medline_160]
    assert cli.main(["query", "relations", out, *pair]) == 0

    # the notebook over these tables (the demo's layout: articles, entities and relations side by side)
    (tmp_path / "articles").symlink_to(medline_160)
    printed = run_notebook("relations.ipynb", tmp_path)
    assert f"{everything.height} relations in" in printed and "sentences for" in printed
    assert (tmp_path / "top_relations.png").stat().st_size > 1000

    # an entities table with a row whose text is not its article's: that row is rejected, the rest kept;
    # the default keeps the relations (label 1) scored at least --min-score
    bad_row = corrupt_one_row(entities, str(tmp_path / "entities-bad"))
    argv[argv.index(entities)] = str(tmp_path / "entities-bad")
    assert cli.main([*argv, "--min-score", "0.5"]) == 0
    kept = pl.read_parquet(f"{out}/*.parquet")
    involved = pl.lit(False)
    for n in (1, 2):
        involved = involved | (
            (pl.col("pmid") == bad_row["pmid"]) & (pl.col("section") == bad_row["section"])
            & (pl.col(f"arg{n}_char_start") == bad_row["char_start"])
        )  # fmt: skip
    expected_kept = everything.filter((pl.col("relation") == "1") & (pl.col("score") >= 0.5) & ~involved)
    assert kept.height == expected_kept.height
    rejected = pl.read_parquet(f"{out}/_rejected/*.parquet")
    assert rejected.height == 1 and rejected["pmid"][0] == bad_row["pmid"]
    assert rejected["reason"][0].startswith("text 'XXX' does not match the article's")
    assert json.loads((tmp_path / "relations" / "_run.json").read_text())["counts"]["rejected_records"] == 1
    assert cli.main([*argv, "--min-score", "0.5"]) == 0, "a rerun of the same command"
    rerun = json.loads((tmp_path / "relations" / "_run.json").read_text())["counts"]
    assert (rerun["shards_processed"], rerun["shards_skipped"]) == (0, 2)


def corrupt_one_row(entities: str, out: str) -> dict:
    """A copy of the ``entities`` table at ``out`` whose first row has a wrong text; returns that row."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from biobert_ray import runs, schemas, storage

    shutil.copytree(entities, out)
    shard = sorted(Path(out).glob("*.parquet"))[0]
    rows = pq.read_table(shard).to_pylist()
    original = dict(rows[0])
    rows[0]["text"] = "XXX"
    storage.write_parquet(pa.Table.from_pylist(rows, schema=schemas.ENTITIES), str(shard), schemas.ENTITIES)
    marker = runs.read_marker(out, str(shard))
    summary = {
        k: v for k, v in marker.items() if k not in ("name", "identity", "outputs", "capped", "completed_at")
    }
    runs.mark_complete(
        out, marker["name"], marker["identity"], [str(shard)], capped=marker["capped"], **summary
    )
    return original


@pytest.mark.usefixtures("ray_local")
@pytest.mark.timeout(500)
def test_crossval_runs_each_fold_as_a_tune_trial_and_its_fold_models_evaluate_through_the_cli(
    tiny_bert, tmp_path, capsys
):
    with gzip.open(GAD / "train.tsv.gz", "rt") as f:
        lines = f.read().splitlines()
    for fold in (1, 2):  # two folds of BioBERT's layout, from different slices of GAD fold 1
        (tmp_path / "gad" / str(fold)).mkdir(parents=True)
        part = lines[fold * 300 : fold * 300 + 160]
        (tmp_path / "gad" / str(fold) / "train.tsv").write_text("\n".join(part[:120]) + "\n")
        (tmp_path / "gad" / str(fold) / "test.tsv").write_text("\n".join(part[120:]) + "\n")
    out = tmp_path / "cv"
    argv = ["crossval", "re", "--data", str(tmp_path / "gad"), "--folds", "2", "--base-model", tiny_bert,
            "--out", str(out), "--epochs", "1", "--batch-size", "16", "--max-seq-length", "64",
            "--cpus-per-worker", "0.5", "--max-concurrent-folds", "1"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "crossval re: 2 folds, mean primary" in printed
    assert "crossval: fold 2: f1" in printed
    assert "Configuration for experiment" not in printed and "View detailed results" not in printed  # Tune's
    summary = json.loads((out / "crossval.json").read_text())
    f1 = [fold["f1"] for fold in summary["folds"]]
    assert [fold["fold"] for fold in summary["folds"]] == [1, 2] and summary["primary"] == "f1"
    assert summary["mean"]["f1"] == pytest.approx(sum(f1) / 2)
    assert summary["sd"]["f1"] == pytest.approx(abs(f1[0] - f1[1]) / 2**0.5)
    for fold in (1, 2):
        assert models.read_metadata(str(out / f"fold-{fold}"))["train"].endswith(f"gad/{fold}/train.tsv")
    # a rerun scores the complete folds again without retraining them
    before = (out / "fold-1" / "model.safetensors").stat().st_mtime
    assert cli.main(argv) == 0 and (out / "fold-1" / "model.safetensors").stat().st_mtime == before
    capsys.readouterr()

    # a fold's model is a GAD model of the shared fine-tuning path, scored by `evaluate re` on GAD's test
    model = str(out / "fold-1")
    metadata = models.read_metadata(model)
    assert metadata["task"] == "re" and metadata["label_list"] == ["0", "1"]
    assert metadata["marking"] == "anonymized" and metadata["negative_label"] == "0"
    data = str(GAD / "test.tsv.gz")
    assert cli.main(["evaluate", "re", "--model", model, "--data", data, "--max-seq-length", "64"]) == 0
    printed = capsys.readouterr().out
    assert "(534 examples)" in printed and "negative class '0' excluded" in printed
    # a file marked another way than the model was trained with, and a model of another task: refused
    chemprot = tmp_path / "chemprot.jsonl"
    with gzip.open(CHEMPROT / "dev.jsonl.gz", "rt") as f:
        chemprot.write_text(f.read())
    assert json.loads(chemprot.read_text().splitlines()[0])["label"]
    assert cli.main(["evaluate", "re", "--model", model, "--data", str(chemprot)]) == 2
    assert "marks its arguments as 'positional'" in capsys.readouterr().err
    assert cli.main(["evaluate", "ner", "--model", model, "--data", data]) == 2
    assert "is a 're' model (biobert_ray.json), not a 'ner' model" in capsys.readouterr().err
