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

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .. import __version__
from ..fixedpoint.quant_attrs import is_quantized, module_rounding
from ..ir.core import Module
from ..ir.serialize import save_module
from ..ir.types import FixedType
from ..onnx_form import (
    IR_VERSION, MAP_FORMS, OPSET, PRODUCER, QDQ_OPSET, RECURRENT_FORMS, GraphBuilder, LoweringChoices, Names,
    lower_op, tensor_value_info,
)
from .artifact import IR_FILE, MANIFEST, build_manifest, write_artifact
from .onnx_qdq import check_exact, lower_quantized, requantize

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_BYTES = 1 << 30
"""Models whose weights exceed this are written with the weights in ``model.onnx.data``
(a protobuf message cannot exceed 2 GiB)."""


def export_onnx(module: Module, choices: LoweringChoices = LoweringChoices()) -> onnx.ModelProto:
    """``module`` as a checked ONNX model (see the module docstring), its float ops
    written as ``choices`` says."""
    node_names = Names()
    locs = [node_names.fresh(op.loc) if op.loc else None for op in module.ops]
    quantized = is_quantized(module)
    if quantized:  # each contraction step must round where the golden model does: one Einsum per step
        choices = dataclasses.replace(choices, maps="einsum")
    b = GraphBuilder(Names(v.name for v in module.values()), node_names, opset=QDQ_OPSET if quantized else OPSET,
                     choices=choices)
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


TUNE_REPEATS = 20


def tune_choices(module: Module, repeats: int = TUNE_REPEATS) -> tuple[LoweringChoices, dict[str, float]]:
    """The lowering choices whose export onnxruntime runs fastest on this module, and the
    milliseconds measured per distinct export (``maps/recurrent``; choices that write the
    same model share one measurement).  Each export runs on one thread, on seeded random
    inputs (symbolic dims 1, integer inputs 1), best of ``repeats`` after a warm-up; the
    fastest wins, a tie going to the earlier choice, so the result follows from the
    measurements alone.  A quantized module has one form: its default comes back unmeasured."""
    if is_quantized(module):
        return LoweringChoices(), {}
    feeds = _tuning_feeds(module)
    timings: dict[str, float] = {}
    measured: dict[bytes, float] = {}
    best: tuple[float, LoweringChoices] | None = None
    for choices in (LoweringChoices(maps, recurrent) for maps in MAP_FORMS for recurrent in RECURRENT_FORMS):
        model = export_onnx(module, choices).SerializeToString()
        if model not in measured:
            measured[model] = _best_ms(model, feeds, repeats)
            timings[f"{choices.maps}/{choices.recurrent}"] = measured[model]
        if best is None or measured[model] < best[0]:
            best = (measured[model], choices)
    return best[1], timings


def _tuning_feeds(module: Module) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in module.inputs:
        shape = tuple(d if isinstance(d, int) else 1 for d in value.type.shape)
        dtype = value.type.dtype.numpy
        feeds[value.name] = (rng.standard_normal(shape).astype(dtype) if np.dtype(dtype).kind == "f"
                             else np.ones(shape, dtype))
    return feeds


def _best_ms(model: bytes, feeds: dict[str, np.ndarray], repeats: int) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _quantize_inputs(b: GraphBuilder, module: Module) -> None:
    """Fixed-point inputs take floats, quantized on entry in the module's rounding mode
    (as the golden model does); the ops then read the quantized values."""
    rounding = module_rounding(module)
    for value in module.inputs:
        if isinstance(value.type.dtype, FixedType):
            b.prefix = value.name
            b.aliases[value.name] = requantize(b, value.name, value.type.dtype, rounding, "quantized")


def write_onnx_artifact(module: Module, out_dir: Path, pipeline: str, source: str,
                        report: dict | None = None, tune: bool = False) -> Path:
    """The ``onnx`` target: ``model.onnx``, the IR it came from (so ``tensorgate run``
    works on the artifact too) and ``manifest.json`` (``report``: see ``build_manifest``).
    With ``tune``, the lowering choices are measured (``tune_choices``) and the fastest
    written; the manifest's ``onnx_lowering`` says which, with the measurements."""
    choices, timings = tune_choices(module) if tune else (LoweringChoices(), {})
    model = export_onnx(module, choices)

    def fill(tmp: Path) -> None:
        weights = sum(len(t.raw_data) for t in model.graph.initializer)
        onnx.save_model(model, tmp / ONNX_FILE, save_as_external_data=weights > EXTERNAL_DATA_BYTES,
                        location=f"{ONNX_FILE}.data")
        save_module(module, tmp / IR_FILE)
        manifest = build_manifest(module, "onnx", pipeline, source, report)
        manifest.update(onnx=ONNX_FILE, opset=model.opset_import[0].version)
        if tune:
            manifest["onnx_lowering"] = {**dataclasses.asdict(choices), "tuned_ms": timings}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    return write_artifact(out_dir, fill)
