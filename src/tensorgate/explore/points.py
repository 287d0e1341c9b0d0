"""What a sweep is made of: the parsed options and the points (method, rank, bits, P)
whose product it measures, each with the pipeline that makes it."""

from __future__ import annotations

from dataclasses import dataclass

from ..backend.loading import MAX_PES
from ..errors import UsageError

METHODS = ("dense", "tt", "bt", "ht")
RANK_OPTION = {"tt": "max-rank", "ht": "max-rank", "bt": "tucker-rank"}
WEIGHTS = ("input", "recurrent", "all")
MIN_BITS, MAX_BITS = 2, 32
FLOAT_BITS = "none"
DEFAULT_FINETUNE_EPOCHS = 5
FINETUNE_TEACHERS = ("auto", "imported", "none")


def parse_methods(text: str) -> tuple[str, ...]:
    """``"tt,bt"`` -> ``("tt", "bt")``; each one of ``METHODS``, no repeats."""
    methods = _split(text, "--methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)} (choose from {', '.join(METHODS)})")
    return methods


def parse_ranks(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` -> ``(2, 4, 8)``; each an integer >= 1, no repeats."""
    return _positive_integers(text, "--ranks", "e.g. --ranks 2,4,8")


def parse_pes(text: str) -> tuple[int, ...]:
    """``"8,16"`` -> ``(8, 16)``; each a power of two, no repeats."""
    pes = _positive_integers(text, "--pes", "e.g. --pes 8,16,32")
    odd = [str(p) for p in pes if p & (p - 1) or p > MAX_PES]
    if odd:
        raise UsageError(f"--pes must be powers of two, got {', '.join(odd)} (from 1 to {MAX_PES})")
    return pes


def parse_bits(text: str) -> tuple[int | None, ...]:
    """``"none,8,16"`` -> ``(None, 8, 16)``: ``none`` is float, else a width in [2, 32]."""
    bits: list[int | None] = []
    for item in _split(text, "--bits"):
        if item == FLOAT_BITS:
            bits.append(None)
        elif item.isdigit() and MIN_BITS <= int(item) <= MAX_BITS:
            bits.append(int(item))
        else:
            raise UsageError(f"--bits: '{item}' is neither '{FLOAT_BITS}' nor a width in [{MIN_BITS}, {MAX_BITS}]")
    return _unique(bits, "--bits")


def _positive_integers(text: str, option: str, example: str) -> tuple[int, ...]:
    values = []
    for item in _split(text, option):
        if not item.isdigit() or int(item) < 1:
            raise UsageError(f"{option}: '{item}' is not an integer >= 1 ({example})")
        values.append(int(item))
    return _unique(values, option)


def _split(text: str, option: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(","))
    if not all(items):
        raise UsageError(f"{option}: expected a comma-separated list without empty items, got '{text}'")
    return _unique(items, option)


def _unique(items, option: str) -> tuple:
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise UsageError(f"{option}: {', '.join(repeated)} given more than once")
    return tuple(items)


@dataclass(frozen=True)
class ExploreOptions:
    """What to sweep and how to measure it."""

    methods: tuple[str, ...] = ("dense", "tt", "bt", "ht")
    ranks: tuple[int, ...] = (2, 4, 8)
    bits: tuple[int | None, ...] = (None, 8, 16)
    pes: tuple[int, ...] = (16,)
    weights: str = "all"
    labels_key: str | None = None
    output: str | None = None
    finetune: bool = False
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS
    finetune_teacher: str = "auto"
    simulate: bool = False
    synth: str | None = None
    synth_freq: float = 100.0

    def __post_init__(self) -> None:
        if not self.pes or any(p < 1 or p & (p - 1) or p > MAX_PES for p in self.pes):
            raise UsageError(f"--pes must be powers of two, got {', '.join(map(str, self.pes)) or 'none'} "
                             f"(from 1 to {MAX_PES})")
        if self.weights not in WEIGHTS:
            raise UsageError(f"--weights must be one of {', '.join(WEIGHTS)}, got '{self.weights}'")
        if not (self.methods and self.bits and (self.ranks or set(self.methods) == {"dense"})):
            raise UsageError("--methods, --ranks and --bits must each name at least one value")
        if self.finetune_teacher not in FINETUNE_TEACHERS:
            raise UsageError(f"--finetune-teacher must be one of {', '.join(FINETUNE_TEACHERS)}, "
                             f"got {self.finetune_teacher!r}")
        if self.finetune_epochs < 1:
            raise UsageError(f"--finetune-epochs must be >= 1, got {self.finetune_epochs}")
        if self.synth is not None:
            from ..runtime.synthesis import device_named

            device_named(self.synth)
        if not self.synth_freq > 0:
            raise UsageError(f"--synth-freq must be a positive clock in MHz, got {self.synth_freq}")

    def measurement(self) -> dict[str, object]:
        """The options that change a point's numbers other than the point itself: part of
        the fingerprint that decides whether a stored point may be resumed."""
        return {"weights": self.weights, "labels_key": self.labels_key, "output": self.output,
                "finetune": self.finetune, "finetune_epochs": self.finetune_epochs if self.finetune else None,
                "finetune_teacher": self.finetune_teacher if self.finetune else None,
                "simulate": self.simulate, "synth": self.synth,
                "synth_freq": self.synth_freq if self.synth else None}


@dataclass(frozen=True)
class Point:
    """One point of the sweep: decomposition method and rank, bit width, accelerator lanes."""

    method: str
    rank: int | None
    bits: int | None
    pes: int

    def structure_pipeline(self, options: ExploreOptions, finetune_step: str | None = None) -> str:
        """The float passes: decomposition (unless dense), ``finetune_step`` after it, and
        the contraction order for ``pes`` lanes."""
        passes = ["canonicalize", "dce"]
        if self.method != "dense":
            passes.append(f"decompose{{method={self.method} weights={options.weights} "
                          f"{RANK_OPTION[self.method]}={self.rank} dense-fallback=false}}")
            if finetune_step:
                passes.append(finetune_step)
            passes.append(f"order-contractions{{cost=cycles pes={self.pes}}}")
        return ", ".join(passes)

    @property
    def name(self) -> str:
        """A file name stem that tells the point: ``tt-r4-8bit-p16``, ``dense-float-p16``."""
        rank = "" if self.rank is None else f"-r{self.rank}"
        bits = "float" if self.bits is None else f"{self.bits}bit"
        return f"{self.method}{rank}-{bits}-p{self.pes}"

    def label(self) -> str:
        rank = "" if self.rank is None else f" r={self.rank}"
        return f"{self.method}{rank} {bits_text(self.bits)} P={self.pes}"

    def to_json(self) -> dict[str, object]:
        return {"method": self.method, "rank": self.rank, "bits": self.bits, "pes": self.pes}


def sweep_points(options: ExploreOptions) -> list[Point]:
    """Methods × ranks × P × bits in the order given (dense: no rank)."""
    return [Point(method, rank, bits, pes)
            for method in options.methods
            for rank in ((None,) if method == "dense" else options.ranks)
            for pes in options.pes
            for bits in options.bits]


def bits_text(bits: int | None) -> str:
    return "float" if bits is None else f"{bits}-bit"


def bits_csv(bits: int | None) -> str:
    return FLOAT_BITS if bits is None else str(bits)
