"""The streaming MEDLINE/PubMed parser on the bundled real samples and on broken input."""

from __future__ import annotations

import gzip
import io
import random
import tracemalloc

import pytest
from conftest import SAMPLES

from biobert_ray import pubmed

PUBMED = SAMPLES / "pubmed"


def parse_file(path) -> list:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as stream:
        return list(pubmed.parse_records(stream))


def parse_bytes(data: bytes) -> list:
    return list(pubmed.parse_records(io.BytesIO(data)))


def of_type(records, cls) -> list:
    return [r for r in records if isinstance(r, cls)]


@pytest.fixture(scope="module")
def medline16():
    return parse_file(PUBMED / "medline16n0902.xml.gz")


def test_medline_2016_counts(medline16):
    articles = of_type(medline16, pubmed.Article)
    assert len(articles) == 604
    assert sum(a.abstract is not None for a in articles) == 526
    assert [(d.pmid, d.record_index) for d in of_type(medline16, pubmed.Deletion)] == [(26432306, 604)]
    assert of_type(medline16, pubmed.RecordError) == []
    assert [a.record_index for a in articles] == list(range(604))


def test_medline_2016_fields(medline16):
    first = medline16[0]
    assert first.pmid == 17942999 and first.version == 1
    assert first.title.startswith("Neuroplasticity in the processing of pitch dimensions")
    assert first.journal == "Restorative neurology and neuroscience"
    assert (first.pub_year, first.language, first.pmcid) == (2007, "eng", "PMC4380289")
    assert first.publication_types == ["Journal Article", "Research Support, Non-U.S. Gov't"]
    assert (
        first.mesh_terms[:2] == ["Acoustic Stimulation", "Adult"] and "Pitch Perception" in first.mesh_terms
    )
    assert first.abstract.startswith("PURPOSE: An auditory electrophysiological study")
    assert [s["label"] for s in first.abstract_sections] == ["PURPOSE", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert first.abstract_sections[0]["nlm_category"] == "OBJECTIVE"
    second = medline16[1]
    assert second.pmid == 18621939 and second.doi == "10.1176/appi.psy.49.4.332"


def test_section_offsets_point_into_abstract(medline16):
    for article in of_type(medline16, pubmed.Article):
        previous_end = -1
        for section in article.abstract_sections:
            text = article.abstract[section["char_start"] : section["char_end"]]
            assert text and text == text.strip()
            if section["label"]:
                prefix = article.abstract[: section["char_start"]]
                assert prefix.endswith(section["label"] + ": ")
            assert section["char_start"] > previous_end
            previous_end = section["char_end"]
        if article.abstract:
            assert article.abstract_sections[-1]["char_end"] == len(article.abstract)


def test_current_format_sample():
    records = parse_file(PUBMED / "test_current_medline.xml.gz")
    by_pmid = {a.pmid: a for a in records}
    assert sorted(by_pmid) == [2930949, 11446611, 28786991, 36400559]
    back_pain = by_pmid[36400559]
    assert back_pain.doi == "10.1016/j.ncl.2022.07.002" and back_pain.pmcid is None
    assert back_pain.keywords == ["Back pain", "Diagnosis", "Management", "Outpatient"]
    assert back_pain.pub_year == 2023 and back_pain.publication_types == ["Journal Article", "Review"]
    # "6&#xa0;weeks": the entity is unescaped and the no-break space normalised to a space
    assert "greater than 6 weeks" in back_pain.abstract
    # its own PMC id, not one of the 18 PMC ids of the papers it cites
    assert by_pmid[28786991].pmcid == "PMC5546677"
    assert by_pmid[28786991].doi == "10.1371/journal.pone.0180707"


def test_inline_markup_is_kept_as_text():
    (article,) = parse_file(PUBMED / "pubmed-29768149.xml")
    assert article.pmid == 29768149
    assert "fast-acting β 2-agonist" in article.abstract  # <sub>2</sub> kept, whitespace normalised
    assert "200 μg of budesonide" in article.abstract
    assert "\n" not in article.abstract and "  " not in article.abstract


def record(pmid: str, title: str = "A title.", extra: str = "", version: str = "1") -> str:
    pmid_xml = f'<PMID Version="{version}">{pmid}</PMID>' if pmid else ""
    return (
        f"<PubmedArticle><MedlineCitation>{pmid_xml}<Article><Journal><Title>J</Title></Journal>"
        f"<ArticleTitle>{title}</ArticleTitle>{extra}</Article></MedlineCitation></PubmedArticle>"
    )


def document(*records: str, encoding: str | None = None) -> bytes:
    """A PubmedArticleSet file of ``records``, encoded (and declared, when given) in ``encoding``."""
    declaration = f'<?xml version="1.0" encoding="{encoding}"?>' if encoding else '<?xml version="1.0"?>'
    text = declaration + "\n<PubmedArticleSet>\n" + "\n".join(records) + "\n</PubmedArticleSet>\n"
    return text.encode(encoding or "utf-8")


def test_broken_records_become_errors_and_the_rest_parses():
    data = document(
        record("1"),
        record(""),  # no PMID
        record("3", title="Broken <i>markup</b>"),  # mismatched tag
        record("abc"),  # non-integer PMID
        record("5").replace("</PubmedArticle>", ""),  # never closed
        record("6"),
        "stray text",
        record("7", extra="<Abstract><AbstractText>x &amp; y &lt; z</AbstractText></Abstract>"),
    )
    records = parse_bytes(data)
    assert [a.pmid for a in of_type(records, pubmed.Article)] == [1, 6, 7]
    errors = of_type(records, pubmed.RecordError)
    assert [(e.record_index, e.pmid) for e in errors] == [(1, None), (2, 3), (3, None), (4, 5), (6, None)]
    assert "no PMID" in errors[0].reason
    assert "XMLSyntaxError" in errors[1].reason
    assert "not an integer" in errors[2].reason
    assert "not closed" in errors[3].reason
    assert "unexpected content" in errors[4].reason and errors[4].excerpt == "stray text"
    assert of_type(records, pubmed.Article)[-1].abstract == "x & y < z"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b"hello, world", "not an XML file"),
        (b"<html><body>nope</body></html>", "root element is <html>"),
        (gzip.compress(document(record("1"))), "not an XML file"),  # compressed, named .xml
        (document(record("1"))[:-40], "truncated"),
    ],
)
def test_unreadable_files_raise_file_error(data, message):
    with pytest.raises(pubmed.FileError, match=message):
        parse_bytes(data)


