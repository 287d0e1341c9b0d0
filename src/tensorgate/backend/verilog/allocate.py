"""The scratchpad allocator: a pass over a lowered program that packs its regions by liveness.

The lowering gives every value, constant and temporary a region of its own (``Region``), so
the scratchpad would grow with every instruction and every time step.  This pass decodes
each instruction's scratchpad walks (``isa.accesses``), finds when each region is first
and last touched, and places the regions first-fit in address order of their first use, so
that a region dead before another is born lends it its words.  It then rewrites the walks'
bases, the image's constants and the input and output addresses.

A region keeps its words from the start of the run when the host writes it (an input), it
holds constants, or a word of it is read before any instruction has written it (the zeros
of an initial state or of padding columns); a region the host reads at the end (an output)
keeps its words to the end.  The program is straight-line (time steps are unrolled), so
these intervals are exact.

A walk that crosses regions (an instruction reading the concatenation of values stored one
after another, as the linear layers of a grouped linear layer) relies on their relative
places: the regions between its first and last address move as one block.  So do the
accesses of one cycle of a GEMM (its row groups' A reads, its drain lanes' writes and init
reads: each within one region), so the differences between them, and with them the
distinct scratchpad banks the lowering chose them to fall in, are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import isa
from .image import Image
from .isa import LoweringError


@dataclass(frozen=True)
class Region:
    """``size`` scratchpad words from ``base``, allocated by the lowering as one value;
    ``constant``: the image holds its initial words."""

    base: int
    size: int
    constant: bool = False


def allocate_scratchpad(image: Image, regions: list[Region]) -> Image:
    """``image`` with its regions packed by liveness (module docstring)."""
    regions = [r for r in sorted(regions, key=lambda r: r.base) if r.size > 0]
    if not regions:
        return image
    starts = np.array([r.base for r in regions], np.int64)
    first, last, joined = _live_intervals(image, regions, starts)
    placed = _place_blocks(regions, first, last, joined)
    offsets = {r.base: p - r.base for r, p in zip(regions, placed)}
    used = [p + r.size for r, p, f, l in zip(regions, placed, first, last) if f <= l]
    scratch = np.zeros(max(used, default=0), np.int64)
    source = np.asarray(image.scratch, np.int64)
    for region, base, start, stop in zip(regions, placed, first, last):
        if region.constant and start <= stop:
            scratch[base:base + region.size] = source[region.base:region.base + region.size]

    def move(addresses: np.ndarray) -> np.ndarray:
        index = np.searchsorted(starts, addresses, side="right") - 1
        return addresses + (np.array(placed, np.int64) - starts)[index]

    program = [_relocate(words, starts, regions, offsets) for words in image.program]
    return replace(image, program=program, scratch=[int(v) for v in scratch],
                   inputs={name: move(a) for name, a in image.inputs.items()},
                   outputs={name: (move(a), fmt) for name, (a, fmt) in image.outputs.items()})


def _region_of(starts: np.ndarray, regions: list[Region], addresses: np.ndarray) -> np.ndarray:
    index = np.searchsorted(starts, addresses, side="right") - 1
    sizes = np.array([r.size for r in regions], np.int64)
    if np.any(index < 0) or np.any(addresses >= starts[index] + sizes[index]):
        raise LoweringError("an instruction walks scratchpad words outside every allocated region")
    return index


def _live_intervals(image: Image, regions: list[Region], starts: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per region, the first and last instruction that touches it (-1 / len(program) for
    words the host writes or reads, and for words the image must hold at the start), and
    whether one walk joins it to the next region (they then move together)."""
    count = len(regions)
    joined = np.zeros(count, bool)
    first = np.full(count, np.iinfo(np.int64).max, np.int64)
    last = np.full(count, -1, np.int64)
    end = len(image.program)
    written = np.zeros(max(r.base + r.size for r in regions), bool)
    for name, addresses in image.inputs.items():
        written[addresses.ravel()] = True
        first[_region_of(starts, regions, addresses.ravel())] = -1
    for index, region in enumerate(regions):
        if region.constant:
            first[index] = -1
            written[region.base:region.base + region.size] = True
    for step, words in enumerate(image.program):
        reads, writes = isa.accesses(words)
        for addresses, is_write in [(a, False) for a in reads] + [(a, True) for a in writes]:
            if addresses.size == 0:
                continue
            touched = np.unique(_region_of(starts, regions, addresses))
            joined[touched[0]:touched[-1]] = True
            if not is_write:
                unwritten = addresses[~written[addresses]]
                first[np.unique(_region_of(starts, regions, unwritten))] = -1
            first[touched] = np.minimum(first[touched], step)
            last[touched] = np.maximum(last[touched], step)
        for addresses in writes:
            written[addresses] = True
    for addresses, _ in image.outputs.values():
        touched = np.unique(_region_of(starts, regions, addresses.ravel()))
        last[touched] = end
        first[touched] = np.minimum(first[touched], end)
    return first, last, joined


def _place_blocks(regions: list[Region], first: np.ndarray, last: np.ndarray, joined: np.ndarray) -> list[int]:
    """The base of every region: runs of joined regions placed as one block (``_place``),
    each region at its offset within it."""
    blocks: list[list[int]] = []
    for index in range(len(regions)):
        if index and joined[index - 1]:
            blocks[-1].append(index)
        else:
            blocks.append([index])
    spans = [Region(regions[b[0]].base, regions[b[-1]].base + regions[b[-1]].size - regions[b[0]].base)
             for b in blocks]
    block_first = np.array([first[b].min() for b in blocks], np.int64)
    block_last = np.array([last[b].max() for b in blocks], np.int64)
    block_bases = _place(spans, block_first, block_last)
    placed = [0] * len(regions)
    for block, span, base in zip(blocks, spans, block_bases):
        for index in block:
            placed[index] = base + regions[index].base - span.base
    return placed


def _place(regions: list[Region], first: np.ndarray, last: np.ndarray) -> list[int]:
    """First-fit bases, regions taken in the order they come alive; a region's words are
    free again once its last instruction has run."""
    placed = [0] * len(regions)
    busy: list[tuple[int, int, int]] = []  # (base, end, last instruction)
    live = [i for i in range(len(regions)) if first[i] <= last[i]]  # a region never touched needs no words
    for index in sorted(live, key=lambda i: (first[i], -regions[i].size)):
        busy = [b for b in busy if b[2] >= first[index]]
        base = 0
        for low, high, _ in sorted(busy):
            if base + regions[index].size <= low:
                break
            base = max(base, high)
        placed[index] = base
        busy.append((base, base + regions[index].size, int(last[index])))
    return placed


def _relocate(words: np.ndarray, starts: np.ndarray, regions: list[Region], offsets: dict[int, int]) -> np.ndarray:
    words = words.copy()
    for field, addresses in isa.address_fields(words):
        region = regions[int(_region_of(starts, regions, addresses)[0])]
        value = int(words[field])
        moved = (value & ~0xFFFFFFFF) | ((value + offsets[region.base]) & 0xFFFFFFFF)
        words[field] = np.uint64(moved & isa.MASK64)
    return words
