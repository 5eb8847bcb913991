"""Pretraining from scratch: a WordPiece vocabulary trained on the corpus and a fresh BERT.

``--train-vocab`` builds the run's *initial model*: a cased WordPiece vocabulary (``##``
continuations, BERT's special tokens) trained with the ``tokenizers`` library on the training
documents of the corpus, streamed shard by shard (held-out documents are left out), and a randomly
initialised ``BertForMaskedLM`` of one of :data:`SIZES`. It is saved like any model directory, so the
rest of pretraining treats it exactly like a pretrained base model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from biobert_ray import models, runs
from biobert_ray.pretrain import corpus

#: BertConfig sizes: BERT-base, and the small/tiny shapes of Turc et al. (2019) "Well-Read Students".
SIZES: dict[str, dict[str, int]] = {
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "small": {
        "hidden_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
    },
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _texts(files: Sequence[str], text_columns: Sequence[str], heldout: np.ndarray) -> Iterator[str]:
    for uri in files:
        for texts in corpus.iter_documents(uri, text_columns, heldout, "train"):
            yield from texts


def train_tokenizer(files: Sequence[str], text_columns: Sequence[str], heldout: np.ndarray, vocab_size: int):
    """A cased WordPiece ``BertTokenizerFast`` trained on the training documents of ``files``."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wordpiece.train_from_iterator(
        _texts(files, text_columns, heldout),
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
    )
    return BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=False)


def build_initial_model(
    files: Sequence[str],
    text_columns: Sequence[str],
    heldout: np.ndarray,
    *,
    vocab_size: int,
    size: str,
    seq_len: int,
    seed: int,
    out: str,
) -> dict[str, Any]:
    """Train the vocabulary, initialise a ``BertForMaskedLM`` of ``size``, save both at ``out``.

    Returns the metadata written beside it (vocabulary size, model shape). Positions go up to
    ``max(512, seq_len)``, so the model can later be fine-tuned on BERT's usual lengths.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM

    if size not in SIZES:
        raise ValueError(f"scratch size must be one of {sorted(SIZES)}, not {size!r}")
    tokenizer = train_tokenizer(files, text_columns, heldout, vocab_size)
    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max(512, seq_len),
        pad_token_id=tokenizer.pad_token_id,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    metadata = {
        "task": "mlm-init",
        "scratch_size": size,
        "vocab_size": len(tokenizer),
        "text_columns": list(text_columns),
        "shards": len(files),
        "created_at": runs.utc_now(),
    }
    models.save(model, tokenizer, out, metadata)
    return metadata
