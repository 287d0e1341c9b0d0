"""One-token mutations of printed IR, for fuzzing the parser and verifier.

Seeds are the printed IR of real models: the digits LSTM and GRU as imported (shape,
gather, expand, concat, squeeze, linear), after decomposition into TT, BT and HT maps with
contraction schedules, and after 8-bit quantization; a batch-major bidirectional LSTM
between transposes.  A mutation replaces, deletes or duplicates one token, the
replacement drawn from the seed's own tokens or from values a careless or hostile edit
would write (huge numbers, ``inf``, odd fixed-point types, wrong kinds of literal).

``check_text`` runs ``parse_module`` and ``verify_module`` and returns the exception that
escaped, if it is not one of tensorgate's own (``TensorgateError``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from models import OnnxRecurrent, make_onnx_recurrent

from tensorgate.backend.onnx_export import export_onnx
from tensorgate.errors import TensorgateError
from tensorgate.fixedpoint.quant_attrs import is_quantized
from tensorgate.frontend import import_onnx
from tensorgate.interpreter import run_fixed, run_module
from tensorgate.ir import Module, verify_module
from tensorgate.ir.parser import parse_module
from tensorgate.ir.printer import module_tensors, print_module
from tensorgate.ir.types import FloatType, IntType
from tensorgate.passes import PassManager

DATA = Path(__file__).parent / "data"
TOKEN = re.compile(r'[%@]"(?:[^"\\]|\\.)*"|[%@][\w.]+|"(?:[^"\\]|\\.)*"|fix<[^>]*>'
                   r"|-?\d+\.\d*(?:[eE][+-]?\d+)?|-?\d+[eE][+-]?\d+|-?\d+|[A-Za-z_][\w.]*|\S")
SPECIAL = (
    "0", "-1", "1", "2", "-2147483648", "2147483648", "4294967296", "1099511627776", "9223372036854775808",
    "99999999999999999999999", "0.5", "-0.0", "1e308", "1e-320", "inf", "-inf", "nan", "nan(0x7fc00001)",
    '"x"', '""', '"fix<8,4>"', "true", "false", "none", "[]", "[1]", "{}", "_", "fix<0,5>", "fix<-3,5>",
    "fix<99,2>", "fix<8,99>", "fix<8,-99>", "fix<64,0>", "fix<2,-2147483648>", "f16", "f64", "i1", "u8", "i0",
    "f32", "dense", "tt", "bt", "ht", "%x", "@x", "?", "batch", "schedule", "value", "quant", "clamp_log2",
    "perm", "axes", "w", "r", "<", ">", "(", ")", "[", "]", ",", "=", ":",
)
"""Replacement tokens beyond the seed's own."""


def tokens(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every token of ``text``."""
    return [match.span() for match in TOKEN.finditer(text)]


def mutate(text: str, spans: list[tuple[int, int]], index: int, action: str, replacement: str) -> str:
    """``text`` with token ``index`` replaced by ``replacement``, deleted or duplicated."""
    start, end = spans[index % len(spans)]
    if action == "delete":
        return text[:start] + text[end:]
    if action == "duplicate":
        return text[:end] + " " + text[start:end] + text[end:]
    return text[:start] + replacement + text[end:]


def check_text(text: str, tensors: dict[str, np.ndarray], feeds: dict[str, np.ndarray] | None = None
               ) -> BaseException | None:
    """The foreign exception parsing and verifying ``text`` raises (``None`` when it
    parses and verifies, or fails with a tensorgate error); with ``feeds``, a module that
    verifies is also run on them, as ``tensorgate run`` would."""
    try:
        module = parse_module(text, tensors)
        verify_module(module)
        if feeds is not None:
            run_as_cli(module, feeds)
    except TensorgateError:
        return None
    except Exception as exc:  # noqa: BLE001 - what the fuzzer looks for
        return exc
    return None


def run_as_cli(module: Module, feeds: dict[str, np.ndarray]) -> None:
    """The integer golden model for a quantized module, else the float runtime."""
    if is_quantized(module):
        run_fixed(module, feeds)
    else:
        run_module(module, feeds)


def feeds_of(module: Module, symbolic: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for ``module``'s inputs, symbolic dims of size ``symbolic``; fixed-point
    inputs as real values (what ``tensorgate run`` takes)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in module.inputs:
        shape = tuple(d if isinstance(d, int) else symbolic for d in value.type.shape)
        dtype = value.type.dtype
        if isinstance(dtype, IntType):
            feeds[value.name] = rng.integers(1, 3, shape).astype(dtype.numpy)
        else:
            numpy = dtype.numpy if isinstance(dtype, FloatType) else np.float32
            feeds[value.name] = rng.standard_normal(shape).astype(numpy)
    return feeds


@functools.cache
def seeds() -> tuple[tuple[str, str, dict[str, np.ndarray]], ...]:
    """``(name, text, tensors, feeds)`` of every seed module."""
    lstm = import_onnx(DATA / "digits_lstm.onnx")
    gru = import_onnx(DATA / "digits_gru.onnx")
    batch_major_lstm = import_onnx(make_onnx_recurrent(OnnxRecurrent(layout=1, direction="bidirectional",
                                                                     sequence_lens=True, initial_h=True))[0])
    batch_major = import_onnx(export_onnx(batch_major_lstm))  # the lstm between transposes
    pipelines = {
        "tt_quantized": "canonicalize, dce, decompose{method=tt d=3 max-rank=2 weights=all dense-fallback=false}, "
                        "order-contractions, quantize{bits=8}",
        "bt": "canonicalize, dce, decompose{method=bt d=2 tucker-rank=2 blocks=2 weights=all dense-fallback=false}, "
              "order-contractions",
        "ht_quantized": "canonicalize, dce, decompose{method=ht d=3 max-rank=2 weights=all dense-fallback=false}, "
                        "quantize{bits=12 activation=lut}",
    }
    modules = {"lstm": lstm, "gru": gru, "batch_major": batch_major}
    for name, pipeline in pipelines.items():
        for cell, module in (("lstm", lstm), ("gru", gru)):
            modules[f"{cell}_{name}"] = PassManager.parse(pipeline).run(module.copy())
    return tuple((name, print_module(module, "model.npz"), module_tensors(module), feeds_of(module))
                 for name, module in modules.items())
