"""Module verifier: dangling values, duplicate names, op signatures, types, map formats."""

from __future__ import annotations

import numpy as np

from ..errors import VerifyError
from .core import Module, Op
from .linear_map import LinearMap
from .ops import OP_SPECS, REQUIRED, check_attr_kinds, const_values, is_optional, operand_count_ok
from .types import check_dims, shapes_compatible


def verify_module(module: Module) -> None:
    """Raise ``VerifyError`` naming the first broken invariant."""
    defined: set[int] = set()
    names: set[str] = set()
    for value in module.inputs:
        _define(value, names, defined, "module input")
    consts = const_values(module.ops)
    for op in module.ops:
        _verify_signature(op)
        for index, value in enumerate(op.operands):
            if value is None:
                if not is_optional(OP_SPECS[op.kind], index):
                    raise VerifyError(f"{op.describe()}: operand {index} is missing")
            elif id(value) not in defined:
                raise VerifyError(f"{op.describe()}: operand %{value.name} is used before it is defined "
                                  "or belongs to no op of this module")
        _verify_types(op, consts)
        for value in op.results:
            _define(value, names, defined, op.describe())
    for value in module.outputs:
        if id(value) not in defined:
            raise VerifyError(f"module output %{value.name} is not defined in the module")


def _define(value, names, defined, where) -> None:
    problem = check_dims(value.type)
    if problem is not None:
        raise VerifyError(f"value %{value.name} ({where}) has type {value.type}: {problem}")
    if value.name in names:
        raise VerifyError(f"value name %{value.name} is defined twice ({where})")
    names.add(value.name)
    defined.add(id(value))


def _verify_signature(op: Op) -> None:
    spec = OP_SPECS.get(op.kind)
    if spec is None:
        raise VerifyError(f"{op.describe()}: unknown op kind (known: {', '.join(sorted(OP_SPECS))})")
    if not operand_count_ok(spec, len(op.operands)):
        raise VerifyError(f"{op.describe()}: takes operands ({', '.join(spec.operands)}), "
                          f"got {len(op.operands)}")
    for key in op.attrs:
        if key not in spec.attrs:
            raise VerifyError(f"{op.describe()}: unknown attribute '{key}' "
                              f"(known: {', '.join(spec.attrs) or 'none'})")
    for key, default in spec.attrs.items():
        if default is REQUIRED and key not in op.attrs:
            raise VerifyError(f"{op.describe()}: attribute '{key}' is required")
        op.attrs.setdefault(key, default)
    check_attr_kinds(op)
    for key, value in op.attrs.items():
        for leaf in value if isinstance(value, list) else [value]:
            if isinstance(leaf, LinearMap):
                try:
                    leaf.verify()
                except VerifyError as exc:
                    raise VerifyError(f"{op.describe()}: attribute '{key}': {exc}") from None
            elif isinstance(leaf, np.ndarray) and leaf.dtype == object:
                raise VerifyError(f"{op.describe()}: attribute '{key}' holds an object array")


def _verify_types(op: Op, consts) -> None:
    spec = OP_SPECS[op.kind]
    expected = spec.infer(op, consts)
    if spec.num_results is not None and len(op.results) != spec.num_results or len(expected) != len(op.results):
        raise VerifyError(f"{op.describe()}: has {len(op.results)} results, expected {len(expected)}")
    for value, want in zip(op.results, expected):
        problem = check_dims(want)
        if problem is not None:
            raise VerifyError(f"{op.describe()}: its operands give result %{value.name} type {want}: {problem}")
        if value.type.dtype != want.dtype or not shapes_compatible(value.type.shape, want.shape):
            raise VerifyError(f"{op.describe()}: result %{value.name} has type {value.type}, "
                              f"but its operands give {want}")
