"""Which nodes onnxruntime can run: the check before anything is left to a host region.

onnxruntime lists its CPU kernels (op, domain, version range); an op of the default
domain without a kernel still runs when its schema has a function body (onnxruntime
expands it), and so does a call of a function the model defines.  A node in a domain
onnxruntime does not know, or with no kernel for its version, is reported with every
other such node at once, subgraphs included, so one run of the importer shows them all.
"""

from __future__ import annotations

import functools

import onnx

from .partition import all_nodes

ONNX_DOMAINS = ("", "ai.onnx")


@functools.cache
def _kernels() -> dict[tuple[str, str], list[tuple[int, int]]]:
    from onnxruntime.capi import _pybind_state

    table: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for kernel in _pybind_state.get_all_opkernel_def():
        if kernel.provider == "CPUExecutionProvider":
            domain = "" if kernel.domain == "ai.onnx" else kernel.domain
            table.setdefault((domain, kernel.op_name), []).append(tuple(kernel.version_range))
    return table


def unrunnable(nodes: list[onnx.NodeProto], model: onnx.ModelProto) -> list[str]:
    """``node 'name' (domain.Op): reason`` for every node of ``nodes`` (and of their
    subgraphs) that onnxruntime cannot run in ``model``."""
    opsets = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    functions = {(f.domain, f.name) for f in model.functions}
    problems: list[str] = []
    for node in all_nodes(nodes):
        domain = "" if node.domain == "ai.onnx" else node.domain
        if (domain, node.op_type) in functions:
            continue
        reason = _problem(domain, node.op_type, opsets.get(domain))
        if reason:
            problems.append(f"node '{node.name or node.op_type}' ({domain + '.' if domain else ''}{node.op_type}): "
                            f"{reason}")
    return problems


def _problem(domain: str, op_type: str, opset: int | None) -> str | None:
    if not domain and op_type == "Constant":
        return None  # onnxruntime turns Constant nodes into initializers when it loads a model
    kernels = _kernels()
    if not any(d == domain for d, _ in kernels):
        return f"onnxruntime knows no domain '{domain}'"
    ranges = kernels.get((domain, op_type))
    if domain:
        return None if ranges else f"onnxruntime has no kernel for {op_type} in domain '{domain}'"
    try:
        schema = onnx.defs.get_schema(op_type, opset or onnx.defs.onnx_opset_version(), "")
    except onnx.defs.SchemaError:
        return f"no op {op_type} exists at opset {opset}"
    if ranges and any(low <= schema.since_version <= high for low, high in ranges):
        return None
    if schema.has_function or schema.has_context_dependent_function:
        return None
    return f"onnxruntime has no kernel for {op_type} version {schema.since_version}"
