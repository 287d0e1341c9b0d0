"""Tables of per-op-kind functions (runtime kernels, ONNX lowerings, torch kernels)."""

from __future__ import annotations

from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def registrar(table: dict[str, F]) -> Callable[..., Callable[[F], F]]:
    """``register = registrar(TABLE)``; then ``@register("add", "sub")`` puts the decorated
    function into ``TABLE`` under each op kind and returns it unchanged."""

    def register(*kinds: str) -> Callable[[F], F]:
        def decorate(fn: F) -> F:
            for kind in kinds:
                table[kind] = fn
            return fn

        return decorate

    return register
