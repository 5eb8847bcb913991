"""A tiny BERT for tests: a WordPiece vocabulary trained with `tokenizers` on bundled text, 2 layers."""

from __future__ import annotations

import gzip
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "biobert_ray" / "sample_data"


def corpus_lines() -> list[str]:
    """Sentences of the bundled NCBI-disease training file, one per line."""
    sentences, words = [], []
    with gzip.open(SAMPLES / "ncbi_disease" / "train.tsv.gz", "rt") as f:
        for line in f:
            if line.strip():
                words.append(line.split("\t")[0])
            elif words:
                sentences.append(" ".join(words))
                words = []
    return sentences


def build_tiny_bert(path: Path, vocab_size: int = 2000) -> Path:
    """Save a randomly initialised 2-layer BERT (masked-LM head) and its fast tokenizer at ``path``."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=False)
    wordpiece.train_from_iterator(corpus_lines(), vocab_size=vocab_size, min_frequency=2)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=False)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
