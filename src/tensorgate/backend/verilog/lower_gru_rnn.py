"""Lowering of quantized GRU and RNN layers: their GEMMs and the GRU/RNN cell unit's GCELL
instructions (``accel/tg_gru_rnn_cell.sv``), in the arithmetic of ``GRUProgram`` and
``RNNProgram`` (``fixedpoint/programs.py``).

Per direction the input projection of all steps runs first (``Lowering._projection``), or,
for a forward layer whose input is streamed, each step's as the step arrives; then, per
time step, GEMMs give each gate's pre-activation with its epilogue (``gx`` term,
format, clip) and one GCELL per batch row does the elementwise rest:

* RNN: ``pre = clip(narrow(R·h + gx, P))`` by GEMM, ``h' = f(pre)`` in the cell;
* GRU with ``linear_before_reset``: one application of R gives ``pre_z``, ``pre_r`` and
  ``rn = narrow(R_h·h + Rb_h, RN)``; the cell forms ``pre_h`` from ``r ⊙ rn + gx_h``;
* GRU without it: ``pre_z`` and ``pre_r`` by GEMM, a RESET cell writes ``rh = narrow(r ⊙ h, H)``,
  a GEMM gives ``pre_h = clip(narrow(R_h·rh + gx_h, PT))``, and the UPDATE cell reads it.

``GatedCellLowering`` is a part of ``lower.Lowering`` (a mixin): it uses that class's
allocator, map applications and instruction emission.
"""

from __future__ import annotations

import numpy as np

from ...fixedpoint.activations import ActivationUnit
from ...fixedpoint.formats import code_max, code_min
from ...fixedpoint.programs import GRUProgram, RecurrentProgram, RNNProgram
from ...ir.core import Op
from . import isa
from .image import Epilogue, Grid, affine
from .isa import LoweringError, Narrowing

GCELL_CYCLES_PER_ELEMENT = {isa.GC_RNN: 2, isa.GC_RESET: 2, isa.GC_UPDATE: 5}
"""Cycles per element of each GCELL mode: the cell unit's initiation interval."""
GCELL_FIXED_CYCLES = {isa.GC_RNN: 18, isa.GC_RESET: 25, isa.GC_UPDATE: 48}
"""The last element's schedule after its start, and the start and finish (the length read aside)."""


def sweep(program, d: int, steps: int) -> range:
    """The time steps direction ``d`` of a recurrent layer takes, in order."""
    return range(steps - 1, -1, -1) if program.reverse[d] else range(steps)