BOOK_ARTICLE = """<PubmedBookArticle>
  <BookDocument>
    <PMID Version="1">26065101</PMID>
    <ArticleIdList>
      <ArticleId IdType="bookaccession">NBK299089</ArticleId>
      <ArticleId IdType="doi">10.3310/hta19450</ArticleId>
    </ArticleIdList>
    <Book>
      <Publisher>
        <PublisherName>NIHR Journals Library</PublisherName>
        <PublisherLocation>Southampton (UK)</PublisherLocation>
      </Publisher>
      <BookTitle book="nihrhta1945">A randomised controlled trial of exercise for back pain</BookTitle>
      <PubDate>{pub_date}</PubDate>
      <AuthorList Type="authors">
        <Author><LastName>Smith</LastName><ForeName>Jane</ForeName><Initials>J</Initials></Author>
      </AuthorList>
      <CollectionTitle book="nihrhtacollect">Health Technology Assessment</CollectionTitle>
      <Medium>Internet</Medium>
    </Book>
    <LocationLabel Type="chapter">Chapter 1</LocationLabel>
    <ArticleTitle book="nihrhta1945" part="ch1">Introduction</ArticleTitle>
    <Language>eng</Language>
    <PublicationType UI="D016454">Review</PublicationType>
    <Abstract>
      <AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Back pain is common.</AbstractText>
    </Abstract>
    <ContributionDate><Year>2015</Year><Month>06</Month></ContributionDate>
  </BookDocument>
  <PubmedBookData>
    <History>
      <PubMedPubDate PubStatus="pubmed"><Year>2015</Year><Month>6</Month><Day>12</Day></PubMedPubDate>
    </History>
    <PublicationStatus>ppublish</PublicationStatus>
    <ArticleIdList>
      <ArticleId IdType="pubmed">26065101</ArticleId>
    </ArticleIdList>
  </PubmedBookData>
</PubmedBookArticle>"""


