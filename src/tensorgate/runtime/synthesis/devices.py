"""The devices ``tensorgate synth`` targets: how yosys maps onto each, what its cells count
as, and what the chip has (the one table of device budgets).

A resource is a count over yosys's mapped cells (a weighted sum: an ECP5 carry cell
``CCU2C`` holds two LUT4s); a budget is what the chip offers of one resource or of a
weighted sum of them (XCKU5P block RAM: a RAMB18E2 is half a RAMB36E2's site).  Figures:
the XCKU5P from the Kintex UltraScale+ product table (DS922); the ECP5 parts as
nextpnr-ecp5 reports them for the device (the same as the ECP5 data sheet, DS1044).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import UsageError

LUT, FF, DSP, BRAM, URAM, OTHER = "lut", "ff", "dsp", "bram", "uram", "other"
"""Kinds of resource: what a column of a cross-device table shows."""


@dataclass(frozen=True)
class Resource:
    """One resource count: ``cells`` maps yosys cell types to how many units each is;
    ``pnr_name`` is nextpnr's name for it in the placed design's utilization."""

    name: str
    kind: str
    cells: dict[str, float]
    pnr_name: str | None = None

    def count(self, cells: dict[str, int]) -> int:
        return round(sum(weight * cells.get(cell, 0) for cell, weight in self.cells.items()))


@dataclass(frozen=True)
class Budget:
    """What the chip has of ``resource`` (a name, or a weighted sum of resource names)."""

    name: str
    available: int
    weights: dict[str, float]

    def used(self, counts: dict[str, int]) -> float:
        return sum(weight * counts.get(name, 0) for name, weight in self.weights.items())


@dataclass(frozen=True)
class Device:
    """A synthesis target: ``synth`` is the yosys command (``{top}`` filled in), ``nextpnr``
    the device options of nextpnr-ecp5 (``None``: no place-and-route here)."""

    name: str
    description: str
    family: str
    synth: str
    resources: tuple[Resource, ...]
    budgets: tuple[Budget, ...]
    nextpnr: tuple[str, ...] | None = None

    @property
    def places(self) -> bool:
        return self.nextpnr is not None

    def resource(self, kind: str) -> Resource | None:
        """The first resource of ``kind`` (the LUT, FF, DSP, block RAM or URAM column)."""
        return next((r for r in self.resources if r.kind == kind), None)


XILINX_LUTRAM = {"RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM32X1D": 2, "RAM64X1D": 2,
                 "RAM128X1D": 4, "RAM256X1D": 8, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8,
                 "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
"""LUTs a distributed-RAM or shift-register cell occupies (UG574)."""

XILINX_RESOURCES = (
    Resource("LUT", LUT, {f"LUT{n}": 1 for n in range(1, 7)} | XILINX_LUTRAM),
    Resource("FF", FF, {cell: 1 for cell in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")}),
    Resource("DSP", DSP, {"DSP48E2": 1}),
    Resource("BRAM36", BRAM, {"RAMB36E2": 1}),
    Resource("BRAM18", OTHER, {"RAMB18E2": 1}),
    Resource("URAM", URAM, {"URAM288": 1}),
    Resource("CARRY8", OTHER, {"CARRY8": 1}),
)


def xilinx_budgets(luts: int, ffs: int, dsps: int, bram36: int, urams: int) -> tuple[Budget, ...]:
    return (Budget("LUT", luts, {"LUT": 1}), Budget("FF", ffs, {"FF": 1}), Budget("DSP", dsps, {"DSP": 1}),
            Budget("BRAM36 (RAMB18 = 1/2)", bram36, {"BRAM36": 1, "BRAM18": 0.5}),
            Budget("URAM", urams, {"URAM": 1}))


ECP5_RESOURCES = (
    Resource("LUT4", LUT, {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4}, "TRELLIS_COMB"),
    Resource("TRELLIS_FF", FF, {"TRELLIS_FF": 1}, "TRELLIS_FF"),
    Resource("MULT18X18D", DSP, {"MULT18X18D": 1}, "MULT18X18D"),
    Resource("ALU54B", OTHER, {"ALU54B": 1}, "ALU54B"),
    Resource("DP16KD", BRAM, {"DP16KD": 1}, "DP16KD"),
)


def ecp5_device(size: str, luts: int, multipliers: int, ebrs: int, description: str) -> Device:
    return Device(
        f"ecp5-{size}", description, "ecp5", "synth_ecp5 -top {top} -json netlist.json", ECP5_RESOURCES,
        (Budget("LUT4", luts, {"LUT4": 1}), Budget("TRELLIS_FF", luts, {"TRELLIS_FF": 1}),
         Budget("MULT18X18D", multipliers, {"MULT18X18D": 1}), Budget("ALU54B", multipliers // 2, {"ALU54B": 1}),
         Budget("DP16KD", ebrs, {"DP16KD": 1})),
        nextpnr=(f"--{size}", "--package", "CABGA381"))


DEVICES = {device.name: device for device in (
    Device("xcku5p", "Xilinx Kintex UltraScale+ XCKU5P (yosys counts; no place-and-route here)", "xcup",
           "synth_xilinx -family xcup -flatten -noiopad{uram} -top {top}", XILINX_RESOURCES,
           xilinx_budgets(luts=216_960, ffs=433_920, dsps=1_824, bram36=480, urams=64)),
    ecp5_device("25k", 24_288, 28, 56, "Lattice ECP5 LFE5U-25F, CABGA381"),
    ecp5_device("45k", 43_848, 72, 108, "Lattice ECP5 LFE5U-45F, CABGA381"),
    ecp5_device("85k", 83_640, 156, 208, "Lattice ECP5 LFE5U-85F, CABGA381"),
)}


def device_named(name: str) -> Device:
    try:
        return DEVICES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown device '{name}'; expected one of {', '.join(DEVICES)}") from None


KINDS = (LUT, FF, DSP, BRAM, URAM)


def memory_budgets(device: Device) -> tuple[int, int]:
    """The block RAM (in the family's largest block: BRAM36, DP16KD) and the URAMs the
    device has: the budgets the compiler maps memories against (0 URAM on an ECP5)."""

    def available(kind: str) -> int:
        resource = device.resource(kind)
        budget = next((b for b in device.budgets if resource and resource.name in b.weights), None)
        return budget.available if budget else 0

    return available(BRAM), available(URAM)


def kind_counts(device: Device, counts: dict[str, int]) -> dict[str, float | None]:
    """The LUT, FF, DSP, block-RAM and URAM columns of a table across devices: each
    kind's resource count (``None`` where the device has none), block RAM as its budget
    counts it (XCKU5P: RAMB36E2 + RAMB18E2 / 2; ECP5: DP16KD)."""
    columns: dict[str, float | None] = {}
    for kind in KINDS:
        resource = device.resource(kind)
        if resource is None:
            columns[kind] = None
            continue
        budget = next((b for b in device.budgets if resource.name in b.weights), None)
        columns[kind] = budget.used(counts) if budget else counts.get(resource.name)
    return columns
