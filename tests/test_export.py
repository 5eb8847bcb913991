"""``export``: tiny hand-made tables -> PubTator and BioC JSON, read back with the ``bioc`` library.

The tables hold two shards: a baseline file and an update file that revises PMID 10 (the old version's
mentions and relation must not be exported), adds PMID 5 (exported first: PMID order across shards)
and deletes PMID 40. PMID 20's abstract starts with two adjacent mentions (``HER2`` + ``neu``).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pytest
from bioc import biocjson, pubtator

from biobert_ray import cli, runs, schemas, storage
from biobert_ray.export import export

ARTICLES = {
    "pubmed25n0001": [
        (10, "Cisplatin causes renal damage.", "Renal damage was seen in rats."),
        (20, "HER2 in breast cancer.", "HER2neu positive breast cancer responds to trastuzumab."),
        (30, "A study without entities.", "Nothing to see here."),
        (40, "Aspirin and headache.", "Aspirin relieves headache."),
    ],
    "pubmed25n0002": [
        (5, "Lithium and tremor.", "Tremor was seen with lithium."),
        (10, "Cisplatin causes nephrotoxicity.", "Nephrotoxicity limits the dose of cisplatin."),
    ],
}
DELETED = {"pubmed25n0002": [40]}
ENTITIES = {  # (pmid, section, text, type): the first occurrence of text in the section
    "pubmed25n0001": [
        (10, "title", "Cisplatin", "Chemical"),
        (10, "title", "renal damage", "Disease"),
        (20, "title", "HER2", "Gene"),
        (20, "title", "breast cancer", "Disease"),
        (20, "abstract", "HER2", "Gene"),
        (20, "abstract", "neu", "Gene"),
        (20, "abstract", "breast cancer", "Disease"),
        (20, "abstract", "trastuzumab", "Chemical"),
        (40, "title", "Aspirin", "Chemical"),
    ],
    "pubmed25n0002": [
        (5, "title", "Lithium", "Chemical"),
        (5, "title", "tremor", "Disease"),
        (5, "abstract", "Tremor", "Disease"),
        (5, "abstract", "lithium", "Chemical"),
        (10, "title", "Cisplatin", "Chemical"),
        (10, "title", "nephrotoxicity", "Disease"),
        (10, "abstract", "Nephrotoxicity", "Disease"),
        (10, "abstract", "cisplatin", "Chemical"),
    ],
}
RELATIONS = {  # (pmid, section, arg1 text, arg1 type, arg2 text, arg2 type, relation)
    "pubmed25n0001": [
        (10, "title", "Cisplatin", "Chemical", "renal damage", "Disease", "CID"),  # of the old version
        (20, "abstract", "HER2", "Gene", "breast cancer", "Disease", "1"),
    ],
    "pubmed25n0002": [
        (5, "abstract", "Tremor", "Disease", "lithium", "Chemical", "CID"),
        (10, "title", "Cisplatin", "Chemical", "nephrotoxicity", "Disease", "CID"),
    ],
}
CURRENT = {
    5: ARTICLES["pubmed25n0002"][0],
    10: ARTICLES["pubmed25n0002"][1],
    20: ARTICLES["pubmed25n0001"][1],
}


def section_text(shard: str, pmid: int, section: str) -> str:
    _, title, abstract = next(a for a in ARTICLES[shard] if a[0] == pmid)
    return title if section == "title" else abstract


def span(shard: str, pmid: int, section: str, text: str) -> tuple[int, int]:
    start = section_text(shard, pmid, section).index(text)
    return start, start + len(text)


def write_tables(root: str, relations: dict = RELATIONS) -> dict[str, str]:
    """The three tables under ``root`` (shards with completion markers); returns their URIs."""
    tables = {name: storage.join(root, name) for name in ("articles", "entities", "relations")}
    for shard, articles in ARTICLES.items():
        rows = [
            {
                "pmid": pmid,
                "title": title,
                "abstract": abstract,
                "source_file": f"{shard}.xml.gz",
                "record_index": i,
            }
            for i, (pmid, title, abstract) in enumerate(articles)
        ]
        deleted = [
            {"pmid": pmid, "source_file": f"{shard}.xml.gz", "record_index": len(rows)}
            for pmid in DELETED.get(shard, [])
        ]
        entities = []
        for pmid, section, text, entity_type in ENTITIES[shard]:
            start, end = span(shard, pmid, section, text)
            entities.append(
                {"pmid": pmid, "section": section, "sentence_index": 0, "char_start": start, "char_end": end,
                 "text": text, "entity_type": entity_type, "score": 0.9, "model": "ner", "run_id": "r1"}
            )  # fmt: skip
        related = []
        for pmid, section, text1, type1, text2, type2, relation in relations[shard]:
            (start1, end1), (start2, end2) = (span(shard, pmid, section, t) for t in (text1, text2))
            related.append(
                {"pmid": pmid, "section": section, "sentence_index": 0, "last_sentence_index": 0,
                 "arg1_text": text1, "arg1_type": type1, "arg1_char_start": start1, "arg1_char_end": end1,
                 "arg2_text": text2, "arg2_type": type2, "arg2_char_start": start2, "arg2_char_end": end2,
                 "relation": relation, "score": 0.8, "model": "re", "run_id": "r2"}
            )  # fmt: skip
        files = {
            "articles": [(rows, schemas.ARTICLES, ()), (deleted, schemas.DELETIONS, ("_deletions",))],
            "entities": [(entities, schemas.ENTITIES, ())],
            "relations": [(related, schemas.RELATIONS, ())],
        }
        for table, parts in files.items():
            uris = []
            for data, schema, folder in parts:
                uris.append(storage.join(tables[table], *folder, f"{shard}.parquet"))
                storage.write_parquet(pa.Table.from_pylist(data, schema=schema), uris[-1], schema)
            runs.mark_complete(tables[table], shard, {"input": "handmade"}, uris)
    return tables


def expected_mentions() -> set[tuple]:
    """(pmid, document start, end, text, type) of every current article's mentions."""
    found = set()
    for shard, rows in ENTITIES.items():
        for pmid, section, text, entity_type in rows:
            if pmid in CURRENT and CURRENT[pmid] in ARTICLES[shard]:
                start, end = span(shard, pmid, section, text)
                shift = 0 if section == "title" else len(CURRENT[pmid][1]) + 1
                found.add((pmid, start + shift, end + shift, text, entity_type))
    return found


