"""Package attributes imported on first use.

A Ray worker that unpickles a stage function imports that function's module, and with it the
module's package. A package whose ``__init__`` imported its driver (Ray Train, torch, transformers)
made every such worker import all of that: 8.4 s for ``biobert_ray.pretrain.corpus``, 0.8 s without.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def attributes(package: str, sources: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``sources`` (name -> module) is imported
    from its module when first read; any other name raises ``AttributeError``."""

    def get(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(sources[name]), name)

    return get
