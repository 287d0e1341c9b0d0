"""Raising: recognize tensorized models in an imported graph and lift them to the IR's
own ops.

* ``static_shapes.fold_static_shapes`` (on the ONNX graph, before import): folds the
  integer shape arithmetic whose values are static, so chunked gates become plain
  slices and reshape targets constants.
* ``raise_maps.raise_maps``: contractions of an input with constant cores (einsum
  chains, reshape/transpose/matmul chains) become ``linear`` ops with ``tt``/``bt``/``ht``
  maps holding the cores unchanged.
* ``raise_recurrent.raise_recurrent``: an LSTM, GRU or RNN cell written out step by step
  and unrolled over time (or applied once: an LSTM or GRU cell, a streamed RNN step)
  becomes one ``lstm``, ``gru`` or ``rnn`` op.

What is not recognized stays as generic ops, which the NumPy runtime runs; each such
part gets a one-line note (``Module.notes``) saying what it is and why it was left.
"""

from __future__ import annotations

from ...ir.core import Module
from .notes import Notes
from .raise_recurrent import raise_recurrent
from .raise_maps import raise_maps
from .static_shapes import fold_static_shapes

__all__ = ["fold_static_shapes", "raise_tensorized"]


def raise_tensorized(module: Module) -> list[str]:
    """Raise maps, then recurrent cells, in place; returns the notes on what was left as it was."""
    notes = Notes()
    raise_maps(module, notes)
    raise_recurrent(module, notes)
    return notes.lines()