@pytest.mark.parametrize(
    ("pub_date", "year"),
    [("<Year>2015</Year><Month>Jun</Month>", 2015), ("<MedlineDate>1998-1999</MedlineDate>", 1998)],
)
def test_book_article_reads_the_book_date_and_ids(pub_date, year):
    (book,) = parse_bytes(document(BOOK_ARTICLE.format(pub_date=pub_date)))
    assert isinstance(book, pubmed.Article)
    assert (book.pmid, book.version, book.pub_year) == (26065101, 1, year)
    assert book.title == "Introduction"
    assert book.journal == "A randomised controlled trial of exercise for back pain"
    assert (book.language, book.publication_types) == ("eng", ["Review"])
    assert book.abstract == "BACKGROUND: Back pain is common."
    assert book.doi == "10.3310/hta19450"  # from BookDocument/ArticleIdList


@pytest.mark.parametrize(
    ("pmid", "version", "bad", "hint"),
    [
        ("١٢٣", "1", "'١٢٣'", None),  # Arabic-Indic digits
        ("１２３", "1", "'１２３'", None),  # fullwidth digits
        ("12345678901234567890", "1", "12345678901234567890", None),  # overflows int64
        ("9223372036854775808", "1", "9223372036854775808", None),  # int64 max + 1
        ("123", "3000000000", "3000000000", 123),  # overflows int32
        ("123", "٣", "'٣'", 123),
        ("123", "v2", "'v2'", 123),
    ],
)
def test_bad_pmid_or_version_is_a_record_error(pmid, version, bad, hint):
    records = parse_bytes(document(record(pmid, version=version), record("2")))
    error, article = records
    assert isinstance(error, pubmed.RecordError) and (error.record_index, error.pmid) == (0, hint)
    assert bad in error.reason
    assert isinstance(article, pubmed.Article) and (article.pmid, article.record_index) == (2, 1)


def test_largest_pmid_and_version_are_accepted():
    (article,) = parse_bytes(document(record("9223372036854775807", version="2147483647")))
    assert (article.pmid, article.version) == (2**63 - 1, 2**31 - 1)


def test_unparsable_record_with_out_of_range_pmid_has_no_pmid():
    records = parse_bytes(
        document(
            record("12345678901234567890", title="Broken <i>markup</b>"),
            record("99999999999999999999").replace("</PubmedArticle>", ""),  # never closed
            record("3"),
        )
    )
    errors = of_type(records, pubmed.RecordError)
    assert [(e.record_index, e.pmid) for e in errors] == [(0, None), (1, None)]
    assert [a.pmid for a in of_type(records, pubmed.Article)] == [3]


def test_delete_citation_keeps_valid_pmids_and_reports_bad_ones():
    deletions = (
        '<DeleteCitation><PMID Version="1">5</PMID><PMID Version="1">٦</PMID>'
        '<PMID Version="1">99999999999999999999</PMID><PMID Version="1">7</PMID></DeleteCitation>'
    )
    records = parse_bytes(document(record("1"), deletions))
    assert [(d.pmid, d.record_index) for d in of_type(records, pubmed.Deletion)] == [(5, 1), (7, 1)]
    errors = of_type(records, pubmed.RecordError)
    assert [(e.record_index, e.pmid) for e in errors] == [(1, None), (1, None)]
    assert "'٦'" in errors[0].reason and "٦" in errors[0].excerpt
    assert "99999999999999999999" in errors[1].reason


def test_utf8_byte_order_mark_is_accepted():
    records = parse_bytes(b"\xef\xbb\xbf" + document(record("1"), record("2", title="Café")))
    assert [(a.pmid, a.title) for a in records] == [(1, "A title."), (2, "Café")]


