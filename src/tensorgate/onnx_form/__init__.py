"""The ONNX form of the IR: how each op is written as nodes of the default domain.

The ``onnx`` target (``backend.onnx_export``) writes modules with it, and the importer
(``frontend.raise_export``) recognizes what it wrote by lowering a proposed op again and
comparing node for node; neither imports the other, both import this package.

Every IR op lowers to nodes of the default domain.  The node that makes an op's first
result is named after the op's ``loc``; the others ``<result>/<role>``.  Values keep
their IR names and types (symbolic dims as ``dim_param``).

* ``const`` becomes a ``Constant`` node; every tensor an op holds as an attribute (map
  tensors, biases, peepholes, slice bounds) an initializer.  The importer relies on the
  difference to tell a ``linear`` op's bias from an ``add`` of a constant.
* Elementwise, shape and head ops become the ONNX op of the same meaning.
* Linear maps (``apply_map``): a dense map is ``MatMul`` by ``Wᵀ``.  A tt/bt/ht map is
  contracted pairwise in the order of the map's schedule if it has one, else in its
  default order, in one of two forms (``LoweringChoices.maps``); both start by
  zero-padding the input's last axis and splitting it into the map's ``in_factors``
  (``[Pad] → Reshape``), and end by merging and truncating to ``out_dim``
  (``[Sum of BT blocks] → Reshape → [Slice]``).  The initializers are the map's own
  tensors, unchanged, boundary axes of size 1 included.

  - ``matmul`` (the default): each step with the data is one GEMM: ``[Transpose]`` of the
    data only where its summed axes are not already last, ``Reshape`` to
    ``[…, rows, K]``, ``MatMul`` by the core ``Transpose``d and ``Reshape``d to ``[K, N]``
    (constant, so onnxruntime folds it when it loads the model: the kernels see
    pre-reshaped weights), ``Reshape`` back.  The leading axes stay in front (0s in every
    Reshape), so one step covers all time steps and rows.  Weight-only steps
    (precontraction) are ``Einsum`` of constants, folded at load too.  The last node
    carries the whole map description (format, meta, tensor shapes, annotations) as
    ``tensorgate.map``; the importer lowers a map of that description with placeholder
    tensors and reads the real ones off the nodes in their place.
  - ``einsum``: one ``Einsum`` per step; the last node's ``tensorgate.map`` holds only
    the annotations (schedule, decomposition error), the importer reads the format off
    the einsum network.  Quantized maps always take this form.

  The map's annotations, which are not computation, ride on the last node either way.
* ``host``: the region's own nodes and initializers, renamed into the graph (``host``),
  converted to the target's opset where the region was written at another one.
* ``lstm``, ``gru`` and ``rnn``, by what their maps allow (``recurrent.recurrent_strategy``)
  and ``LoweringChoices.recurrent`` (``recurrent.chosen_strategy``: by default the node
  for dense maps, the Scan for a decomposed W):

  - ``native``: W and R dense, one ``gates·H × ·`` map per direction, float32: the ONNX
    ``LSTM``, ``GRU`` or ``RNN`` op with every attribute.  Activation alpha and beta are
    written out with the specification's defaults filled in (onnxruntime reads an
    omitted alpha/beta of Affine and ScaledTanh as 0).
  - ``projected``: R as above, W anything else (decomposed or per gate): ``W·x`` of all
    time steps is computed by the map lowering (per direction, gates concatenated) and
    fed to the op whose input size is ``gates·H·dirs`` and whose W is the identity
    (``[I 0]`` and ``[0 I]`` for the two directions of a bidirectional op), made by
    ``EyeLike`` so nothing is stored.  ``X·Iᵀ`` adds exact zeros to exact products by
    one, so the op sees ``W·x`` bit for bit; it costs a ``(gates·H)² ·dirs`` product per
    step and vector, done for all steps in one batched GEMM, which is why it is written
    only when chosen (``recurrent=node``).
  - ``scan``: everything else (R decomposed or per gate; float64, which onnxruntime's
    recurrent ops do not run), and what the choices send here: ``W·x + b`` for all steps as above, then one ``Scan``
    over time (both directions in one node) whose body applies R by the map lowering
    and runs the cell in elementwise ops: peepholes, clip, the activations with their
    alpha/beta, input_forget, the GRU's reset-gate product in both
    ``linear_before_reset`` forms (a stacked R without it is applied twice, to ``h`` and
    to ``r ⊙ h``), and sequence_lens by masking (a finished row keeps its state and
    outputs zeros, as in ONNX).  The op's scalar attributes and where its maps end ride
    on the Scan as the metadata entry ``tensorgate.<kind>``; the importer checks them
    against the body by lowering them again.

  The bias goes in as the IR holds it: ONNX's ``[dirs, 2·gates·H]`` as the node's ``B``;
  a folded ``[dirs, gates·H]`` (by ``canonicalize``) as ``B = Pad(b)``, whose recurrent
  half is zero, so an unfolded bias whose recurrent half happens to be zero stays
  distinguishable.  Layout 1 (batch major, which onnxruntime's recurrent ops reject) is
  lowered as transposes around the layout-0 lowering and comes back that way.  Float
  attributes (clip, activation alpha/beta) are float32 in an ONNX node; the Scan keeps
  them exactly.
"""

from . import gru, host, lstm, rnn  # register the host and recurrent lowerings
from .conventions import ANNOTATIONS_KEY, ELEMENT_TYPES, IR_VERSION, ONNX_TYPES, OPSET, PRODUCER, QDQ_OPSET, SCAN_KEYS
from .graph import (
    MAP_FORMS, RECURRENT_FORMS, ExportError, GraphBuilder, LoweringChoices, Names, numpy_dtype, tensor_value_info,
)
from .maps import apply_map, apply_maps
from .ops import LOWERINGS, lower_op

__all__ = [
    "gru", "host", "lstm", "rnn", "ANNOTATIONS_KEY", "ELEMENT_TYPES", "IR_VERSION", "ONNX_TYPES", "OPSET",
    "PRODUCER", "QDQ_OPSET", "SCAN_KEYS", "MAP_FORMS", "RECURRENT_FORMS", "LoweringChoices", "ExportError",
    "GraphBuilder", "Names", "numpy_dtype", "tensor_value_info", "apply_map", "apply_maps", "LOWERINGS", "lower_op",
]
