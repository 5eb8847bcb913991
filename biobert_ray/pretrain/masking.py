"""Masked-LM inputs: BERT's token selection and 80/10/10 replacement, optionally by whole words.

Each non-special token is selected with probability ``probability`` (15% by default). Of the
selected tokens, 80% become ``[MASK]``, 10% a random token of the vocabulary and 10% stay as they
are; the labels hold the original id at selected positions and -100 (ignored by the loss) elsewhere.
Special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]``) are never selected.

With ``whole_word``, a word is a token plus the ``##`` WordPiece continuation tokens that follow it,
and a word is selected or not as a whole (each of its tokens then gets its own 80/10/10 draw, as in
BERT's ``create_pretraining_data.py``). A continuation at the start of a sequence, or right after a
special token (a word cut by packing), counts as the start of its own word.

Masking is a pure function of the input ids and a ``torch.Generator``: the same generator state
gives the same masks, which makes training resumable and evaluation repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Masker:
    """Applies MLM masking to ``(batch, seq_len)`` id tensors; build it with :meth:`from_tokenizer`.

    ``special`` and ``continuation`` are boolean lookup tables over the vocabulary.
    """

    mask_id: int
    special: torch.Tensor
    continuation: torch.Tensor
    probability: float = 0.15
    whole_word: bool = False

    @classmethod
    def from_tokenizer(cls, tokenizer, probability: float = 0.15, whole_word: bool = False) -> Masker:
        """A masker for a Hugging Face tokenizer's vocabulary (``len(tokenizer)`` ids)."""
        if not 0.0 < probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), not {probability}")
        size = len(tokenizer)
        special = torch.zeros(size, dtype=torch.bool)
        special[list(tokenizer.all_special_ids)] = True
        tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
        continuation = torch.tensor([t.startswith("##") for t in tokens], dtype=torch.bool)
        return cls(tokenizer.mask_token_id, special, continuation, probability, whole_word)

    @property
    def vocab_size(self) -> int:
        return len(self.special)

    def __call__(
        self, input_ids: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input ids, labels)`` for int64 ``input_ids``; the input tensor is not modified."""
        special = self.special[input_ids]
        draw = torch.rand(input_ids.shape, generator=generator)
        if self.whole_word:
            draw = draw.gather(1, self._word_starts(input_ids, special))
        selected = (draw < self.probability) & ~special
        labels = torch.where(selected, input_ids, IGNORE_INDEX)
        replace = torch.rand(input_ids.shape, generator=generator)
        masked = input_ids.clone()
        masked[selected & (replace < 0.8)] = self.mask_id
        randomised = selected & (replace >= 0.8) & (replace < 0.9)
        masked[randomised] = torch.randint(
            self.vocab_size, (int(randomised.sum()),), generator=generator, dtype=input_ids.dtype
        )
        return masked, labels

    def _word_starts(self, input_ids: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
        """For each position, the position of the first token of its word."""
        starts = ~self.continuation[input_ids] | special
        starts[:, 0] = True
        starts[:, 1:] |= special[:, :-1]
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        return torch.where(starts, positions, 0).cummax(dim=1).values
