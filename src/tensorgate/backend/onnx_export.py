"""The ``onnx`` target: a module as standard ONNX (default domain, opset 18) that
onnxruntime runs and that ``import_onnx`` raises back to the same IR.

The form of each op is ``onnx_form``'s (its docstring says what every op becomes); this
module assembles the graph, checks it and writes the artifact.

Quantized modules (``quantize``) are written in QDQ form, opset 21: weights as integer
codes behind ``DequantizeLinear``, every round-and-saturate as ``QuantizeLinear`` →
``DequantizeLinear``, σ/tanh units and the recurrent cells as the golden model computes them,
so onnxruntime's results equal ``run_fixed``'s bit for bit (``onnx_qdq``, which also
says when that cannot hold and the export is refused).  Their recurrent ops always take the
Scan; they are not raised back on import.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import helper

from .. import __version__
from ..fixedpoint.quant_attrs import is_quantized, module_rounding
from ..ir.core import Module
from ..ir.serialize import save_module
from ..ir.types import FixedType
from ..onnx_form import IR_VERSION, OPSET, PRODUCER, QDQ_OPSET, GraphBuilder, Names, lower_op, tensor_value_info
from .artifact import IR_FILE, MANIFEST, build_manifest, write_artifact
from .onnx_qdq import check_exact, lower_quantized, requantize

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_BYTES = 1 << 30
"""Models whose weights exceed this are written with the weights in ``model.onnx.data``
(a protobuf message cannot exceed 2 GiB)."""


def export_onnx(module: Module) -> onnx.ModelProto:
    """``module`` as a checked ONNX model (see the module docstring)."""
    node_names = Names()
    locs = [node_names.fresh(op.loc) if op.loc else None for op in module.ops]
    quantized = is_quantized(module)
    b = GraphBuilder(Names(v.name for v in module.values()), node_names, opset=QDQ_OPSET if quantized else OPSET)
    if quantized:
        check_exact(module)
        _quantize_inputs(b, module)
    for op, loc in zip(module.ops, locs):
        start = len(b.nodes)
        lower_op(b, op, lower_quantized)
        if loc is not None:
            main = next(n for n in b.nodes[start:] if op.results[0].name in n.output)
            node_names.taken.discard(main.name)
            main.name = loc
    outputs = {id(v) for v in module.outputs}
    inner = [v for op in module.ops for v in op.results if id(v) not in outputs]
    graph = helper.make_graph(
        b.nodes, module.name,
        [tensor_value_info(v.name, v.type) for v in module.inputs],
        [tensor_value_info(v.name, v.type) for v in module.outputs],
        b.initializers,
        value_info=[tensor_value_info(v.name, v.type) for v in inner],
    )
    opsets = [helper.make_opsetid("", b.opset)] + [helper.make_opsetid(d, v) for d, v in sorted(b.domains.items())]
    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER, producer_version=__version__,
                              ir_version=IR_VERSION, functions=b.functions)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise AssertionError(f"the exported model fails the ONNX checker: {exc}") from exc
    return model


def _quantize_inputs(b: GraphBuilder, module: Module) -> None:
    """Fixed-point inputs take floats, quantized on entry in the module's rounding mode
    (as the golden model does); the ops then read the quantized values."""
    rounding = module_rounding(module)
    for value in module.inputs:
        if isinstance(value.type.dtype, FixedType):
            b.prefix = value.name
            b.aliases[value.name] = requantize(b, value.name, value.type.dtype, rounding, "quantized")


def write_onnx_artifact(module: Module, out_dir: Path, pipeline: str, source: str,
                        report: dict | None = None) -> Path:
    """The ``onnx`` target: ``model.onnx``, the IR it came from (so ``tensorgate run``
    works on the artifact too) and ``manifest.json`` (``report``: see ``build_manifest``)."""
    model = export_onnx(module)

    def fill(tmp: Path) -> None:
        weights = sum(len(t.raw_data) for t in model.graph.initializer)
        onnx.save_model(model, tmp / ONNX_FILE, save_as_external_data=weights > EXTERNAL_DATA_BYTES,
                        location=f"{ONNX_FILE}.data")
        save_module(module, tmp / IR_FILE)
        manifest = build_manifest(module, "onnx", pipeline, source, report)
        manifest.update(onnx=ONNX_FILE, opset=model.opset_import[0].version)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    return write_artifact(out_dir, fill)