@pytest.mark.parametrize(
    ("encoding", "title"),
    [("ISO-8859-1", "Café crème"), ("windows-1252", "Smith’s “café” €"), ("Shift_JIS", "ソフト日本語")],
)
def test_declared_encoding_is_used_for_records_and_excerpts(encoding, title):
    data = document(
        record("1", title=title),
        record("2", title=f"{title} <i>broken</b>"),
        f"stray {title}",
        record("3", title=title, extra=f"<Abstract><AbstractText>{title}</AbstractText></Abstract>"),
        encoding=encoding,
    )
    records = parse_bytes(data)
    assert [(a.pmid, a.title) for a in of_type(records, pubmed.Article)] == [(1, title), (3, title)]
    assert of_type(records, pubmed.Article)[-1].abstract == title
    broken, stray = of_type(records, pubmed.RecordError)
    assert broken.pmid == 2 and f"{title} <i>broken</b>" in broken.excerpt
    assert stray.excerpt == f"stray {title}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (document(record("1")).decode().encode("utf-16"), "UTF-16 .*not supported"),
        (document(record("1")).decode().encode("utf-16-be"), "UTF-16 or UTF-32 .*not supported"),
        (document(record("1")).decode().encode("utf-16-le"), "UTF-16 or UTF-32 .*not supported"),
        (document(record("1")).decode().encode("utf-32-le"), "UTF-16 or UTF-32 .*not supported"),
        (document(record("1")).decode().encode("utf-32"), "UTF-32 .*not supported"),
        (document(record("1")).replace(b'"1.0"', b'"1.0" encoding="UTF-16"'), "'UTF-16' is not supported"),
        (document(record("1")).replace(b'"1.0"', b'"1.0" encoding="ISO-2022-JP"'), "'ISO-2022-JP' is not"),
        (document(record("1")).replace(b'"1.0"', b"'1.0' encoding='klingon'"), "unknown encoding 'klingon'"),
        (document(record("1")).replace(b'"1.0"', b'"1.0" encoding="a\x00b"'), "unknown encoding"),
        (b"\xef\xbb\xbf" + document(record("1"), encoding="ISO-8859-1"), "byte order mark .* 'ISO-8859-1'"),
    ],
)
def test_unsupported_encodings_raise_file_error(data, message):
    with pytest.raises(pubmed.FileError, match=message):
        parse_bytes(data)


def test_truncated_gzip_keeps_records_before_the_cut():
    titles = [random.Random(i).randbytes(300).hex() for i in range(1, 400)]  # ~250 kB compressed
    blob = gzip.compress(document(*(record(str(i), title=t) for i, t in enumerate(titles, 1))))
    records = []
    with (
        pytest.raises(pubmed.FileError, match="EOFError"),
        gzip.GzipFile(fileobj=io.BytesIO(blob[: len(blob) // 2])) as stream,
    ):
        for item in pubmed.parse_records(stream):
            records.append(item)
    assert len(records) > 150 and all(isinstance(r, pubmed.Article) for r in records)
    assert [r.pmid for r in records] == list(range(1, len(records) + 1))


class RepeatedStream(io.RawIOBase):
    """A large XML file generated on the fly: the records of one sample repeated ``times`` times."""

    def __init__(self, head: bytes, body: bytes, tail: bytes, times: int) -> None:
        self.parts = iter([head, *([body] * times), tail])
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            part = next(self.parts, None)
            if part is None:
                break
            self.pending += part
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def test_memory_stays_bounded_by_a_record_not_the_file():
    raw = gzip.decompress((PUBMED / "medline16n0902.xml.gz").read_bytes())
    first = raw.index(b"<MedlineCitation ")
    last = raw.rindex(b"<DeleteCitation>")
    head, body, tail = raw[:first], raw[first:last], raw[last:]
    times = 6  # ~23 MB of XML, 3,624 citations
    stream = io.BufferedReader(RepeatedStream(head, body, tail, times), buffer_size=1 << 16)
    tracemalloc.start()
    count = sum(isinstance(r, pubmed.Article) for r in pubmed.parse_records(stream))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 604 * times
    assert peak < 8 * 1024**2 < len(body) * times / 2