def expected_relations() -> set[tuple]:
    """(pmid, relation, arg1 document offsets, arg2 document offsets) of the current articles."""
    found = set()
    for shard, rows in RELATIONS.items():
        for pmid, section, text1, _, text2, _, relation in rows:
            if pmid in CURRENT and CURRENT[pmid] in ARTICLES[shard]:
                shift = 0 if section == "title" else len(CURRENT[pmid][1]) + 1
                args = [tuple(o + shift for o in span(shard, pmid, section, t)) for t in (text1, text2)]
                found.add((pmid, relation, *args))
    return found


def read_text(uri: str) -> str:
    with storage.open_input(uri) as f:
        return f.read().decode()


def test_pubtator_round_trip(tmp_path):
    tables = write_tables(str(tmp_path))
    out = str(tmp_path / "export" / "corpus.pubtator")
    report = export("pubtator", tables["articles"], tables["entities"], out, tables["relations"])
    assert report == {"format": "pubtator", "out": out, "articles": 3, "mentions": 14, "relations": 3}
    text = read_text(out)
    assert "\tNone" not in text and "\t\n" not in text, "four-column relations, six-column mentions"
    docs = pubtator.load(io.StringIO(text))
    assert [int(d.pmid) for d in docs] == [5, 10, 20]
    mentions, relations = set(), set()
    for doc in docs:
        pmid = int(doc.pmid)
        assert (doc.title, doc.abstract) == CURRENT[pmid][1:]
        document_text = doc.title + " " + doc.abstract
        starts = [a.start for a in doc.annotations]
        assert starts == sorted(starts) and [a.id for a in doc.annotations] == [
            f"T{i}" for i in range(1, len(starts) + 1)
        ]
        by_id = {}
        for a in doc.annotations:
            assert document_text[a.start : a.end] == a.text
            mentions.add((pmid, a.start, a.end, a.text, a.type))
            by_id[a.id] = (a.start, a.end)
        relations |= {(pmid, r.type, by_id[r.id1], by_id[r.id2]) for r in doc.relations}
    assert mentions == expected_mentions()
    assert relations == expected_relations()
    her2, neu = sorted(m for m in mentions if m[0] == 20 and m[3] in ("HER2", "neu"))[1:]
    assert her2[2] == neu[1] == len(CURRENT[20][1]) + 1 + 4, "adjacent mentions at the abstract's start"


