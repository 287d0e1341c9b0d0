"""Lowering a quantized module to the accelerator's program and memory images.

Every IR value lives in the scratchpad and is known to the compiler only as an array of
word addresses with the value's shape.  Data-movement ops (reshape, transpose, slice,
squeeze, ...) run the interpreter's own kernels on those address arrays, so they cost
nothing at run time: a consumer reads its operand through an affine address pattern
(base + Σ index·stride).  Only an operand that is not affine (or a map input that must be
zero-padded) is copied, by one elementwise instruction.

A map application (``fixedpoint.maps.IntegerMap``) becomes one GEMM per step of its
contraction plan: the data operand is A (rows = its labels the step keeps, K = the labels
it sums), the weight tensor is B (columns = its kept labels), laid out by the compiler in
the weight memory as P-code rows.  Steps before the last narrow to their calibrated
formats; the last step either applies the consumer's epilogue directly (the bias or gate
term, the output format, the clip) or, for BT sums and gate-split outputs, stays a wide
accumulator that elementwise instructions finish.  The arithmetic is exactly the golden
model's (``fixedpoint/programs.py``), so the simulated outputs equal it bit for bit.

A quantized ``add`` of two values (a residual connection) is one elementwise instruction
whose X and init are the two operands, aligned and narrowed as the golden model's
``ElementwiseProgram``; ``relu`` is an elementwise move clamped below at 0.  Ops without
hardware here (``mul``, a head's ``sigmoid``/``tanh``) run on the host before or after
the program (``ir.stages``).

One ``Lowering`` object does all of it: the op lowerings, the map applications and the
instruction emission share its scratchpad regions, weight rows and program, so they
stay one class; the data it produces is ``image``'s.  Every value gets a region of its
own; ``allocate.allocate_scratchpad`` then packs the regions by liveness, so the
scratchpad holds what is live at once, not everything the program ever computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ...fixedpoint.activations import MAX_OFFSET_BITS, ActivationUnit
from ...fixedpoint.formats import code_max, code_min, requantize
from ...fixedpoint.maps import IntegerMap
from ...fixedpoint.programs import ElementwiseProgram, GRUProgram, LinearProgram, LSTMProgram, RNNProgram
from ...interpreter import KERNELS
from ...ir.core import Module, Op
from ...ir.ops import DATA_MOVEMENT
from ...ir.stages import Stages, split_stages
from ...ir.types import FixedType
from . import isa
from .allocate import Region, allocate_scratchpad
from .hardware import module_code_width, storage_width
from .image import Epilogue, Grid, Image, adjacent_groups, affine, astuple_tail
from .isa import Loops, LoweringError, Narrowing
from .lower_gru_rnn import GatedCellLowering, is_gated_cell_op, sweep

CELL_CYCLES_PER_ELEMENT = 6
FETCH_CYCLES = isa.WORDS + 1
"""A word a cycle, one more for the last: prefetched while the instruction before runs."""
TAKE_CYCLES = 2
"""Taking the prefetched instruction and decoding it."""


STREAMING_PROGRAMS = {"lstm": LSTMProgram, "gru": GRUProgram, "rnn": RNNProgram}
"""The recurrent layers whose input may be streamed a time step at a time (``_streaming_consumer``)."""


class Lowering(GatedCellLowering):
    """Lowers one quantized module for ``pes`` lanes and concrete input ``shapes`` (GRU and
    RNN layers: ``lower_gru_rnn``)."""

    def __init__(self, module: Module, pes: int, shapes: dict[str, tuple[int, ...]]):
        if pes < 1 or pes & (pes - 1):
            raise LoweringError(f"--pes must be a power of two, got {pes}")
        self.module = module
        self.image = Image(pes, groups=isa.row_groups(pes), drain_lanes=isa.drain_lanes(pes),
                           banks=isa.scratch_banks(pes))
        self.shapes = shapes
        self.rounding = "nearest-even"
        self.unit_bases: dict[tuple[int, ...], int] = {}
        self.weight_bases: dict[tuple, int] = {}
        self.constant_bases: dict[bytes, int] = {}
        self.regions: list[Region] = []
        self.streamed_ops: dict[int, str] = {}
        self.input_pack = isa.input_pack(storage_width(module_code_width(module)), self.image.drain_lanes,
                                         self.image.banks)  # the build's (AccelConfig.input_pack), for the estimate
        self.last_run = 0
        self.stream_queue: list[int] = []  # the streamed input's time steps still to arm, in the sweeps' order
        self.armed_step: tuple[Grid, int, int] | None = None  # the armed step's region, the estimate at its INPUT, t
        self.input_wait: int | None = None  # the cycles the next instruction waits for a streamed step

    # -------------------------------------------------------------- memories

    def alloc(self, size: int, values: np.ndarray | None = None) -> int:
        """A scratchpad region of ``size`` words (zeros, or ``values``) of its own; the
        allocator pass gives dead regions' words to later ones."""
        base = len(self.image.scratch)
        if values is not None:
            self.stores(_bits(np.asarray(values, np.int64)))
        self.image.scratch.extend([0] * size if values is None else [int(v) for v in np.ravel(values)])
        self.regions.append(Region(base, size, values is not None))
        return base

    def stores(self, bits: int) -> None:
        """Note that the scratchpad holds ``bits``-bit words (its word width is the widest)."""
        self.image.scratch_width = max(self.image.scratch_width, bits)

    def weights(self, rows: np.ndarray) -> int:
        """The weight-memory row where ``rows`` (P codes each) start; a matrix stored before
        (the recurrent weights of every time step) is stored once."""
        key = (rows.shape, rows.tobytes())
        if key not in self.weight_bases:
            self.weight_bases[key] = len(self.image.weight_rows)
            self.image.weight_rows.extend(rows)
        return self.weight_bases[key]

    def grid(self, rows: int, cols: int) -> Grid:
        return Grid(self.alloc(rows * cols), rows, cols, cols, 1)

    def constant_grid(self, values: np.ndarray, rows: int) -> Grid:
        """A row vector of constants read by every one of ``rows`` rows (row stride 0);
        one region per distinct vector (the biases of every time step)."""
        key = np.asarray(values, np.int64).tobytes()
        if key not in self.constant_bases:
            self.constant_bases[key] = self.alloc(values.size, values)
        return Grid(self.constant_bases[key], rows, values.size, 0, 1)

    def emit(self, words: np.ndarray, cycles: int) -> None:
        """Append an instruction that runs ``cycles``; the first after a streamed step's
        arming waits for its codes (``_stream_step``)."""
        if self.input_wait is not None:
            words, cycles, self.input_wait = isa.waits_for_input(words), cycles + self.input_wait, None
        self.image.program.append(words)
        self.image.cycles_estimate += TAKE_CYCLES + max(0, FETCH_CYCLES - self.last_run - 1) + cycles
        self.last_run = cycles

    def narrowing(self, acc_frac: int, init_frac: int | None, fmt: FixedType | None, target_frac: int | None = None,
                  clip: int | None = None) -> Narrowing:
        """Align accumulator and init to their largest fraction-bit count (exact), then
        round to ``fmt`` and clamp to its range and the clip, or keep a wide result at
        ``target_frac``."""
        fracs = [acc_frac] + ([init_frac] if init_frac is not None else [])
        frac = max(fracs + ([target_frac] if target_frac is not None else []))
        init_shift = frac - init_frac if init_frac is not None else 0
        even = self.rounding == "nearest-even"
        if fmt is None:
            if target_frac is not None:  # a wide accumulator, not a move of stored codes
                self.stores(64)
            return Narrowing(frac - acc_frac, init_shift, 0, isa.WIDE_LO, isa.WIDE_HI, even)
        lo, hi = code_min(fmt), code_max(fmt)
        if clip is not None:
            lo, hi = max(lo, -clip), min(hi, clip)
        self.stores(_bits(np.array([lo, hi])))
        return Narrowing(frac - acc_frac, init_shift, frac - fmt.frac, lo, hi, even)

    # -------------------------------------------------------------- instructions

    def gemm(self, a_base: int, row_dims, k_dims, col_dims, out_base: int, init_base: int | None,
             matrix: np.ndarray, narrowing: Narrowing) -> None:
        """``O = narrow(A·B, I)``.  ``row_dims``: ``(count, (a, out, init strides))``,
        ``k_dims``: ``(count, a stride)``, ``col_dims``: ``(count, (out, init strides))``, all
        innermost first; ``matrix`` is ``B[K, C]`` with K and C flattened outermost first."""
        rows = math.prod(c for c, _ in row_dims)
        depth, columns = matrix.shape
        k_m = isa.merge_dims([(c, (s,)) for c, s in k_dims])
        plan = self._plan_for(row_dims, k_dims, col_dims, init_base is not None)
        lanes, groups = plan.lanes, plan.groups
        padded = np.zeros((depth, plan.tiles * plan.group_lanes), np.int64)
        padded[:, :columns] = matrix
        b_base = self.weights(np.concatenate([
            np.tile(padded[:, tile * plan.group_lanes:(tile + 1) * plan.group_lanes], (1, groups))
            for tile in range(plan.tiles)]))
        self.image.code_width = max(self.image.code_width, _bits(matrix))
        a_loops = [(c, s[0]) for c, s in k_m] + ([(plan.tiles, 0)] if plan.tiles > 1 else []) \
            + [(c, s[0]) for c, s in plan.rows]
        words = isa.gemm(Loops(a_base, tuple(a_loops)), Loops(out_base, tuple(plan.walk(1))),
                         None if init_base is None else Loops(init_base, tuple(plan.walk(2))),
                         b_base, depth, plan.tiles, rows, columns, narrowing, lanes)
        self.image.macs += rows * depth * columns
        self.emit(words, plan.cycles)

    def _plan_for(self, row_dims, k_dims, col_dims, init: bool) -> GemmPlan:
        """The plan of a GEMM over ``gemm``'s unmerged loops."""
        k_m = isa.merge_dims([(c, (s,)) for c, s in k_dims])
        return self._gemm_plan(isa.merge_dims(list(row_dims)), len(k_m), isa.merge_dims(list(col_dims)),
                               math.prod(c for c, _ in k_dims), math.prod(c for c, _ in col_dims), init)

    def _gemm_plan(self, row_m, k_loops: int, col_m, depth: int, columns: int, init: bool) -> GemmPlan:
        """The fastest way the build's lanes, row groups and drain lanes run a GEMM whose
        walks stay within the address generators' loops and whose parallel scratchpad
        accesses of a cycle fall in distinct banks (``GemmPlan``)."""
        image = self.image
        plans = [GemmPlan(image.pes, depth, columns, row_m, col_m)]
        groups = 2
        while groups <= image.groups:
            for index, (count, _) in enumerate(row_m):
                if count % groups == 0:
                    plans += [GemmPlan(image.pes, depth, columns, row_m, col_m, groups, index, interleaved)
                              for interleaved in (True, False)]
            groups *= 2
        drained = []
        for plan in plans:
            drain = 1
            while drain <= image.drain_lanes:
                drained.append(replace(plan, drain=drain))
                drain *= 2
        fitting = [plan for plan in drained if plan.fits(k_loops, image.banks, init)] or plans[:1]
        return min(fitting, key=lambda plan: (plan.cycles, plan.groups, plan.drain))

    def elementwise(self, dims, x_base: int, out_base: int, init_base: int | None, narrowing: Narrowing) -> None:
        """``O = narrow(X, I)`` over ``dims``: ``(count, (x, out, init strides))``, innermost first."""
        merged = isa.merge_dims(list(dims))
        count = math.prod(c for c, _ in merged)
        words = isa.elementwise(Loops(x_base, tuple((c, s[0]) for c, s in merged)),
                                Loops(out_base, tuple((c, s[1]) for c, s in merged)),
                                None if init_base is None else Loops(init_base, tuple((c, s[2]) for c, s in merged)),
                                narrowing)
        self.emit(words, count + 4)

    def copy(self, addresses: np.ndarray) -> np.ndarray:
        """Copy an operand into a fresh contiguous region; its new addresses.  The operand
        must be affine once every axis is split into its prime factors (a reshape of a
        transposed value is)."""
        shape = addresses.shape
        refined = tuple(f for size in shape for f in _prime_factors(size))
        fit = affine(addresses.reshape(refined))
        if fit is None:
            raise LoweringError("an operand's elements are not an affine address pattern (a gather or "
                                "concatenation of separately stored values); the accelerator cannot read it")
        base, strides = fit
        size = int(np.prod(shape))
        out = self.alloc(size)
        out_strides = np.cumprod((1,) + refined[::-1])[:-1][::-1]
        dims = [(refined[a], (strides[a], int(out_strides[a]), 0)) for a in reversed(range(len(refined)))]
        self.elementwise(dims, base, out, None, self.narrowing(0, None, None))
        return out + np.arange(size, dtype=np.int64).reshape(shape)

    def rows_grid(self, addresses: np.ndarray, width: int, padded: int | None = None) -> Grid:
        """The operand as a ``rows × width`` grid (copied when it is not affine, or zero-padded
        to ``padded`` columns when asked)."""
        flat = addresses.reshape(-1, width)
        fit = affine(flat)
        if fit is not None and (padded is None or padded == width):
            base, (row_stride, col_stride) = fit
            return Grid(base, flat.shape[0], width, row_stride if flat.shape[0] > 1 else 0, col_stride)
        if fit is None:
            flat = self.copy(addresses).reshape(-1, width)
        base, (row_stride, col_stride) = affine(flat)
        cols = padded if padded is not None else width
        out = self.grid(flat.shape[0], cols)
        self.elementwise([(width, (col_stride, 1, 0)), (flat.shape[0], (row_stride, cols, 0))], base, out.base, None,
                         self.narrowing(0, None, None))
        return out

    # -------------------------------------------------------------- maps

    def apply_map(self, imap: IntegerMap, x: Grid, x_frac: int, epilogues: list[Epilogue], key: str) -> list[Grid]:
        """``W x`` with each epilogue applied to its columns; one result grid per epilogue."""
        if not imap.plans:
            results = []
            for group in adjacent_groups(epilogues):
                merged = Epilogue(group[0].start, group[-1].stop, *astuple_tail(group[0]))
                out = self._dense(imap, x, x_frac, merged)
                results += [out.columns(e.start - merged.start, e.stop - merged.start) for e in group]
            return results
        linear_map = imap.map
        if linear_map.in_pad:
            x = self.rows_grid(x.addresses(), x.cols, padded=int(np.prod(linear_map.in_factors)))
        out_size = int(np.prod(linear_map.out_factors))
        fused = len(imap.plans) == 1 and len(epilogues) == 1 and (epilogues[0].start, epilogues[0].stop) == (
            0, linear_map.out_dim)
        if fused:
            result = self.grid(x.rows, out_size)
            self._network(imap, 0, x, x_frac, result, epilogues[0], None, key)
            return [result.columns(0, linear_map.out_dim)]
        wide = self.grid(x.rows, out_size)
        fracs = [self._last_frac(imap, k, x_frac) for k in range(len(imap.plans))]
        frac = max(fracs)
        for k in range(len(imap.plans)):
            self._network(imap, k, x, x_frac, wide, None, (frac, k > 0), key)
        results = []
        for epilogue in epilogues:
            out = self.grid(x.rows, epilogue.stop - epilogue.start)
            source = wide.columns(epilogue.start, epilogue.stop)
            init = epilogue.init
            dims = [(out.cols, (source.col_stride, 1, init.col_stride if init else 0)),
                    (out.rows, (source.row_stride, out.cols, init.row_stride if init else 0))]
            self.elementwise(dims, source.base, out.base, init.base if init else None,
                             self.narrowing(frac, epilogue.init_frac if init else None, epilogue.fmt,
                                            clip=epilogue.clip))
            results.append(out)
        return results

    def _dense(self, imap: IntegerMap, x: Grid, x_frac: int, epilogue: Epilogue) -> Grid:
        matrix = imap.matrix[epilogue.start:epilogue.stop].T
        out = self.grid(x.rows, matrix.shape[1])
        init = epilogue.init
        narrowing = self.narrowing(x_frac + imap.quant.tensors["w"].frac, epilogue.init_frac if init else None,
                                   epilogue.fmt, clip=epilogue.clip)
        self.gemm(x.base, [(x.rows, (x.row_stride, out.row_stride, init.row_stride if init else 0))],
                  [(x.cols, x.col_stride)], [(out.cols, (1, init.col_stride if init else 0))],
                  out.base, init.base if init else None, matrix, narrowing)
        return out

    def _last_frac(self, imap: IntegerMap, k: int, x_frac: int) -> int:
        plan, formats = imap.plans[k], imap.quant.steps[k]
        fracs = {i: (x_frac if i == plan.input_index else imap.quant.tensors[name].frac)
                 for i, name in enumerate(plan.names)}
        fracs.update({i: f for i, (_, f) in imap.stored[k].items()})
        for index, step in enumerate(plan.steps[:-1]):
            fracs[len(plan.names) + index] = formats[index].frac
        last = plan.steps[-1]
        return fracs[last.lhs] + fracs[last.rhs]

    def _network(self, imap: IntegerMap, k: int, x: Grid, x_frac: int, result: Grid, epilogue: Epilogue | None,
                 wide: tuple[int, bool] | None, key: str) -> None:
        """Contract network ``k`` step by step.  The last step writes ``result`` ([rows, Πm]):
        through ``epilogue``, or wide at fraction bits ``wide[0]`` (adding what ``result``
        holds when ``wide[1]``)."""
        plan, formats, linear_map = imap.plans[k], imap.quant.steps[k], imap.map
        sizes = dict(plan.sizes)
        batch = plan.labels[plan.input_index][0]
        sizes[batch] = x.rows
        inputs = plan.labels[plan.input_index]
        factor_strides = np.cumprod((1,) + tuple(linear_map.in_factors)[::-1])[:-1][::-1] * x.col_stride
        data = {plan.input_index: (x.base, {batch: x.row_stride, **dict(zip(inputs[1:], map(int, factor_strides)))},
                                   x_frac)}
        weights = dict(imap.stored[k])
        count = len(plan.names)
        final = self._final_layout(plan, linear_map, result, epilogue, wide)
        for index, step in enumerate(plan.steps):
            if step.weights_only:
                continue
            result_id = count + index
            if step.lhs not in data and step.rhs not in data:
                (a, fa), (b, fb) = weights.pop(step.lhs), weights.pop(step.rhs)
                acc = np.einsum(plan.equation(index), a, b)
                weights[result_id] = (requantize(acc, fa + fb, formats[index], self.rounding), formats[index].frac)
                continue
            data_id, weight_id = (step.lhs, step.rhs) if step.lhs in data else (step.rhs, step.lhs)
            a_base, a_strides, a_frac = data.pop(data_id)
            b_array, b_frac = weights.pop(weight_id)
            b_labels = plan.operand_labels(weight_id)
            contracted = [label for label in a_strides if label in b_labels]
            if any(label in step.output for label in contracted):
                raise LoweringError(f"{key}: contraction step {index} keeps a label both operands share; "
                                    "the accelerator's GEMM cannot run it")
            last = index == len(plan.steps) - 1
            if last:
                out_base, (out_strides, init_strides, _) = result.base, final
            else:
                out_strides, size = self._intermediate_layout(plan, result_id, sizes, a_strides, b_labels, final)
                out_base, init_strides = self.alloc(size), {}
            _, summed, cols = _step_labels(a_strides, b_labels, out_strides)
            init_base = None
            if last and epilogue is not None and epilogue.init is not None:
                init_base = epilogue.init.base
            elif last and wide is not None and wide[1]:
                init_base = out_base
            acc_frac = a_frac + b_frac
            if not last:
                narrowing = self.narrowing(acc_frac, None, formats[index])
            elif epilogue is not None:
                narrowing = self.narrowing(acc_frac, epilogue.init_frac if init_base is not None else None,
                                           epilogue.fmt, clip=epilogue.clip)
            else:
                narrowing = self.narrowing(acc_frac, wide[0] if init_base is not None else None, None, wide[0])
            order = [b_labels.index(label) for label in summed[::-1] + cols[::-1]]
            matrix = np.transpose(b_array, order).reshape(math.prod(sizes[l] for l in summed),
                                                          math.prod(sizes[l] for l in cols))
            self.gemm(a_base, *_step_dims(sizes, a_strides, b_labels, out_strides, init_strides),
                      out_base, init_base, matrix, narrowing)
            if not last:
                data[result_id] = (out_base, out_strides, formats[index].frac)

    def _final_layout(self, plan, linear_map, result: Grid, epilogue: Epilogue | None,
                      wide: tuple[int, bool] | None) -> tuple[dict[str, int], dict[str, int], bool]:
        """The last step's output and init strides, and whether it reads an init."""
        out = self._output_strides(plan, linear_map, result.row_stride, result.col_stride)
        if epilogue is not None and epilogue.init is not None:
            return out, self._output_strides(plan, linear_map, epilogue.init.row_stride,
                                             epilogue.init.col_stride), True
        if wide is not None and wide[1]:
            return out, out, True
        return out, {}, False

    def _intermediate_layout(self, plan, result_id: int, sizes, a_strides, b_labels,
                             final) -> tuple[dict[str, int], int]:
        """The strides and words of the intermediate ``result_id``: row-major in its step's
        label order, or with the labels its consumer keeps innermost, in the order the
        consumer writes them, where that makes the producer and consumer GEMMs faster: the
        consumer's row loops then merge into one long loop that its row groups can split
        (a loop whose count the build's groups divide)."""
        index = result_id - len(plan.names)
        labels = plan.steps[index].output
        consumer = next(j for j, s in enumerate(plan.steps) if result_id in (s.lhs, s.rhs))
        step = plan.steps[consumer]
        consumer_b = plan.operand_labels(step.rhs if step.lhs == result_id else step.lhs)
        if consumer == len(plan.steps) - 1:
            consumer_out, consumer_init, consumer_reads_init = final
        else:
            consumer_out, consumer_init, consumer_reads_init = _row_major(step.output, sizes)[0], {}, False
        kept = sorted((label for label in labels if label not in consumer_b), key=consumer_out.get, reverse=True)
        orders = [labels, tuple(label for label in labels if label in consumer_b) + tuple(kept)]

        def cycles(order) -> int:
            out_strides = _row_major(order, sizes)[0]
            producer = self._plan_for(*_step_dims(sizes, a_strides, b_labels, out_strides, {}), False)
            consumer_plan = self._plan_for(*_step_dims(sizes, out_strides, consumer_b, consumer_out, consumer_init),
                                           consumer_reads_init)
            return producer.cycles + consumer_plan.cycles

        return _row_major(min(orders, key=cycles), sizes)

    @staticmethod
    def _output_strides(plan, linear_map, row_stride: int, col_stride: int) -> dict[str, int]:
        """Strides of the network's output labels (batch, m1 … md) in a [rows, Πm] grid."""
        factors = tuple(linear_map.out_factors)
        inner = np.cumprod((1,) + factors[::-1])[:-1][::-1] * col_stride
        labels = plan.steps[-1].output
        return {labels[0]: row_stride, **{label: int(s) for label, s in zip(labels[1:], inner)}}

    # -------------------------------------------------------------- ops

    def lower(self) -> Image:
        from ...fixedpoint.quant_attrs import module_rounding

        self.rounding = module_rounding(self.module)
        env: dict[int, tuple[str, np.ndarray]] = {}
        for value in self.module.inputs:
            dtype = value.type.dtype
            self.stores(dtype.width if isinstance(dtype, FixedType) else getattr(dtype, "bits", 64))
            shape = self.shapes[value.name]
            size = int(np.prod(shape))
            addresses = self.alloc(size) + np.arange(size, dtype=np.int64).reshape(shape)
            consumer = self._streaming_consumer(value)
            if consumer is None:
                self.image.inputs[value.name] = addresses
            else:
                self.streamed_ops[id(consumer)] = value.name
            env[id(value)] = ("addr", addresses)
        for op in self.module.ops:
            args = [None if v is None else env[id(v)] for v in op.operands]
            for result, item in zip(op.results, self._op(op, args)):
                env[id(result)] = item
        for value in self.module.outputs:
            kind, array = env[id(value)]
            if kind != "addr":
                raise LoweringError(f"output '{value.name}' is a compile-time constant; nothing to compute")
            fmt = value.type.dtype if isinstance(value.type.dtype, FixedType) else None
            self.image.outputs[value.name] = (array, fmt)
        self.emit(isa.end(), 0)
        return allocate_scratchpad(self.image, self.regions)

    def _streaming_consumer(self, value) -> Op | None:
        """The LSTM, GRU or RNN op that takes ``value`` one time step at a time through the
        input stream: its only user, reading it as its time-major sequence (a reverse sweep
        takes the last step first, a bidirectional layer the sequence twice).  A batch-major
        layout's steps are not contiguous: its sequence is written by the host."""
        users = self.module.users(value)
        if len(users) != 1 or value in self.module.outputs:
            return None
        op = users[0]
        if op.kind not in STREAMING_PROGRAMS or op.attrs.get("quant") is None or op.operands[0] is not value \
                or value in op.operands[1:]:
            return None
        return op if not STREAMING_PROGRAMS[op.kind](op).layout else None

    def _op(self, op: Op, args) -> list[tuple[str, np.ndarray]]:
        if op.kind == "const":
            value = np.asarray(op.attrs["value"])
            if op.attrs.get("quant") is not None:
                codes = value.astype(np.int64)
                return [("addr", self.alloc(codes.size, codes) + np.arange(codes.size).reshape(codes.shape))]
            return [("value", KERNELS["const"](op, [], np.dtype(np.float64))[0])]
        if op.kind in DATA_MOVEMENT:
            if all(a is None or a[0] == "value" for a in args):
                return [("value", r) for r in KERNELS[op.kind](op, [a and a[1] for a in args], np.dtype(np.float64))]
            arrays = [None if a is None else a[1] for a in args]
            results = KERNELS[op.kind](op, arrays, np.dtype(np.int64))
            return [("addr", np.asarray(r).astype(np.int64)) for r in results]
        if any(a is not None and a[0] == "value" for a in args):
            raise LoweringError(f"{op.describe()}: constant operands of computing ops are not supported")
        addresses = [None if a is None else a[1] for a in args]
        if op.kind == "linear" and op.attrs.get("quant") is not None:
            return [("addr", self._linear(op, addresses))]
        if op.kind == "add" and op.attrs.get("quant") is not None:
            return [("addr", self._add(op, addresses))]
        if op.kind == "relu" and _fixed(op.operands[0]):
            return [("addr", self._relu(op, addresses))]
        if op.kind == "lstm" and op.attrs.get("quant") is not None:
            return [("addr", a) for a in self._lstm(op, addresses)]
        if is_gated_cell_op(op):
            return [("addr", a) for a in (self._gru if op.kind == "gru" else self._rnn)(op, addresses)]
        raise LoweringError(f"{op.describe()}: the verilog target has no hardware for this op "
                            "(it runs quantized linear, lstm, gru, rnn and add ops, relu and data movement)")

    def _linear(self, op: Op, args) -> np.ndarray:
        program = LinearProgram(op)
        x = args[0]
        leading = x.shape[:-1]
        grid = self.rows_grid(x, x.shape[-1])
        init, init_frac = None, 0
        if program.bias is not None:
            init, init_frac = self.constant_grid(program.bias[0], grid.rows), program.bias[1]
        out_dim = program.weight.map.out_dim
        result = self.apply_map(program.weight, grid, program.x_frac,
                                [Epilogue(0, out_dim, init, init_frac, program.quant.output)], op.results[0].name)[0]
        return result.addresses().reshape(leading + (out_dim,))

    def _add(self, op: Op, args) -> np.ndarray:
        """``requantize(align(a) + align(b), O)`` (``ElementwiseProgram``) as one EW
        instruction: ``a`` is its X, ``b`` its init; both are aligned up to the larger of
        their and O's fraction bits (exact), so the one narrowing shift is a right shift."""
        quant = ElementwiseProgram(op).quant
        (fa, fb), out = (fmt.frac for fmt in quant.inputs), quant.output
        narrowing = self.narrowing(fa, fb, out, target_frac=out.frac)
        bound = sum(-code_min(fmt) << shift for fmt, shift in zip(quant.inputs, (narrowing.acc_shift,
                                                                                   narrowing.init_shift)))
        if bound >= 1 << 62:
            raise LoweringError(f"{op.describe()}: aligning its operands to {out} needs more than the "
                                "datapath's 64 bits")
        return self._pointwise(op, args[0], args[1], narrowing)

    def _relu(self, op: Op, args) -> np.ndarray:
        """``max(x, 0)`` as one EW instruction: a move clamped below at 0."""
        fmt = op.operands[0].type.dtype
        return self._pointwise(op, args[0], None, replace(self.narrowing(fmt.frac, None, fmt), lo=0))

    def _pointwise(self, op: Op, x: np.ndarray, init: np.ndarray | None, narrowing: Narrowing) -> np.ndarray:
        """``O = narrow(X, I)`` over the broadcast shape of the address arrays ``x`` and
        ``init``, into a fresh region; its addresses.  Each operand must be an affine
        address pattern, as is or with every axis split into its prime factors."""
        shape = x.shape if init is None else np.broadcast_shapes(x.shape, init.shape)
        operands = [np.broadcast_to(a, shape) for a in (x, init) if a is not None]
        for refined in (shape, tuple(f for size in shape for f in _prime_factors(size))):
            fits = [affine(np.reshape(a, refined)) for a in operands]
            if all(fit is not None for fit in fits):
                break
        else:
            raise LoweringError(f"{op.describe()}: an operand's elements are not an affine address pattern (a "
                                "gather or concatenation of separately stored values); the accelerator cannot "
                                "read it")
        size = math.prod(shape)
        out = self.alloc(size)
        out_strides = np.cumprod((1,) + tuple(refined)[::-1])[:-1][::-1]
        init_strides = fits[1][1] if init is not None else (0,) * len(refined)
        dims = [(refined[a], (fits[0][1][a], int(out_strides[a]), init_strides[a]))
                for a in reversed(range(len(refined)))]
        self.elementwise(dims, fits[0][0], out, fits[1][0] if init is not None else None, narrowing)
        return out + np.arange(size, dtype=np.int64).reshape(shape)

    def _unit_base(self, unit: ActivationUnit) -> int:
        """Where ``unit``'s table lives; one copy per distinct table.  Keyed by the words
        themselves: the units are built afresh per access, so an ``id`` could be reused by
        another unit once the first is freed."""
        values = [int(v) for v in unit.values]
        slopes = [int(v) for v in unit.slopes] if unit.slopes is not None else [0] * len(values)
        if any(not -(1 << 31) <= v < (1 << 31) for v in values + slopes):
            raise LoweringError(f"{unit.describe()}: coefficients wider than 32 bits")
        words = tuple(((s & 0xFFFFFFFF) << 32) | (v & 0xFFFFFFFF) for v, s in zip(values, slopes))
        if words not in self.unit_bases:
            self.unit_bases[words] = len(self.image.tables)
            self.image.tables.extend(words)
        return self.unit_bases[words]

    def _cell_fields(self, program: LSTMProgram) -> dict[int, int]:
        q = program.quant
        gate, cell, hidden = q.gate, q.cell, q.hidden
        frac = max(gate.frac + cell.frac, 2 * gate.frac)
        self.stores(max(cell.width, hidden.width))
        fields = {isa.CELL_HIDDEN: program.hidden, isa.CELL_ONE: program.one,
                  isa.CELL_FC: frac - gate.frac - cell.frac, isa.CELL_IG: frac - 2 * gate.frac,
                  isa.CELL_C_SHIFT: frac - cell.frac, isa.CELL_C_LO: code_min(cell), isa.CELL_C_HI: code_max(cell),
                  isa.CELL_H_SHIFT: 2 * gate.frac - hidden.frac, isa.CELL_H_LO: code_min(hidden),
                  isa.CELL_H_HI: code_max(hidden), isa.CELL_G_LO: code_min(gate), isa.CELL_G_HI: code_max(gate)}
        if not 0 <= program.one <= 1 << gate.width:
            raise LoweringError(f"LSTM gate format {gate}: its 1.0 is wider than the cell unit's "
                                "gate multipliers")
        for u, unit in enumerate((q.sigmoid, q.tanh, q.tanh_cell)):
            if unit.rounding != self.rounding:
                raise LoweringError(f"{unit.describe()} rounds {unit.rounding}, the module {self.rounding}")
            if unit.kind == "pwl" and unit.index_shift - unit.offset_drop > MAX_OFFSET_BITS:
                raise LoweringError(f"{unit.describe()}: segment offsets of more than {MAX_OFFSET_BITS} bits; the "
                                    f"cell unit multiplies slopes by {MAX_OFFSET_BITS + 1}-bit offsets")
            words = (int(unit.kind == "pwl"), unit.lo, unit.span - 1, unit.index_shift, unit.offset_drop,
                     unit.guard_bits, self._unit_base(unit))
            fields.update({isa.CELL_UNITS + 8 * u + i: w for i, w in enumerate(words)})
        return fields

    def _lstm(self, op: Op, args) -> list[np.ndarray]:
        program = LSTMProgram(op)
        if program.peepholes is not None:
            raise LoweringError(f"{op.describe()}: peepholes are not supported by the accelerator's cell unit")
        x, lens, h0, c0 = (list(args) + [None] * 4)[:4]
        if program.layout:
            x = np.swapaxes(x, 0, 1)
            h0 = None if h0 is None else np.swapaxes(h0, 0, 1)
            c0 = None if c0 is None else np.swapaxes(c0, 0, 1)
        steps, batch, _ = x.shape
        dirs, hidden = program.dirs, program.hidden
        self.image.steps = max(self.image.steps, steps)
        state_shape = (dirs, batch, hidden)
        states = []
        for initial in (h0, c0):
            region = self.alloc(dirs * batch * hidden)
            if initial is not None:
                fit = affine(initial)
                source = initial if fit is not None else self.copy(initial)
                base, strides = affine(source)
                dims = [(state_shape[a], (strides[a], int(np.prod(state_shape[a + 1:])), 0)) for a in (2, 1, 0)]
                self.elementwise(dims, base, region, None, self.narrowing(0, None, None))
            states.append(region)
        h_region, c_region = states
        keeps_y, y_region, x_grid = self._sequence_regions(op, program, x, hidden)
        fields = self._cell_fields(program)
        fields[isa.CELL_FLAGS] = ((isa.HAS_LEN if lens is not None else 0)
                                  | (isa.INPUT_FORGET if program.input_forget else 0)
                                  | (isa.CELL_ROUND_EVEN if self.rounding == "nearest-even" else 0)
                                  | (isa.WRITE_Y if keeps_y else 0))
        name = op.results[0].name
        for d in range(dirs):
            gx = self._sequence_projection(program, d, x_grid, f"{name}.d{d}")
            h_grid = Grid(h_region + d * batch * hidden, batch, hidden, hidden, 1)
            for t in sweep(program, d, steps):
                gx_t = self._step_projection(program, d, gx, t, batch, x.shape[-1], f"{name}.d{d}")
                pre = self._recurrent(program, d, h_grid, gx_t, f"{name}.d{d}.r")
                for b in range(batch):
                    row = (d * batch + b) * hidden
                    cell = dict(fields)
                    cell.update({isa.CELL_PRE[g]: pre[g].base + b * pre[g].row_stride for g in range(4)})
                    cell.update({isa.CELL_C: c_region + row, isa.CELL_H: h_region + row,
                                 isa.CELL_Y: y_region + ((t * dirs + d) * batch + b) * hidden, isa.CELL_T: t,
                                 isa.CELL_LEN: int(lens[b]) if lens is not None else 0})
                    self.emit(isa.cell(cell), hidden * CELL_CYCLES_PER_ELEMENT + 6)
        y = y_region + np.arange(steps * dirs * batch * hidden, dtype=np.int64).reshape(steps, dirs, batch, hidden)
        h = h_region + np.arange(dirs * batch * hidden, dtype=np.int64).reshape(state_shape)
        c = c_region + np.arange(dirs * batch * hidden, dtype=np.int64).reshape(state_shape)
        if program.layout:
            return [np.transpose(y, (2, 0, 1, 3)), np.swapaxes(h, 0, 1), np.swapaxes(c, 0, 1)]
        return [y, h, c]

    def _sequence_regions(self, op: Op, program, x: np.ndarray, hidden: int) -> tuple[bool, int, Grid | None]:
        """A recurrent op's Y region (empty when nothing reads Y: the cell then writes none)
        and its input's grid, ``None`` when the input is streamed a step at a time
        (``_streaming_consumer``: the steps then queue in the order the sweeps take them);
        whether Y is kept comes first."""
        steps, batch = x.shape[0], x.shape[1]
        keeps_y = bool(self.module.users(op.results[0])) or op.results[0] in self.module.outputs
        y_region = self.alloc(steps * program.dirs * batch * hidden if keeps_y else 0)
        streamed = self.streamed_ops.get(id(op))
        if streamed is None:
            return keeps_y, y_region, self.rows_grid(x, x.shape[-1])
        self.image.streamed.append(streamed)
        self.stream_queue = [t for d in range(program.dirs) for t in sweep(program, d, steps)]
        return keeps_y, y_region, None

    def _sequence_projection(self, program, d: int, x_grid: Grid | None, key: str) -> list[Grid] | None:
        """Direction ``d``'s input projection of every step at once, or ``None`` for a
        streamed input (each step's is made as it arrives, ``_step_projection``)."""
        return None if x_grid is None else self._projection(program, d, x_grid, key)

    def _step_projection(self, program, d: int, gx: list[Grid] | None, t: int, batch: int, width: int,
                         key: str) -> list[Grid]:
        """Step ``t``'s input projection: its rows of the whole sequence's ``gx``, or, for a
        streamed input, the projection of the step taken from the stream."""
        if gx is not None:
            return [g.row_block(t * batch, batch) for g in gx]
        return self._projection(program, d, self._stream_step(t, width, batch), key)

    def _stream_step(self, t: int, width: int, batch: int) -> Grid:
        """Time step ``t`` of a streamed input (``batch`` rows of ``width`` codes), the next
        of ``stream_queue``, in a region of its own.  The stream runs in the background: the
        first step's is armed here, every later one's by an INPUT that waits for the step
        before, so that a step arrives while the one before computes; the next instruction
        (the INPUT, or after the last step its first reader) waits for the step
        (``input_wait``: what the work since its arming did not hide).  The allocator keeps
        the two steps' regions apart: both are live at the arming."""
        if self.armed_step is None:
            self._arm_stream(width, batch)
        step, armed_at, armed_t = self.armed_step
        if armed_t != t:
            raise LoweringError(f"the stream holds time step {armed_t} where the sweep takes step {t}")
        self.input_wait = max(0, -(-batch * width // self.input_pack) - (self.image.cycles_estimate - armed_at))
        self.armed_step = None
        if self.stream_queue:
            self._arm_stream(width, batch)
        return step

    def _arm_stream(self, width: int, batch: int) -> None:
        """An INPUT in the background of the next queued time step's codes into a region of its own."""
        step, t = self.grid(batch, width), self.stream_queue.pop(0)
        self.emit(isa.stream_input(step.base, batch * width, True, t, len(self.image.streamed) - 1), 1)
        self.armed_step = (step, self.image.cycles_estimate, t)

    def _projection(self, program: LSTMProgram, d: int, x: Grid, key: str) -> list[Grid]:
        """gx = narrow(W·x + b, GX) for the rows of ``x`` (all steps, or one streamed step):
        one grid per gate (i, o, f, c)."""
        hidden, fmt = program.hidden, program.quant.gates_x
        maps = program.w[d]
        grids = []
        for index, imap in enumerate(maps):
            init, init_frac = None, 0
            if program.bias is not None:
                block, init_frac = program.bias[d][index]
                init = self.constant_grid(block, x.rows)
            out = self.apply_map(imap, x, program.x_frac,
                                 [Epilogue(0, imap.map.out_dim, init, init_frac, fmt)], f"{key}.w{index}")[0]
            grids += [out.columns(g * hidden, (g + 1) * hidden) for g in range(out.cols // hidden)]
        return grids

    def _recurrent(self, program: LSTMProgram, d: int, h: Grid, gx: list[Grid], key: str) -> list[Grid]:
        """The four pre-activations of one step: clip(narrow(R·h + gx, PS or PT))."""
        q, hidden = program.quant, program.hidden
        gx_frac = q.gates_x.frac
        formats = [q.pre_sigmoid, q.pre_sigmoid, q.pre_sigmoid, q.pre_tanh]
        epilogues = [Epilogue(g * hidden, (g + 1) * hidden, gx[g], gx_frac, formats[g], program.clip[formats[g]])
                     for g in range(4)]
        maps = program.r[d]
        if len(maps) == 1:
            return self.apply_map(maps[0], h, q.hidden.frac, epilogues, key)
        return [self.apply_map(imap, h, q.hidden.frac, [Epilogue(0, hidden, *astuple_tail(e))], f"{key}{g}")[0]
                for g, (imap, e) in enumerate(zip(maps, epilogues))]


@dataclass(frozen=True)
class GemmPlan:
    """One way to run a GEMM of ``depth`` = K and ``columns`` on ``pes`` lanes.

    ``groups`` row groups split row loop ``split`` (interleaved: group g takes the rows
    whose index along it is g mod groups; else blocks of count / groups), each group of
    ``pes / groups`` lanes holding one column of a tile of columns apiece; ``drain``
    results are written a cycle, consecutive columns of one group.  ``row_loops`` /
    ``col_loops`` are the merged loops, innermost first, each ``(count, (a, out, init
    strides))`` / ``(count, (out, init strides))``."""

    pes: int
    depth: int
    columns: int
    row_loops: tuple
    col_loops: tuple
    groups: int = 1
    split: int = 0
    interleaved: bool = True
    drain: int = 1

    def __post_init__(self):
        object.__setattr__(self, "row_loops", tuple(self.row_loops))
        object.__setattr__(self, "col_loops", tuple(self.col_loops))

    @property
    def group_lanes(self) -> int:
        return self.pes // self.groups

    @property
    def tiles(self) -> int:
        return -(-self.columns // self.group_lanes)

    @property
    def group_strides(self) -> tuple[int, ...]:
        if self.groups == 1:
            return (0, 0, 0)
        count, strides = self.row_loops[self.split]
        return strides if self.interleaved else tuple(count // self.groups * s for s in strides)

    @property
    def rows(self) -> list:
        """The row loops the walks step through (the split loop's groups run at once)."""
        if self.groups == 1:
            return list(self.row_loops)
        count, strides = self.row_loops[self.split]
        inner = (count // self.groups, tuple(self.groups * s for s in strides) if self.interleaved else strides)
        return [loop for loop in self.row_loops[:self.split] + (inner,) + self.row_loops[self.split + 1:]
                if loop[0] > 1]

    def _column_split(self) -> tuple[list, list] | None:
        """The column loops of one tile and those of the tiles (with several groups a tile's
        walk runs inside the group loop), or None where the tiles do not cut the loops."""
        if not self.col_loops:
            return [(1, (0, 0))], []
        if self.groups == 1 or self.tiles == 1:
            return list(self.col_loops), []
        if self.columns % self.group_lanes:
            return None
        inside, outside, left = [], [], self.group_lanes
        for count, strides in self.col_loops:
            if left == 1:
                outside.append((count, strides))
            elif left % count == 0:
                inside.append((count, strides))
                left //= count
            elif count % left == 0:
                inside.append((left, strides))
                outside.append((count // left, tuple(left * s for s in strides)))
                left = 1
            else:
                return None
        return inside, outside

    @property
    def lanes(self) -> isa.Lanes:
        inside, _ = self._column_split()
        out_stride, init_stride = inside[0][1] if self.drain > 1 else (0, 0)
        return isa.Lanes(self.groups, self.group_strides[0], self.drain, out_stride, init_stride)

    def walk(self, which: int) -> list[tuple[int, int]]:
        """The output (``which`` 1) or init (2) walk: a drain cycle's first result, over a
        group's columns of a tile, group by group, tile by tile, row step by row step."""
        inside, outside = self._column_split()
        count, strides = inside[0]
        inside = ([(count // self.drain, tuple(self.drain * s for s in strides))] if count > self.drain else []) \
            + inside[1:]
        group = [(self.groups, (self.group_strides[1], self.group_strides[2]))] if self.groups > 1 else []
        return [(c, s[which - 1]) for c, s in inside + group + outside] + [(c, s[which]) for c, s in self.rows]

    @property
    def drain_cycles(self) -> int:
        return self.groups * min(self.group_lanes, self.columns) // self.drain

    @property
    def cycles(self) -> int:
        steps = math.prod(c for c, _ in self.row_loops) // self.groups
        return steps * self.tiles * max(self.depth, self.drain_cycles + 1) + self.drain_cycles + 6

    def fits(self, k_loops: int, banks: int, init: bool) -> bool:
        """Whether the walks fit the generators and a cycle's parallel accesses fall in
        distinct banks (or are one word: a stride of 0)."""
        split = self._column_split()
        if split is None:
            return False
        inside, outside = split
        if not inside or inside[0][0] % self.drain or min(self.group_lanes, self.columns) % self.drain:
            return False
        walk_loops = len(inside) - (inside[0][0] == self.drain) + (self.groups > 1) + len(outside) + len(self.rows)
        if walk_loops > isa.DIMS or k_loops + (self.tiles > 1) + len(self.rows) > isa.DIMS:
            return False
        lane_out, lane_init = inside[0][1]
        return (_distinct_banks(self.group_strides[0], self.groups, banks)
                and _distinct_banks(lane_out, self.drain, banks)
                and (not init or _distinct_banks(lane_init, self.drain, banks)))


def _distinct_banks(stride: int, count: int, banks: int) -> bool:
    """Whether ``count`` accesses ``stride`` apart fall in distinct banks (word w in bank
    w mod banks), or are all one word."""
    return stride == 0 or len({(j * stride) % banks for j in range(count)}) == count


def _step_labels(a_strides, b_labels, out_strides) -> tuple[list, list, list]:
    """A contraction step's row, summed and column labels, innermost first."""
    rows = sorted((label for label in a_strides if label not in b_labels), key=a_strides.get)
    summed = sorted((label for label in a_strides if label in b_labels), key=a_strides.get)
    cols = sorted((label for label in b_labels if label not in a_strides), key=lambda l: out_strides.get(l, 0))
    return rows, summed, cols


def _step_dims(sizes, a_strides, b_labels, out_strides, init_strides) -> tuple[list, list, list]:
    """``Lowering.gemm``'s row, K and column loops of a contraction step."""
    rows, summed, cols = _step_labels(a_strides, b_labels, out_strides)
    return ([(sizes[l], (a_strides[l], out_strides[l], init_strides.get(l, 0))) for l in rows],
            [(sizes[l], a_strides[l]) for l in summed],
            [(sizes[l], (out_strides[l], init_strides.get(l, 0))) for l in cols])


PAD_FROM = 64
"""An intermediate's block of this many words or more gets one pad word if even (``_row_major``)."""


def _row_major(labels, sizes) -> tuple[dict[str, int], int]:
    """Row-major strides of an intermediate and its words.  The first even block of
    ``PAD_FROM`` words or more (from the innermost label out) is padded by a word, so the
    labels outside it have odd strides: a consumer's row groups split along one of them
    read distinct banks (``GemmPlan.fits``), at a cost under 2% of the words."""
    strides, running, padded = {}, 1, False
    for label in reversed(labels):
        strides[label] = running
        running *= sizes[label]
        if not padded and running >= PAD_FROM and running % 2 == 0 and label != labels[0]:
            running += 1
            padded = True
    return strides, running


def _prime_factors(size: int) -> list[int]:
    factors, divisor = [], 2
    while size > 1 and divisor * divisor <= size:
        while size % divisor == 0:
            factors.append(divisor)
            size //= divisor
        divisor += 1
    return factors + ([size] if size > 1 or not factors else [])


def _bits(codes: np.ndarray) -> int:
    """Two's-complement bits that hold every code."""
    if codes.size == 0:
        return 2
    return max(int(codes.max()).bit_length(), int(-codes.min() - 1).bit_length()) + 1


def _fixed(value) -> bool:
    return value is not None and isinstance(value.type.dtype, FixedType)


def on_accelerator(op: Op) -> bool:
    """Whether the accelerator runs ``op``: constants, data movement, quantized linear, lstm,
    gru, rnn and add ops, and relu of fixed-point codes."""
    return op.kind == "const" or op.kind in DATA_MOVEMENT or (
        op.kind in ("linear", "lstm", "gru", "rnn", "add") and op.attrs.get("quant") is not None) or (
        op.kind == "relu" and _fixed(op.operands[0]))


def accelerator_stages(module: Module) -> Stages:
    """``module`` cut into what runs before the accelerator, on it and after it (``ir.stages``)."""
    return split_stages(module, on_accelerator)


def lower(module: Module, pes: int, shapes: dict[str, tuple[int, ...]]) -> Image:
    """The program and memory images of a quantized ``module`` for ``pes`` lanes."""
    return Lowering(module, pes, shapes).lower()
