"""Why a part of a model was not raised: the exception the matchers raise, and the
notes an import collects from them (``Module.notes``)."""

from __future__ import annotations

from ...ir.core import Op


class NotRaised(Exception):
    """A part of the graph is not a recognized tensorized map or LSTM: the message says
    why (the same words wherever the same thing happens, so notes group), ``where`` is
    the op it was found at, if one."""

    def __init__(self, reason: str, where: Op | None = None):
        super().__init__(reason)
        self.where = where


class Notes:
    """The notes of one raising run: identical reasons about the same kind of part are
    reported once, at their first place, with a count of the others."""

    def __init__(self) -> None:
        self._places: dict[tuple[str, str], list[str]] = {}

    def add(self, part: str, place: str, reason: str) -> None:
        self._places.setdefault((part, reason), []).append(place)

    def lines(self) -> list[str]:
        return [f"{part} not raised at {places[0]}"
                + (f" (and {len(places) - 1} more like it)" if len(places) > 1 else "") + f": {reason}"
                for (part, reason), places in self._places.items()]


def place_of(ops: list[Op]) -> str:
    """Where in the model ``ops`` are, by their source nodes."""
    locs = [op.loc for op in ops if op is not None and op.loc]
    if not locs:
        return "an unnamed node" if not ops or ops[0] is None else ops[0].describe()
    return f"node '{locs[0]}'" if len(set(locs)) == 1 else f"nodes '{locs[0]}' .. '{locs[-1]}'"
