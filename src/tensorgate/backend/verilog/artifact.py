"""The ``verilog`` target: RTL, memory images, program and manifest in an artifact directory.

The accelerator runs the module's core (``lower.accelerator_stages``); host regions
(``host`` ops, run in onnxruntime) and the ops it has no hardware for run on the host
before and after it (a host prefix and a host suffix around the core; an op between two
parts of the core is refused).  The IR written is the whole module, so ``run`` and
``simulate`` compute the same thing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ...errors import TensorgateError, VerifyError
from ...fixedpoint.quant_attrs import is_quantized
from ...ir.core import Module
from ...ir.serialize import save_module
from ..artifact import IR_FILE, MANIFEST, build_manifest, write_artifact
from .hardware import AccelConfig, accel_sources, module_code_width
from .image import Image
from .lower import accelerator_stages, lower

STATIC_DIM = 1
"""Size bound to a symbolic dimension for the images written at compile time (the
simulator lowers again for the shapes it is given)."""


def static_shapes(module: Module) -> dict[str, tuple[int, ...]]:
    return {v.name: tuple(d if isinstance(d, int) else STATIC_DIM for d in v.type.shape) for v in module.inputs}


RTL_DIR_NAME = "rtl"
IMAGE_FILES = {"program": "program.hex", "weights": "weights.hex", "scratch": "scratch.hex", "tables": "tables.hex"}
"""The $readmemh image of each memory, by the ``MemoryImages`` field it fills."""


@dataclass(frozen=True)
class MemoryImages:
    """The words loaded into each memory before a run, as unsigned ``width``-bit codes:
    what the artifact's .hex files hold and what the simulator loads."""

    program: np.ndarray
    weights: np.ndarray
    scratch: np.ndarray
    tables: np.ndarray
    code_width: int

    @classmethod
    def of(cls, image: Image, code_width: int) -> "MemoryImages":
        words = {"program": image.program_words(), "weights": image.weight_words(), "scratch": image.scratch,
                 "tables": image.tables}
        return cls(**{name: _unsigned(values, cls.width(name, code_width)) for name, values in words.items()},
                   code_width=code_width)

    @staticmethod
    def width(memory: str, code_width: int) -> int:
        """Bits per word of ``memory``: a weight is one code, every other word 64 bits."""
        return code_width if memory == "weights" else 64

    def memories(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in IMAGE_FILES}

    def differing(self, other: "MemoryImages") -> list[str]:
        """The memories whose words differ between the two."""
        return [name for name, words in self.memories().items() if not np.array_equal(words, getattr(other, name))]


def _unsigned(values, width: int) -> np.ndarray:
    """Integers (negatives as two's complement) as their low ``width`` bits."""
    array = np.asarray(values)
    words = array.astype(np.uint64) if array.dtype.kind == "u" else array.astype(np.int64).view(np.uint64)
    return words & np.uint64((1 << width) - 1) if width < 64 else words


def _hex(words, width: int) -> str:
    digits = (width + 3) // 4
    return "".join(f"{int(w):0{digits}x}\n" for w in words)


def write_verilog_artifact(module: Module, out_dir: Path, pipeline: str, source: str, pes: int,
                           report: dict | None = None) -> Path:
    """``compile --target verilog --pes P``: lower ``module`` and write the artifact
    (``report``: see ``build_manifest``)."""
    if not is_quantized(module):
        raise TensorgateError("the verilog target needs a quantized module; add 'quantize' to the pipeline "
                              "(e.g. -p 'order-contractions,quantize')")
    try:
        core = accelerator_stages(module).core
    except VerifyError as exc:
        raise TensorgateError(f"the verilog target cannot run this partition: {exc}") from None
    image = lower(core, pes, static_shapes(core))
    config = AccelConfig.sized(image, module_code_width(core))

    def fill(tmp: Path) -> None:
        save_module(module, tmp / IR_FILE)
        rtl = tmp / RTL_DIR_NAME
        rtl.mkdir()
        for path in accel_sources():
            shutil.copyfile(path, rtl / path.name)
        write_images(tmp, image, config)
        manifest = build_manifest(module, "verilog", pipeline, source, report)
        manifest["hardware"] = hardware_summary(image, config)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    return write_artifact(out_dir, fill)


def write_images(directory: Path, image: Image, config: AccelConfig) -> None:
    """$readmemh files: program (64-bit words, NW per instruction), weights (one code per
    word, P per row), scratchpad (constants and zeroed regions), activation tables."""
    images = MemoryImages.of(image, config.code_width)
    for name, words in images.memories().items():
        (directory / IMAGE_FILES[name]).write_text(_hex(words, MemoryImages.width(name, config.code_width)))


def artifact_sources(directory: Path, listed: Iterable[str]) -> list[Path]:
    """The RTL files of the artifact at ``directory`` among the files its manifest lists
    (``listed``, relative names), in compile order with the top last: every file of the
    package's accelerator must be there, and any other listed .sv file in ``rtl/`` is built
    too (a simulation builds what a user synthesizes)."""
    rtl = sorted(name.removeprefix(f"{RTL_DIR_NAME}/") for name in listed
                 if name.startswith(f"{RTL_DIR_NAME}/") and name.endswith(".sv") and name.count("/") == 1)
    names = [path.name for path in accel_sources()]
    missing = [name for name in names if name not in rtl]
    if missing:
        raise TensorgateError(f"the artifact '{directory}' has no {RTL_DIR_NAME}/{', '.join(missing)}; "
                              "compile it again")
    return [Path(directory) / RTL_DIR_NAME / name for name in [n for n in rtl if n not in names] + names]


def read_images(directory: Path, code_width: int) -> MemoryImages:
    """The memory images of the artifact at ``directory`` (the inverse of ``write_images``);
    a missing file or a line that is not a word of its memory's width is refused by name."""
    return MemoryImages(**{name: _read_hex(Path(directory) / file, MemoryImages.width(name, code_width))
                           for name, file in IMAGE_FILES.items()}, code_width=code_width)


def _read_hex(path: Path, width: int) -> np.ndarray:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise TensorgateError(f"the artifact has no {path.name} ({path}); compile it again") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TensorgateError(f"cannot read the artifact's {path.name} ({path}): {exc}") from None
    digits = (width + 3) // 4
    words = np.zeros(len(lines), np.uint64)
    for number, line in enumerate(lines):
        try:
            value = int(line, 16) if 0 < len(line) <= digits and line.isalnum() else -1
        except ValueError:
            value = -1
        if not 0 <= value < 1 << width:
            raise TensorgateError(f"the artifact's {path.name} line {number + 1} is not a {width}-bit hex word: "
                                  f"{line[:40]!r} ({path})")
        words[number] = value
    return words


def hardware_summary(image: Image, config: AccelConfig) -> dict:
    bits = config.memory_bits()
    return {"pes": config.pes, "top": "tg_accel", "parameters": config.parameters(),
            "memory_bits": sum(bits.values()), "memory_bits_by_memory": bits,
            "memory_estimate": config.memory_estimate(), "memory_choices": config.memory_choices(),
            "used_words": {"program": len(image.program), "weight_rows": len(image.weight_rows),
                           "scratchpad": len(image.scratch), "activation_tables": len(image.tables)},
            "macs": image.macs, "steps": image.steps, "cycles_estimate": image.cycles_estimate,
            "mac_bound_cycles": -(-image.macs // config.pes),
            "instructions": len(image.program), "inputs": {k: int(np.size(v)) for k, v in image.inputs.items()}}
