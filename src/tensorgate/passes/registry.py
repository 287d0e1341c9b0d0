"""The registry of every pass, by its pipeline name.

Adding a pass: write its class (a frozen dataclass subclassing ``Pass``) in its own
module and add the class to the tuple below.
"""

from __future__ import annotations

from .base import Pass
from .canonicalize import Canonicalize
from .dce import DeadCodeElimination
from .decompose import Decompose
from .finetune import Finetune
from .order_contractions import OrderContractions
from .quantize import Quantize
from .select_ranks import SelectRanks

PASSES: dict[str, type[Pass]] = {
    cls.name: cls
    for cls in (
        Canonicalize,
        DeadCodeElimination,
        Decompose,
        Finetune,
        OrderContractions,
        Quantize,
        SelectRanks,
    )
}


def describe_passes(registry: dict[str, type[Pass]] | None = None) -> str:
    """Text for ``tensorgate passes``: each pass, its doc line and its options with
    type, default and doc."""
    registry = PASSES if registry is None else registry
    blocks = []
    for name in sorted(registry):
        cls = registry[name]
        lines = [f"{name}: {cls.doc}"]
        for spec in cls.options():
            default = "unset" if spec.default is None else spec.format(spec.check(spec.default))
            doc = f" — {spec.doc}" if spec.doc else ""
            lines.append(f"  {spec.text_name}: {spec.describe_type()}, default {default}{doc}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
