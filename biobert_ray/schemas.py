"""Every table this package writes, as one explicit pyarrow schema each.

Every Parquet write passes one of these schemas, so a table's columns and types are declared here
and nowhere else.
"""

import pyarrow as pa

ABSTRACT_SECTION = pa.struct(
    [
        pa.field("label", pa.string()),  # e.g. "BACKGROUND"; null for an unlabelled paragraph
        pa.field("nlm_category", pa.string()),  # NLM's normalised category, e.g. "OBJECTIVE"
        pa.field("char_start", pa.int32()),  # abstract[char_start:char_end] is the section's text,
        pa.field("char_end", pa.int32()),  # without its "LABEL: " prefix
    ]
)

ARTICLES = pa.schema(
    [
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("version", pa.int32()),
        pa.field("title", pa.string()),
        pa.field("abstract", pa.string()),
        pa.field("abstract_sections", pa.list_(ABSTRACT_SECTION)),
        pa.field("journal", pa.string()),
        pa.field("pub_year", pa.int32()),
        pa.field("language", pa.string()),
        pa.field("doi", pa.string()),
        pa.field("pmcid", pa.string()),
        pa.field("mesh_terms", pa.list_(pa.string())),
        pa.field("keywords", pa.list_(pa.string())),
        pa.field("publication_types", pa.list_(pa.string())),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_index", pa.int32(), nullable=False),
    ]
)

DELETIONS = pa.schema(
    [
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_index", pa.int32(), nullable=False),
    ]
)

ERRORS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("level", pa.string(), nullable=False),  # "record" or "file"
        pa.field("record_index", pa.int32()),  # null for a file-level error
        pa.field("pmid", pa.int64()),  # null when it could not be read
        pa.field("reason", pa.string(), nullable=False),
        pa.field("excerpt", pa.string()),  # the start of the offending record, for a human to look at
    ]
)

ENTITIES = pa.schema(
    [
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("section", pa.string(), nullable=False),  # "title" or "abstract"
        pa.field("sentence_index", pa.int32(), nullable=False),  # sentence number within the section
        pa.field("char_start", pa.int32(), nullable=False),  # section_text[char_start:char_end] == text
        pa.field("char_end", pa.int32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field(
            "score", pa.float32(), nullable=False
        ),  # mean softmax probability of the mention's word tags
        pa.field("model", pa.string(), nullable=False),  # the model reference as given to annotate
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


def _argument(n: int) -> list[pa.Field]:
    """The columns of argument ``n`` of a relation; its offsets match the ``entities`` row it came from."""
    return [
        pa.field(f"arg{n}_text", pa.string(), nullable=False),
        pa.field(f"arg{n}_type", pa.string(), nullable=False),  # the entity type in the entities table
        pa.field(f"arg{n}_char_start", pa.int32(), nullable=False),  # into the section's text
        pa.field(f"arg{n}_char_end", pa.int32(), nullable=False),
    ]


RELATIONS = pa.schema(
    [
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("section", pa.string(), nullable=False),
        pa.field("sentence_index", pa.int32(), nullable=False),  # the first argument's sentence
        pa.field("last_sentence_index", pa.int32(), nullable=False),  # the second's (> with a distance)
        *_argument(1),  # the argument that comes first in the sentence
        *_argument(2),
        pa.field("relation", pa.string(), nullable=False),  # the predicted label
        pa.field("score", pa.float32(), nullable=False),  # its softmax probability
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

#: The work list of one question batch of ``annotate qa`` (``<out>/_work/<batch>/<shard>.parquet``): the
#: articles each question reads, grouped by the articles shard that holds them, sorted by PMID.
QA_WORK = pa.schema(
    [
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("question_type", pa.string(), nullable=False),  # factoid, list or yesno
        pa.field("retrieval_rank", pa.int32()),  # 1 = best BM25 hit; null for a PMID the question named
        pa.field("retrieval_score", pa.float32()),
    ]
)

#: The answer spans a QA model finds in one section of one article for one question (the parts of a
#: batch, before the answers of each question are merged across its articles).
QA_CANDIDATES = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("section", pa.string(), nullable=False),
        pa.field("char_start", pa.int32(), nullable=False),
        pa.field("char_end", pa.int32(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),  # probability among the section's n-best spans
        pa.field("evidence_sentence", pa.string(), nullable=False),  # the section's sentence(s) holding it
        pa.field("retrieval_rank", pa.int32()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

#: What a yes/no model says of one article for one question: a row per class with its probability (the
#: mean over the article's windows); merged per question into one ``answers`` row.
YESNO_VOTES = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("pmid", pa.int64(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),  # yes, no (or maybe: the model's classes)
        pa.field("probability", pa.float32(), nullable=False),
        pa.field("retrieval_rank", pa.int32()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

#: ``annotate qa``'s table: each question's ranked answers, each pointing at its evidence (rank 1 =
#: best). A yes/no question has one row (``answer`` yes/no/maybe, ``supporting_pmids``); a question that
#: could not be answered has one row with a null answer and a ``note`` saying why.
ANSWERS = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("question_type", pa.string(), nullable=False),
        pa.field("rank", pa.int32()),
        pa.field("answer", pa.string()),
        # a span's probability (the best over the articles holding it); yes/no: the answer's mean probability
        pa.field("score", pa.float32()),
        # the article of the best occurrence (yes/no: the supporting article of the highest probability)
        pa.field("pmid", pa.int64()),
        pa.field("section", pa.string()),
        pa.field("char_start", pa.int32()),  # section_text[char_start:char_end] == answer
        pa.field("char_end", pa.int32()),
        pa.field("evidence_sentence", pa.string()),  # the section's sentence(s) holding the answer
        pa.field("supporting_pmids", pa.list_(pa.int64())),  # yes/no: the articles that gave the answer
        pa.field("note", pa.string()),  # why a question has no answer (no article retrieved, ...)
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

#: Input records an annotation run could not use (``<out>/_rejected/<shard>.parquet``), e.g. an
#: ``entities`` row whose offsets do not match its article's text; the rest of the shard completes.
REJECTED = pa.schema(
    [
        pa.field("shard", pa.string(), nullable=False),
        pa.field("table", pa.string(), nullable=False),  # the input table the record came from
        pa.field("pmid", pa.int64()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string()),  # the record as JSON, for a human to look at
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

#: Errors of an annotation run (``<out>/_errors/<shard>.parquet``): row groups that failed, and why.
ROW_GROUP_ERRORS = pa.schema(
    [
        pa.field("shard", pa.string(), nullable=False),  # the input articles shard
        pa.field("row_group", pa.int32()),  # its Parquet row group; null when the whole shard was not read
        pa.field("reason", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)
