"""The optimizer and learning-rate schedule of every training run (fine-tuning and pretraining).

AdamW with BERT's parameter groups: weight decay on weights, none on biases and LayerNorm weights,
so ``--weight-decay`` means the same thing in both commands. The learning rate rises linearly over
the warm-up steps and decays linearly to zero at the last step (``transformers``'
``get_linear_schedule_with_warmup``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup


def adamw(model: nn.Module, learning_rate: float, weight_decay: float, eps: float) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.999) over ``model``'s trainable parameters, without decay on biases and
    LayerNorm weights.

    torch's default implementation (foreach), which fine-tuning always used: its demo model is
    reproduced bit for bit. The fused kernel rounds differently (same F1, a few different mentions)
    and its step is faster on CPU (docs/benchmarks.md), a small share of a training step.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.999), eps=eps)


def linear_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
