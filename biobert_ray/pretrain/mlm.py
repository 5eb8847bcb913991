"""The masked-LM objective on a BERT model, computed at the masked positions only.

``BertForMaskedLM(input_ids, labels=...)`` projects every position onto the vocabulary (a
``hidden x vocab`` matmul and a softmax per token) and then ignores the 85% that carry no label.
:class:`MaskedLMLoss` runs the encoder on all positions but the prediction head only on the labelled
ones, which gives the same loss and gradients for a fraction of the head's cost (the head is about
half the compute of a 6-layer, 384-wide BERT with a 30k vocabulary). It is an ``nn.Module``, so it
can be wrapped in DDP as a whole.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from biobert_ray.pretrain.masking import IGNORE_INDEX


class MaskedLMLoss(nn.Module):
    """``forward(input_ids, labels)`` -> ``(mean loss, correct predictions, labelled tokens)``.

    ``model`` is a ``BertForMaskedLM`` (its ``bert`` encoder and ``cls`` head are used). Packed
    sequences have no padding, so no attention mask is passed. The loss is the mean cross-entropy
    over labelled tokens (0, with a zero gradient, when a batch has none).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.model.bert(input_ids=input_ids).last_hidden_state
        selected = labels != IGNORE_INDEX
        logits = self.model.cls(hidden[selected]).float()
        targets = labels[selected]
        loss = functional.cross_entropy(logits, targets) if targets.numel() else logits.sum() * 0.0
        correct = (logits.argmax(dim=-1) == targets).sum()
        return loss, correct, selected.sum()
