"""MLM masking: 15% selection, 80/10/10, special tokens never masked, whole words, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biobert_ray import models
from biobert_ray.pretrain import masking, packing

SEQ_LEN = 64


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return models.load_tokenizer(tiny_bert)


@pytest.fixture(scope="module")
def batches(tiny_bert, tokenizer) -> list[torch.Tensor]:
    """Packed NCBI-disease sentences (with [CLS], [SEP] and some [UNK]), 16 sequences per batch."""
    from tiny_bert import corpus_lines

    encoder, cls, sep = packing.encoder(tiny_bert)
    docs = [e.ids for e in encoder.encode_batch(corpus_lines()[:3000], add_special_tokens=False)]
    sequences = torch.from_numpy(packing.Packer(SEQ_LEN, cls, sep).add(docs)).long()
    sequences[::7, 5] = tokenizer.unk_token_id
    return list(sequences[: len(sequences) // 16 * 16].split(16))


def words(ids: torch.Tensor, tokenizer) -> list[list[int]]:
    """Positions of each word: a token and the ## continuations after it (specials are words alone)."""
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    special = set(tokenizer.all_special_tokens)
    spans: list[list[int]] = []
    for i, token in enumerate(tokens):
        continues = token.startswith("##") and spans and tokens[i - 1] not in special
        if continues and token not in special:
            spans[-1].append(i)
        else:
            spans.append([i])
    return spans


@pytest.mark.parametrize("whole_word", [False, True])
def test_masking_statistics_over_many_batches(batches, tokenizer, whole_word):
    masker = masking.Masker.from_tokenizer(tokenizer, probability=0.15, whole_word=whole_word)
    generator = torch.Generator().manual_seed(0)
    special_ids = torch.tensor(tokenizer.all_special_ids)
    counts = dict.fromkeys(("candidates", "selected", "mask", "random", "kept"), 0)
    for ids in batches:
        original = ids.clone()
        masked, labels = masker(ids, generator)
        assert torch.equal(ids, original)  # the input is not modified
        selected = labels != masking.IGNORE_INDEX
        special = torch.isin(original, special_ids)
        assert not (selected & special).any()  # special tokens are never selected ...
        assert torch.equal(masked[special], original[special])  # ... nor changed
        assert torch.equal(masked[~selected], original[~selected])  # unselected tokens are untouched
        assert torch.equal(labels[selected], original[selected])  # labels are the original ids
        counts["candidates"] += int((~special).sum())
        counts["selected"] += int(selected.sum())
        counts["mask"] += int((selected & (masked == tokenizer.mask_token_id)).sum())
        counts["random"] += int((selected & (masked != tokenizer.mask_token_id) & (masked != original)).sum())
        counts["kept"] += int((selected & (masked == original)).sum())
    rate = counts["selected"] / counts["candidates"]
    assert counts["candidates"] > 100_000
    assert abs(rate - 0.15) < (0.01 if whole_word else 0.005)
    assert abs(counts["mask"] / counts["selected"] - 0.8) < 0.01
    assert abs(counts["random"] / counts["selected"] - 0.1) < 0.01
    assert abs(counts["kept"] / counts["selected"] - 0.1) < 0.01


def test_whole_word_masking_masks_whole_words(batches, tokenizer):
    whole = masking.Masker.from_tokenizer(tokenizer, whole_word=True)
    single = masking.Masker.from_tokenizer(tokenizer, whole_word=False)
    partial = {"whole": 0, "single": 0}
    multi_piece_selected = 0
    for k, ids in enumerate(batches[:40]):
        for name, masker in (("whole", whole), ("single", single)):
            _, labels = masker(ids, torch.Generator().manual_seed(k))
            for row, row_labels in zip(ids, labels, strict=True):
                for span in words(row, tokenizer):
                    chosen = [bool(row_labels[i] != masking.IGNORE_INDEX) for i in span]
                    partial[name] += any(chosen) and not all(chosen)
                    multi_piece_selected += name == "whole" and len(span) > 1 and all(chosen)
    assert partial["whole"] == 0 and multi_piece_selected > 50
    assert partial["single"] > 50  # token-level masking does split words: the check above has teeth


def test_masking_is_deterministic_given_the_generator(batches, tokenizer):
    masker = masking.Masker.from_tokenizer(tokenizer, whole_word=True)
    first = masker(batches[0], torch.Generator().manual_seed(7))
    again = masker(batches[0], torch.Generator().manual_seed(7))
    other = masker(batches[0], torch.Generator().manual_seed(8))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])


def test_probability_must_be_a_fraction(tokenizer):
    with pytest.raises(ValueError, match="mlm_probability"):
        masking.Masker.from_tokenizer(tokenizer, probability=1.5)
    assert np.isclose(masking.Masker.from_tokenizer(tokenizer, 0.3).probability, 0.3)
