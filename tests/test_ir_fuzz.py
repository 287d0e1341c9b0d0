"""Fuzzing the IR parser and verifier (issue 15, item 5): one-token mutations of the
printed IR of real models (``ir_mutations``) end in tensorgate's own errors, never in a
foreign exception (which the CLI reports as ``internal error``).  A mutated module that
verifies is also run, as ``tensorgate run`` runs a model.tgir.

The property test draws mutations with hypothesis (CI-sized; ``benchmarks/fuzz_ir.py``
runs the same check for minutes).  Each mutation that once escaped as a foreign
exception is kept below as a regression case, with the error it must give now."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_mutations import SPECIAL, check_text, mutate, run_as_cli, seeds, tokens

from tensorgate.errors import TensorgateError
from tensorgate.ir import verify_module
from tensorgate.ir.parser import parse_module

SEEDS = {name: (text, tensors, feeds) for name, text, tensors, feeds in seeds()}


def test_every_seed_parses_verifies_and_runs():
    for name, (text, tensors, feeds) in SEEDS.items():
        assert check_text(text, tensors, feeds) is None, name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=st.sampled_from(sorted(SEEDS)), index=st.integers(0, 10**6),
       action=st.sampled_from(["replace", "replace", "delete", "duplicate"]),
       special=st.sampled_from(SPECIAL), own=st.integers(0, 10**6), use_own=st.booleans())
def test_one_token_mutations_give_tensorgate_errors(seed, index, action, special, own, use_own):
    text, tensors, feeds = SEEDS[seed]
    spans = tokens(text)
    start, end = spans[own % len(spans)]
    mutated = mutate(text, spans, index, action, text[start:end] if use_own else special)
    escaped = check_text(mutated, tensors, feeds)
    assert escaped is None, f"{type(escaped).__name__}: {escaped}"


# (seed, text replaced once, replacement, a fragment of the error it must give)
REGRESSIONS = [
    ("lstm_tt_quantized", "%x: fix<8,5>", "%x: fix<0,5>", "needs a width of 2..64 bits"),
    ("lstm_tt_quantized", "%x: fix<8,5>", "%x: fix<8,999>", "-256..256 fraction bits"),
    ("lstm", "const {value = dense<1> : i64[]}", "const", "attribute 'value' is required"),
    ("lstm", "dense<[32]> : i64[1]", "dense<[2147483648]> : i64[1]", "would not give its declared type"),
    ("lstm", "f32[1,batch,32] = expand", "f32[1,batch,2147483648] = expand", "outside 0..2147483647"),
    ("lstm", "%x: f32[seq,batch,8]", "%x: f32[seq,batch,-8]", "dim -8 is outside"),
    ("lstm_bt", "[[[0, 2, ", "[[[0, inf, ", "lhs, rhs, macs and size must be non-negative integers"),
    ("gru_bt", "[[[0, 1, ", "[[[0, -inf, ", "lhs, rhs, macs and size must be non-negative integers"),
    ("lstm_bt", "time_steps = 1,", "time_steps = 1e308,", "must be positive integers"),
    ("lstm_tt_quantized", "clamp_log2 = 3", "clamp_log2 = 1000000", "clamp_log2 1000000 must be an integer"),
    ("lstm_tt_quantized", "guard_bits = 4", "guard_bits = 1000000", "guard_bits 1000000 must be an integer"),
    ("lstm_tt_quantized", "clamp_log2 = 3", "clamp_log2 = 3.5", "clamp_log2 3.5 must be an integer"),
    ("lstm_tt_quantized", "tanh_cell", "tanh_cel", "attribute 'quant' lacks 'tanh_cell'"),
    ("lstm_tt_quantized", 'input = "fix<8,4>"', "input = []", "[] is not an element type name"),
    ("gru_ht_quantized", "recurrent_bias", "bt", "'recurrent_bias' (the format of Rb_h) is required"),
    ("gru_ht_quantized", "bias = [", "perm = [", "quant 'bias' must give the bias formats"),
    ("lstm_ht_quantized", "%x: fix<12,9>", "%x: i1", "a quantized op takes fix<w,f> codes"),
    ("batch_major", "perm = [1, 0, 2]", "perm = [1.0, 0, 2]", "attribute 'perm' must be a list of integers"),
    ("batch_major", "perm = [1, 0, 2]", 'perm = ["1", 0, 2]', "attribute 'perm' must be a list of integers"),
    ("batch_major", "perm = [1, 0, 2]", "perm = {}", "attribute 'perm' must be a list of integers"),
    ("lstm", "axes = [0]", "axes = [0.5]", "attribute 'axes' must be a list of integers or none"),
    ("lstm", "axes = [0]", 'axes = ["a"]', "attribute 'axes' must be a list of integers or none"),
    ("lstm", "axes = [0]", "axes = [2147483648]", "beyond the largest integer it may hold"),
    ("lstm", "axis = 0", "axis = {}", "attribute 'axis' must be an integer"),
    ("lstm", "i64[3] = shape(%x)", "i64[3] = shape(%x) {end = \"x\"}", "attribute 'end' must be an integer or none"),
    ("lstm", "hidden_size = 32", "hidden_size = 0", "hidden_size must be a positive size"),
    ("lstm_bt", "bias = @", "bias = 0.5, peepholes = @", "attribute 'bias' must be a tensor or none"),
    ("gru", "dense<1> : i64[]", "dense<1> : u8[]", "attribute 'value': no IR element type for NumPy dtype uint8"),
]


def _error_of(seed: str, old: str, new: str) -> str:
    text, tensors, feeds = SEEDS[seed]
    assert old in text, f"{seed} has no {old!r}"
    mutated = text.replace(old, new, 1)
    try:
        module = parse_module(mutated, tensors)
        verify_module(module)
        run_as_cli(module, feeds)
    except TensorgateError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("seed, old, new, message", REGRESSIONS, ids=[f"{s}:{n}" for s, _, n, _ in REGRESSIONS])
def test_minimized_mutations_give_their_error(seed, old, new, message):
    with np.errstate(all="ignore"):
        error = _error_of(seed, old, new)
    assert message in error, error
