"""The ``verilog`` target: RTL, memory images, program and manifest in an artifact directory.

The accelerator runs the module's core (``lower.accelerator_stages``); host regions
(``host`` ops, run in onnxruntime) and the ops it has no hardware for run on the host
before and after it (a host prefix and a host suffix around the core; an op between two
parts of the core is refused).  The IR written is the whole module, so ``run`` and
``simulate`` compute the same thing.  A module with GRU or RNN layers is refused
(``lower.check_supported``): the PE array has no cell unit for them yet, and running the
recurrent core on the host would leave the accelerator a head.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ...errors import TensorgateError, VerifyError
from ...fixedpoint.quant_attrs import is_quantized
from ...ir.core import Module
from ...ir.serialize import save_module
from ..artifact import IR_FILE, MANIFEST, build_manifest, write_artifact
from .hardware import AccelConfig, accel_sources, module_code_width
from .image import Image
from .lower import accelerator_stages, check_supported, lower

STATIC_DIM = 1
"""Size bound to a symbolic dimension for the images written at compile time (the
simulator lowers again for the shapes it is given)."""


def static_shapes(module: Module) -> dict[str, tuple[int, ...]]:
    return {v.name: tuple(d if isinstance(d, int) else STATIC_DIM for d in v.type.shape) for v in module.inputs}


def _hex(words, width: int) -> str:
    mask = (1 << width) - 1
    digits = (width + 3) // 4
    return "".join(f"{int(w) & mask:0{digits}x}\n" for w in words)


def write_verilog_artifact(module: Module, out_dir: Path, pipeline: str, source: str, pes: int,
                           report: dict | None = None) -> Path:
    """``compile --target verilog --pes P``: lower ``module`` and write the artifact
    (``report``: see ``build_manifest``)."""
    check_supported(module)
    if not is_quantized(module):
        raise TensorgateError("the verilog target needs a quantized module; add 'quantize' to the pipeline "
                              "(e.g. -p 'order-contractions,quantize')")
    try:
        core = accelerator_stages(module).core
    except VerifyError as exc:
        raise TensorgateError(f"the verilog target cannot run this partition: {exc}") from None
    image = lower(core, pes, static_shapes(core))
    config = AccelConfig.for_image(image, module_code_width(core))

    def fill(tmp: Path) -> None:
        save_module(module, tmp / IR_FILE)
        rtl = tmp / "rtl"
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
    (directory / "program.hex").write_text(_hex(image.program_words(), 64))
    (directory / "weights.hex").write_text(_hex(image.weight_words(), config.code_width))
    (directory / "scratch.hex").write_text(_hex(image.scratch, 64))
    (directory / "tables.hex").write_text(_hex(image.tables, 64))


def hardware_summary(image: Image, config: AccelConfig) -> dict:
    bits = config.memory_bits()
    return {"pes": config.pes, "top": "tg_accel", "parameters": config.parameters(),
            "memory_bits": sum(bits.values()), "memory_bits_by_memory": bits,
            "used_words": {"program": len(image.program), "weight_rows": len(image.weight_rows),
                           "scratchpad": len(image.scratch), "activation_tables": len(image.tables)},
            "macs": image.macs, "steps": image.steps, "cycles_estimate": image.cycles_estimate,
            "mac_bound_cycles": -(-image.macs // config.pes),
            "instructions": len(image.program), "inputs": {k: int(np.size(v)) for k, v in image.inputs.items()}}