def test_bioc_json_round_trip_with_all_articles(tmp_path):
    tables = write_tables(str(tmp_path))
    out = str(tmp_path / "corpus.json")
    report = export(
        "bioc", tables["articles"], tables["entities"], out, tables["relations"], all_articles=True
    )
    assert (report["articles"], report["mentions"], report["relations"]) == (4, 14, 3)
    collection = biocjson.load(io.StringIO(read_text(out)))
    assert [d.id for d in collection.documents] == ["5", "10", "20", "30"]
    mentions, relations = set(), set()
    for doc in collection.documents:
        pmid = int(doc.id)
        title, abstract = doc.passages
        assert (title.infons["type"], title.offset, abstract.infons["type"]) == ("title", 0, "abstract")
        assert abstract.offset == len(title.text) + 1
        document_text = title.text + " " + abstract.text
        by_id = {}
        for passage in doc.passages:
            for a in passage.annotations:
                (location,) = a.locations
                start, end = location.offset, location.offset + location.length
                assert document_text[start:end] == a.text
                assert passage.text[start - passage.offset : end - passage.offset] == a.text
                assert a.infons == {"type": a.infons["type"], "score": "0.9", "model": "ner"}
                mentions.add((pmid, start, end, a.text, a.infons["type"]))
                by_id[a.id] = (start, end)
            for r in passage.relations:
                assert [n.role for n in r.nodes] == ["Arg1", "Arg2"]
                assert (r.infons["score"], r.infons["model"]) == ("0.8", "re")
                relations.add((pmid, r.infons["type"], *(by_id[n.refid] for n in r.nodes)))
    assert mentions == expected_mentions()
    assert relations == expected_relations()
    assert not any(p.annotations for p in collection.documents[-1].passages), "PMID 30 has no mentions"


def test_relation_without_its_entity_is_an_error(tmp_path):
    broken = {**RELATIONS, "pubmed25n0001": [(20, "abstract", "HER2", "Gene", "positive", "Disease", "1")]}
    tables = write_tables(str(tmp_path), relations=broken)
    out = tmp_path / "corpus.pubtator"
    with pytest.raises(ValueError, match=r"relation '1' of PMID 20 abstract\[0:4\]-\[8:16\].*'positive'"):
        export("pubtator", tables["articles"], tables["entities"], str(out), tables["relations"])
    assert not out.exists() and not list(tmp_path.glob("corpus.pubtator*")), "nothing half-written"


def test_tables_and_output_on_s3(s3_bucket):
    tables = write_tables(s3_bucket)
    out = storage.join(s3_bucket, "exports", "corpus.json")
    report = export("bioc", tables["articles"], tables["entities"], out, tables["relations"])
    assert (report["articles"], report["mentions"], report["relations"]) == (3, 14, 3)
    collection = biocjson.load(io.StringIO(read_text(out)))
    assert [d.id for d in collection.documents] == ["5", "10", "20"]


def test_cli_export(tmp_path, capsys):
    tables = write_tables(str(tmp_path))
    out = str(tmp_path / "cli.pubtator")
    args = ["export", "pubtator", "--articles", tables["articles"], "--entities", tables["entities"]]
    assert cli.main([*args, "--out", out]) == 0
    assert f"export pubtator: 3 articles, 14 mentions, 0 relations -> {out}" in capsys.readouterr().out
    assert [int(d.pmid) for d in pubtator.load(io.StringIO(read_text(out)))] == [5, 10, 20]