class GatedCellLowering:
    """The GRU and RNN op lowerings of ``lower.Lowering``."""

    def _gru(self, op: Op, args) -> list[np.ndarray]:
        program = GRUProgram(op)
        q = program.quant
        fields = self._gated_fields(program, (q.sigmoid, q.tanh))
        n = self.narrowing(q.gate.frac + (q.candidate.frac if program.lbr else 0), q.gates_x.frac, q.pre_tanh,
                           clip=program.clip[q.pre_tanh])
        update = self._narrowing_fields(n, isa.GC_N_PROD_SHIFT, isa.GC_N_GX_SHIFT, isa.GC_N_SHIFT, isa.GC_N_LO,
                                        isa.GC_N_HI)
        h = self.narrowing(2 * q.gate.frac, q.gate.frac + q.hidden.frac, q.hidden)
        update.update(self._narrowing_fields(h, isa.GC_H_N_SHIFT, isa.GC_H_Z_SHIFT, isa.GC_H_SHIFT, isa.GC_H_LO,
                                             isa.GC_H_HI))
        update.update(fields)
        update[isa.GC_FLAGS] |= (isa.GC_UPDATE << isa.GC_MODE_SHIFT) | (isa.GC_LINEAR_BEFORE_RESET if program.lbr
                                                                          else 0)
        reset = self._narrowing_fields(self.narrowing(q.gate.frac + q.hidden.frac, None, q.hidden), None, None,
                                       isa.GC_H_SHIFT, isa.GC_H_LO, isa.GC_H_HI)
        reset.update(fields)
        reset[isa.GC_FLAGS] |= isa.GC_RESET << isa.GC_MODE_SHIFT
        return self._recurrence(op, program, args, lambda *step: self._gru_step(program, update, reset, *step))

    def _rnn(self, op: Op, args) -> list[np.ndarray]:
        program = RNNProgram(op)
        q = program.quant
        if q.activation is None:
            fields = self._gated_fields(program, ())
            fields[isa.GC_FLAGS] |= isa.GC_RELU
        else:
            fields = self._gated_fields(program, (q.activation,))
        return self._recurrence(op, program, args, lambda *step: self._rnn_step(program, fields, *step))

    # -------------------------------------------------------------- steps

    def _gru_step(self, program: GRUProgram, update: dict, reset: dict, d: int, h: Grid, gx: list[Grid],
                  recurrent_bias: Grid | None, cell) -> None:
        q = program.quant
        gx_frac, ps_clip = q.gates_x.frac, program.clip[q.pre_sigmoid]
        key = f"{program.name}.d{d}"
        terms = {0: (gx[0], gx_frac, q.pre_sigmoid, ps_clip), 1: (gx[1], gx_frac, q.pre_sigmoid, ps_clip)}
        if program.lbr:
            bias_frac = q.recurrent_bias.frac if recurrent_bias is not None else 0
            terms[2] = (recurrent_bias, bias_frac, q.candidate, None)
        pre = self._gate_blocks(program, d, h, program.zr_maps, terms, f"{key}.r")
        if not program.lbr:
            rh = self.grid(h.rows, h.cols)
            for b in range(h.rows):
                cell(reset, isa.GC_RESET, {isa.GC_PRE: pre[1].base + b * pre[1].row_stride,
                                           isa.GC_H: h.base + b * h.row_stride, isa.GC_Y: rh.base + b * rh.row_stride})
            candidate = {program.candidate_block: (gx[2], gx_frac, q.pre_tanh, program.clip[q.pre_tanh])}
            pre[2] = self._gate_blocks(program, d, rh, program.h_maps, candidate, f"{key}.c")[program.candidate_block]
        for b in range(h.rows):
            rows = {isa.GC_PRE: pre[0].base + b * pre[0].row_stride, isa.GC_PRE_R: pre[1].base + b * pre[1].row_stride,
                    isa.GC_CANDIDATE: pre[2].base + b * pre[2].row_stride,
                    isa.GC_GX_H: gx[2].base + b * gx[2].row_stride}
            cell(update, isa.GC_UPDATE, rows, b)

    def _rnn_step(self, program: RNNProgram, fields: dict, d: int, h: Grid, gx: list[Grid], _bias, cell) -> None:
        q = program.quant
        terms = {0: (gx[0], q.gates_x.frac, q.pre, program.clip[q.pre])}
        pre = self._gate_blocks(program, d, h, None, terms, f"{program.name}.d{d}.r")[0]
        for b in range(h.rows):
            cell(fields, isa.GC_RNN, {isa.GC_PRE: pre.base + b * pre.row_stride}, b)

    # -------------------------------------------------------------- the recurrence

    def _recurrence(self, op: Op, program: RecurrentProgram, args, step) -> list[np.ndarray]:
        """States, projection and the sweep over directions and time; ``step`` emits one
        time step's GEMMs and cells: ``step(d, h, gx, recurrent_bias, cell)`` where ``cell``
        emits a GCELL (``cell(fields, mode, rows[, b])``: ``b`` the batch row whose h, y
        and length the cell updates)."""
        x, lens, h0 = (list(args) + [None] * 3)[:3]
        if program.layout:
            x = np.swapaxes(x, 0, 1)
            h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
        steps, batch, _ = x.shape
        dirs, hidden = program.dirs, program.hidden
        self.image.steps = max(self.image.steps, steps)
        h_region = self._initial_state(h0, (dirs, batch, hidden))
        keeps_y, y_region, x_grid = self._sequence_regions(op, program, x, hidden)
        for d in range(dirs):
            gx = self._sequence_projection(program, d, x_grid, f"{program.name}.d{d}")
            h_grid = Grid(h_region + d * batch * hidden, batch, hidden, hidden, 1)
            bias = getattr(program, "recurrent_bias", None)
            bias_grid = None if bias is None else self.constant_grid(bias[d][0], batch)
            for t in sweep(program, d, steps):

                def cell(fields, mode, rows, b=None, t=t, d=d):
                    words = dict(fields)
                    words.update(rows)
                    if b is not None:
                        words[isa.GC_FLAGS] |= isa.GC_HAS_LEN if lens is not None else 0
                        words[isa.GC_FLAGS] &= ~0 if keeps_y else ~isa.GC_WRITE_Y
                        words.update({isa.GC_H: h_grid.base + b * hidden, isa.GC_T: t,
                                      isa.GC_Y: y_region + ((t * dirs + d) * batch + b) * hidden,
                                      isa.GC_LEN: int(lens[b]) if lens is not None else 0})
                    self.emit(isa.cell(words, isa.GCELL), hidden * GCELL_CYCLES_PER_ELEMENT[mode] + GCELL_FIXED_CYCLES[mode])

                gx_t = self._step_projection(program, d, gx, t, batch, x.shape[-1], f"{program.name}.d{d}")
                step(d, h_grid, gx_t, bias_grid, cell)
        y = y_region + np.arange(steps * dirs * batch * hidden, dtype=np.int64).reshape(steps, dirs, batch, hidden)
        h = h_region + np.arange(dirs * batch * hidden, dtype=np.int64).reshape(dirs, batch, hidden)
        if program.layout:
            return [np.transpose(y, (2, 0, 1, 3)), np.swapaxes(h, 0, 1)]
        return [y, h]

    def _initial_state(self, initial: np.ndarray | None, shape: tuple[int, int, int]) -> int:
        """A state region of ``shape`` (directions, batch, hidden): zeros, or a copy of ``initial``."""
        region = self.alloc(int(np.prod(shape)))
        if initial is not None:
            source = initial if affine(initial) is not None else self.copy(initial)
            base, strides = affine(source)
            dims = [(shape[a], (strides[a], int(np.prod(shape[a + 1:])), 0)) for a in (2, 1, 0)]
            self.elementwise(dims, base, region, None, self.narrowing(0, None, None))
        return region

    def _gate_blocks(self, program: RecurrentProgram, d: int, x: Grid, maps: range | None,
                     terms: dict[int, tuple], key: str) -> dict[int, Grid]:
        """Gate blocks of the direction's recurrent maps (those of ``maps``, or all) applied
        to ``x``, numbered as ``RecurrentProgram.recurrent`` numbers them; ``terms`` gives,
        per wanted block, its epilogue's ``(init, init_frac, fmt, clip)``."""
        hidden = program.hidden
        results: dict[int, Grid] = {}
        first = 0
        for index in (maps if maps is not None else range(len(program.r[d]))):
            imap = program.r[d][index]
            count = imap.map.out_dim // hidden
            wanted = [block for block in sorted(terms) if first <= block < first + count]
            if wanted:
                epilogues = [Epilogue((block - first) * hidden, (block - first + 1) * hidden, *terms[block])
                             for block in wanted]
                grids = self.apply_map(imap, x, program.quant.hidden.frac, epilogues, f"{key}{index}")
                results.update(zip(wanted, grids))
            first += count
        return results

    # -------------------------------------------------------------- instruction fields

    def _gated_fields(self, program: RecurrentProgram, units: tuple[ActivationUnit, ...]) -> dict[int, int]:
        """The fields every GCELL of ``program`` shares: sizes, flags, the units' words."""
        outputs = {unit.output for unit in units} or {program.quant.hidden}
        if len(outputs) != 1:
            raise LoweringError(f"{program.name}: the cell's units write different formats {sorted(map(str, outputs))}")
        (output,) = outputs
        self.stores(output.width)
        fields = {isa.GC_HIDDEN: program.hidden, isa.GC_ONE: getattr(program, "one", 0),
                  isa.GC_UNIT_LO: code_min(output), isa.GC_UNIT_HI: code_max(output),
                  isa.GC_FLAGS: (isa.GC_ROUND_EVEN if self.rounding == "nearest-even" else 0) | isa.GC_WRITE_Y}
        for u, unit in enumerate(units):
            fields.update({isa.GC_UNITS + 8 * u + i: w for i, w in enumerate(self._unit_words(unit))})
        return fields

    def _unit_words(self, unit: ActivationUnit) -> tuple[int, ...]:
        """An activation unit's configuration words (``tg_act_pipe``), its table stored once."""
        if unit.rounding != self.rounding:
            raise LoweringError(f"{unit.describe()} rounds {unit.rounding}, the module {self.rounding}")
        return (int(unit.kind == "pwl"), unit.lo, unit.span - 1, unit.index_shift, unit.offset_drop,
                unit.guard_bits, self._unit_base(unit))

    @staticmethod
    def _narrowing_fields(narrowing: Narrowing, acc_word: int | None, init_word: int | None, shift_word: int,
                          lo_word: int, hi_word: int) -> dict[int, int]:
        """A narrowing's shifts and bounds at the GCELL word positions given."""
        if not (0 <= narrowing.acc_shift < 64 and 0 <= narrowing.init_shift < 64 and -128 <= narrowing.shift < 128):
            raise LoweringError(f"alignment shifts {narrowing} are beyond the cell unit's range")
        fields = {shift_word: narrowing.shift, lo_word: narrowing.lo, hi_word: narrowing.hi}
        if acc_word is not None:
            fields[acc_word] = narrowing.acc_shift
        if init_word is not None:
            fields[init_word] = narrowing.init_shift
        return fields


def is_gated_cell_op(op: Op) -> bool:
    """Whether ``op`` is a quantized GRU or RNN layer (run by the GRU/RNN cell unit)."""
    return op.kind in ("gru", "rnn") and op.attrs.get("quant") is not None

