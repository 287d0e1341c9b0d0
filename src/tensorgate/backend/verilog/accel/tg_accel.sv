// tensorgate accelerator top: a controller that executes a program from its program memory,
// P multiply-accumulate lanes, on-chip weight memory (all weights/cores), a scratchpad for
// inputs, intermediates, states and outputs, and the LSTM and GRU/RNN cell units with their
// σ/tanh tables.
//
// Generic over P, the code width CODE_W (lane operands and weights), the scratchpad word width
// S_W (every word written there is an S_W-bit two's complement code, read back sign-extended
// to 64 bits) and memory depths: a model is its program and memory images, loaded
// through the host port (host_mem 0 program, 1 weights, 2 scratchpad, 3 activation tables).
//
// Program: instructions of NW 64-bit words (word 0 the opcode) in one 64-bit-wide memory of
// PROG_DEPTH words (instruction i at words i*NW ..), fetched a word a cycle (NW + 1 cycles;
// one narrow memory instead of NW parallel banks) into a prefetch register while the
// instruction before runs, and taken into the instruction register in one cycle when it
// ends: the fetch stays off the critical path of every instruction of NW + 1 cycles or more.
//   END   raise done.  Word 0 holds the opcode in bits [7:0].
//   GEMM  O = narrow((A·B << acc_shift) + (I << init_shift)) over R rows and C columns.
//         A (activation codes, scratchpad) is walked by an 8-loop address generator in the
//         order k (inner loops), column tile, row (outer loops): reshapes and transposes
//         between contraction steps are strides.  B (weights) is stored by the compiler as
//         rows of P codes, tile by tile, so its stream is base + tile*K + k.  Lane l of tile
//         t accumulates column t*P + l.  The lanes' output registers hold a finished tile
//         while the next accumulates; the drain walks a tile's columns through the output
//         and init address generators (same loop structure, other strides).
//         Row groups (word 0 bits [15:8] = log2 G, G <= GROUPS): the lanes split into G
//         groups of L = P/G; group g reads its A operand through read port g of the banked
//         scratchpad at the A address + g * (word 1 bits [63:32]), so G rows accumulate at
//         once, and lane l of a group holds column t*L + l of tile t.  The compiler repeats
//         B's tiles in every group, walks the rows G at a time and the output and init
//         group by group within a tile.
//         Drain lanes (word 0 bits [23:16] = log2 D, D <= DRAIN_W): a drain cycle takes D
//         consecutive lanes of a group through D narrowing pipelines and writes them through
//         D write ports, result j at the output address + j * (word 18 bits [63:32]), its
//         init read at the init address + j * (word 35 bits [63:32]); the generators walk
//         a drain cycle's first result.
//   EW    O = narrow((X << acc_shift) + (I << init_shift)) elementwise, X walked by the A
//         generator: epilogues (bias/gate terms, format and clip) and block sums.
//   CELL  the LSTM cell update of one batch row (tg_lstm_cell).
//   GCELL the GRU or RNN cell update of one batch row, or a GRU's r ⊙ h (tg_gru_rnn_cell).
//   INPUT take the next word 2 codes from the input stream into the scratchpad at word 1,
//         word 1 + 1, ... (a sequence streamed one time step at a time while the program
//         runs: only the step's inputs are ever on chip), IN_PACK codes a stream word and a
//         cycle: code j of a word in bits [j*IN_FIELD +: IN_FIELD] (IN_FIELD = 64 / IN_PACK,
//         two's complement), the last word's fields past word 2's count ignored.  IN_PACK =
//         min(DRAIN_W, BANKS, 64 / CODE_W): one code per write port, and every code fits
//         its field.  Word 3 bit 0 (background): only arm the stream and go on; the codes
//         are written in the cycles nothing else writes the scratchpad, while the next
//         instructions run (the next time step's input arrives while this one computes).
// Any instruction with word 0 bit 24 set (every INPUT) starts only once the codes of the
// INPUT before are all written: the first reader of a step streamed in the background waits
// for it, and an INPUT never re-arms a stream whose codes still arrive.
// Streams (AXI-Stream-like: a word moves on an edge where valid && ready; valid never waits
// for ready), served while the accelerator is idle and yielding to the host port, and the
// input stream also by INPUT instructions, in any state once armed by one:
//   input   in_arm (one edge) loads in_base and in_count; the next in_count words on
//           in_data (64-bit two's complement codes) are written to the scratchpad at in_base,
//           in_base + 1, ...  in_ready is high while words are still expected.
//   output  out_arm (one edge) loads out_base and out_count; the scratchpad words at out_base,
//           out_base + 1, ... then appear on out_data, in order, each held until taken
//           (a two-word buffer keeps one word a cycle flowing under back-pressure).
//   Arming again restarts a stream at the new region (a word still buffered is dropped).
// Performance counters (cleared by start): cycles spent running GEMM, EW and CELL
// instructions; the rest of a run is instruction fetch, decode and sequencing.
// LSTM_CELL / GRU_RNN_CELL = 0 builds leave that cell unit out (the compiler sets them from
// the program: a program without CELL or GCELL instructions needs no such unit); an
// instruction for a unit left out finishes at once and writes nothing.
// narrow(v) = clamp(round(v / 2^shift), lo, hi): the golden requantize (shift signed, rounding
// half-away or to even) with the output format's range, the LSTM clip, or no bound (a wide
// 64-bit result).
//
// Words of GEMM/EW: 1 A base, 2-9 A counts, 10-17 A strides, 18-34 O (base, counts, strides),
// 35-51 I, 52 B base, 53 K, 54 column tiles, 55 rows, 56 columns, 57 acc_shift,
// 58 init_shift, 59 shift, 60 flags {init_en, round_even}, 61 lo, 62 hi, 63 results.
module tg_accel #(
    parameter int P          = 4,
    parameter int CODE_W     = 16,
    parameter int S_W        = 64,
    parameter int PROG_DEPTH = 256,
    parameter int W_DEPTH    = 4096,
    parameter int S_DEPTH    = 8192,
    parameter int T_DEPTH    = 4096,
    parameter int GROUPS     = 1,
    parameter int LSTM_CELL    = 1,
    parameter int GRU_RNN_CELL = 1,
    parameter int DRAIN_W    = 1,
    parameter int BANKS      = 1,
    // Each memory's ram_style (tg_ram_dp: "auto", "block", "ultra"), picked per memory by
    // the compiler from the device's budget (hardware.AccelConfig.memory_map).
    parameter PROG_RAM       = "auto",
    parameter W_RAM          = "auto",
    parameter SA_RAM         = "auto",
    parameter SI_RAM         = "auto",
    parameter T_RAM          = "auto"
) (
    input  logic        clk,
    input  logic        rst,
    input  logic        start,
    output logic        done,
    input  logic        host_en,
    input  logic        host_we,
    input  logic [ 1:0] host_mem,
    input  logic [31:0] host_addr,
    input  logic [63:0] host_wdata,
    output logic [63:0] host_rdata,
    input  logic        in_arm,
    input  logic [31:0] in_base,
    input  logic [31:0] in_count,
    input  logic        in_valid,
    output logic        in_ready,
    input  logic [63:0] in_data,
    input  logic        out_arm,
    input  logic [31:0] out_base,
    input  logic [31:0] out_count,
    output logic        out_valid,
    input  logic        out_ready,
    output logic [63:0] out_data,
    output logic [63:0] gemm_cycles,
    output logic [63:0] ew_cycles,
    output logic [63:0] cell_cycles
);
  localparam int NW = 64;
  localparam int DIMS = 8;
  localparam int P_AW = $clog2(PROG_DEPTH);
  localparam int W_AW = $clog2(W_DEPTH);
  localparam int S_AW = $clog2(S_DEPTH);
  localparam int T_AW = $clog2(T_DEPTH);
  localparam int NW_AW = $clog2(NW);
  localparam int LANE_AW = (P > 1) ? $clog2(P) : 1;
  localparam int LOG_P = $clog2(P);
  localparam int LANE_CW = LOG_P + 2;  // counts of lanes up to 2P
  // A lane's sum of K <= W_DEPTH products of CODE_W-bit codes never needs more bits.
  localparam int SUM_W = 2 * CODE_W + $clog2(W_DEPTH);
  localparam int ACC_W = (SUM_W < 64) ? SUM_W : 64;
  // Codes an INPUT instruction takes per stream word: as many as the write ports and banks
  // take a cycle (consecutive words fall in distinct banks), each in a field of IN_FIELD bits.
  localparam int IN_PORTS = (DRAIN_W < BANKS) ? DRAIN_W : BANKS;
  localparam int IN_PACK = (IN_PORTS < 64 / CODE_W) ? IN_PORTS : 64 / CODE_W;
  localparam int IN_FIELD = 64 / IN_PACK;

  localparam logic [63:0] OP_GEMM = 64'd1;
  localparam logic [63:0] OP_EW = 64'd2;
  localparam logic [63:0] OP_CELL = 64'd3;
  localparam logic [63:0] OP_GCELL = 64'd4;
  localparam logic [63:0] OP_INPUT = 64'd5;

  typedef enum logic [2:0] {IDLE, FETCH, DECODE, RUN_GEMM, RUN_EW, RUN_CELL, RUN_INPUT} state_t;
  state_t state;
  logic idle, decoded;
  assign idle = (state == IDLE);

  // ------------------------------------------------------------------ host port decoding
  logic host_prog, host_weight, host_scratch, host_table;
  assign host_prog = host_en && idle && host_mem == 2'd0;
  assign host_weight = host_en && idle && host_mem == 2'd1;
  assign host_scratch = host_en && idle && host_mem == 2'd2;
  assign host_table = host_en && idle && host_mem == 2'd3;
  logic [1:0] host_mem_q;
  logic [31:0] host_addr_q;
  always_ff @(posedge clk) begin
    host_mem_q <= host_mem;
    host_addr_q <= host_addr;
  end

  // ------------------------------------------------------------------ program memory
  // The fetcher reads word fetch_word (0 .. NW-1) of the instruction at fetch_pc and writes
  // the word read the cycle before into fetched[fetch_slot], so after NW + 1 cycles
  // fetched[w] holds word w and fetch_done rises.  FETCH waits for it, takes `fetched` into
  // `ins` (take) and sets the fetcher on the instruction after, which it reads while this
  // one runs.  A run starts the fetcher at instruction 0; it stops when the run ends.
  // `fetched` is an array written a word at a time (not a shift register): a simulation then
  // moves one word a cycle, and the whole instruction only on `take`.
  logic [NW-1:0][63:0] ins;
  logic [63:0] fetched[NW];
  logic [NW_AW-1:0] fetch_slot;
  logic [63:0] prog_rdata, prog_host_rdata;
  logic [P_AW-1:0] fetch_pc;
  logic [NW_AW:0] fetch_word;
  logic fetch_busy, fetch_done, fetch_read, fetch_write, take;
  assign fetch_read = fetch_busy && fetch_word < (NW_AW + 1)'(NW);
  assign take = (state == FETCH) && fetch_done;
  tg_ram_dp #(.WIDTH(64), .DEPTH(PROG_DEPTH), .STYLE(PROG_RAM)) program_memory (
      .clk(clk),
      .a_en(fetch_read), .a_we(1'b0), .a_addr(fetch_pc + P_AW'(fetch_word)), .a_wdata('0), .a_rdata(prog_rdata),
      .b_en(host_prog), .b_we(host_we), .b_addr(P_AW'(host_addr)), .b_wdata(host_wdata),
      .b_rdata(prog_host_rdata));
  always_ff @(posedge clk) begin
    if (rst || idle) begin
      fetch_busy <= !rst && start;
      fetch_done <= 1'b0;
      fetch_word <= '0;
      fetch_pc <= '0;
    end else if (take) begin
      fetch_busy <= 1'b1;
      fetch_done <= 1'b0;
      fetch_word <= '0;
      fetch_pc <= fetch_pc + P_AW'(NW);
    end else if (fetch_busy) begin
      fetch_busy <= fetch_word != (NW_AW + 1)'(NW);
      fetch_done <= fetch_word == (NW_AW + 1)'(NW);
      fetch_word <= fetch_word + 1'b1;
    end
    fetch_write <= fetch_read;
    fetch_slot <= NW_AW'(fetch_word);
    if (fetch_write) fetched[fetch_slot] <= prog_rdata;
    if (take) begin
      for (int w = 0; w < NW; w++) ins[w] <= fetched[w];
    end
  end

  logic [63:0] opcode;
  assign opcode = {56'd0, ins[0][7:0]};
  // The opcode's classes are registers taken with the instruction, so that the starts the
  // decode gives (gens_start, cell_start, in_load), which load counters across the chip,
  // are a gate from registers and not an opcode compare.
  logic op_gens, op_cell, op_gcell, op_input;
  always_ff @(posedge clk) begin
    if (take) begin
      op_gens <= {56'd0, fetched[0][7:0]} == OP_GEMM || {56'd0, fetched[0][7:0]} == OP_EW;
      op_cell <= {56'd0, fetched[0][7:0]} == OP_CELL;
      op_gcell <= {56'd0, fetched[0][7:0]} == OP_GCELL;
      op_input <= {56'd0, fetched[0][7:0]} == OP_INPUT;
    end
  end

  // ------------------------------------------------------------------ address generators
  logic gens_start;
  logic [DIMS-1:0][31:0] a_counts, a_strides, o_counts, o_strides, i_counts, i_strides;
  always_comb begin
    for (int d = 0; d < DIMS; d++) begin
      a_counts[d] = ins[2+d][31:0];
      a_strides[d] = ins[10+d][31:0];
      o_counts[d] = ins[19+d][31:0];
      o_strides[d] = ins[27+d][31:0];
      i_counts[d] = ins[36+d][31:0];
      i_strides[d] = ins[44+d][31:0];
    end
  end
  logic a_ready, a_valid, o_ready, i_ready;
  /* verilator lint_off UNUSEDSIGNAL */
  logic [31:0] a_addr, o_addr, i_addr, b_addr;
  /* verilator lint_on UNUSEDSIGNAL */
  // The A stream paces every walk: the others run in lockstep with it or with the drain,
  // and addresses wrap at the memory's depth.
  /* verilator lint_off UNUSEDSIGNAL */
  logic a_last, o_valid, o_last, i_valid, i_last, b_valid, b_last;
  /* verilator lint_on UNUSEDSIGNAL */
  tg_addr_gen #(.DIMS(DIMS), .ADDR_W(32), .COUNT_W(32)) gen_a (
      .clk(clk), .rst(rst), .start(gens_start), .ready(a_ready), .base(ins[1][31:0]),
      .counts(a_counts), .strides(a_strides), .addr(a_addr), .valid(a_valid), .last(a_last));
  tg_addr_gen #(.DIMS(DIMS), .ADDR_W(32), .COUNT_W(32)) gen_o (
      .clk(clk), .rst(rst), .start(gens_start), .ready(o_ready), .base(ins[18][31:0]),
      .counts(o_counts), .strides(o_strides), .addr(o_addr), .valid(o_valid), .last(o_last));
  tg_addr_gen #(.DIMS(DIMS), .ADDR_W(32), .COUNT_W(32)) gen_i (
      .clk(clk), .rst(rst), .start(gens_start), .ready(i_ready), .base(ins[35][31:0]),
      .counts(i_counts), .strides(i_strides), .addr(i_addr), .valid(i_valid), .last(i_last));
  tg_addr_gen #(.DIMS(3), .ADDR_W(32), .COUNT_W(32)) gen_b (
      .clk(clk), .rst(rst), .start(gens_start), .ready(a_ready), .base(ins[52][31:0]),
      .counts({ins[55][31:0], ins[54][31:0], ins[53][31:0]}),
      .strides({32'd0, ins[53][31:0], 32'd1}), .addr(b_addr), .valid(b_valid), .last(b_last));

  // ------------------------------------------------------------------ GEMM issue
  logic [31:0] depth_k, tiles, columns, group_lanes;
  logic [7:0] group_log, drain_log;
  /* verilator lint_off UNUSEDSIGNAL */
  logic signed [31:0] a_group_stride;  // unused in a build without row groups
  /* verilator lint_on UNUSEDSIGNAL */
  assign group_log = ins[0][15:8];
  assign drain_log = ins[0][23:16];
  // group_lanes (P >> group_log) is a register taken with the instruction, so that the
  // tile and drain counts that start from it at gens_start are not a shift away from `ins`.
  always_ff @(posedge clk) if (take) group_lanes <= 32'(P) >> fetched[0][15:8];
  assign a_group_stride = ins[1][63:32];
  assign depth_k = ins[53][31:0];
  assign tiles = ins[54][31:0];
  assign columns = ins[56][31:0];
  // tile_first (the tile's first k), k_last (its last), holding (hold != 0), the tiles left
  // and the issuing tile's columns are registers, so that `issue` is a few gates from
  // registers and every count test is a register the cycle it is needed.
  logic [31:0] k_left, issue_tiles_left, issue_rest, hold;
  logic [LANE_CW-1:0] issue_columns;
  logic tile_first, k_last, issue_tile_last, holding, issue;
  assign issue = (state == RUN_GEMM) && a_valid && !(tile_first && holding);

  // The columns of a tile from whose first column on `left` columns remain: L, or the rest.
  function automatic logic [31:0] tile_lanes(input logic [31:0] left);
    tile_lanes = (left < group_lanes) ? left : group_lanes;
  endfunction

  // A tile's first issue holds the next tile's for its drain cycles: the drain reads the
  // lanes' output registers D lanes a cycle, and the next tile's results land there one
  // cycle after the drain has read the last of them (tiles of K < drain cycles + 1 are
  // drain-bound).
  always_ff @(posedge clk) begin
    if (gens_start || (issue && k_last)) begin
      k_left <= depth_k;
      k_last <= depth_k <= 32'd1;
    end else if (issue) begin
      k_left <= k_left - 32'd1;
      k_last <= k_left <= 32'd2;
    end
    if (gens_start || (issue && k_last && issue_tile_last)) begin
      issue_tiles_left <= tiles;
      issue_tile_last <= tiles <= 32'd1;
      issue_columns <= LANE_CW'(tile_lanes(columns));
      issue_rest <= columns - group_lanes;
    end else if (issue && k_last) begin
      issue_tiles_left <= issue_tiles_left - 32'd1;
      issue_tile_last <= issue_tiles_left <= 32'd2;
      issue_columns <= LANE_CW'(tile_lanes(issue_rest));
      issue_rest <= issue_rest - group_lanes;
    end
    if (gens_start) begin
      tile_first <= 1'b1;
      hold <= '0;
      holding <= 1'b0;
    end else begin
      if (issue && tile_first) begin
        hold <= (32'(issue_columns) << group_log) >> drain_log;
        holding <= 1'b1;
      end else if (holding) begin
        hold <= hold - 32'd1;
        holding <= hold != 32'd1;
      end
      if (issue) tile_first <= k_last;
    end
  end

  // The A operands pass a register between the scratchpad's banks and the lanes (a bank's
  // read data are late, and the lanes lie across the chip), so the weight read and the
  // lanes' controls follow an issue one cycle later: `issued` and its tile's first/last.
  logic issued, issued_first, issued_last;
  logic [W_AW-1:0] issued_b_addr;
  logic s1_valid, s1_first, s1_last, s2_emit;
  always_ff @(posedge clk) begin
    if (rst) begin
      issued <= 1'b0;
      s1_valid <= 1'b0;
      s2_emit <= 1'b0;
    end else begin
      issued <= issue;
      s1_valid <= issued;
      s2_emit <= s1_valid && s1_last;
    end
    issued_first <= tile_first;
    issued_last <= k_last;
    issued_b_addr <= W_AW'(b_addr);
    s1_first <= issued_first;
    s1_last <= issued_last;
  end

  // ------------------------------------------------------------------ weights and lanes
  logic [CODE_W-1:0] weight_host_rdata[P];
  logic [P-1:0][ACC_W-1:0] lane_out;  // lane l's sum: two's complement
  logic lane_out_valid;
  logic signed [63:0] scratch_a_rdata;
  logic signed [63:0] group_a_rdata[GROUPS];

  // The row group lane l belongs to (group_log = 0: every lane in group 0).
  function automatic int lane_group(input int lane);
    logic [31:0] group;
    group = 32'(lane) >> (32'(LOG_P) - 32'(group_log));
    lane_group = (group < 32'(GROUPS)) ? int'(group) : 0;
  endfunction

  // lane_group_q[l]: lane l's row group under the running instruction, a register loaded in
  // DECODE (the instruction is stable from then on), so that a lane's A operand is a select
  // by a register, not a shift and compare of the instruction's group_log on every cycle.
  localparam int GROUP_AW = (GROUPS > 1) ? $clog2(GROUPS) : 1;
  logic [GROUP_AW-1:0] lane_group_q[P];
  always_ff @(posedge clk) begin
    if (state == DECODE) for (int l = 0; l < P; l++) lane_group_q[l] <= GROUP_AW'(lane_group(l));
  end

  // Every lane's weight bank and A operand; the lanes share one control (tg_mac_lane).  A host
  // access reads every bank's port B (one enable, tested once a cycle for all P banks) and
  // writes bank host_addr % P (a one-hot decoded once, not compared per lane).
  logic [P-1:0][CODE_W-1:0] lane_a, lane_b;
  logic [P-1:0] bank_host_we;
  assign bank_host_we = host_we ? P'(1) << (host_addr % 32'(P)) : '0;
  for (genvar l = 0; l < P; l++) begin : g_lane
    tg_ram_dp #(.WIDTH(CODE_W), .DEPTH(W_DEPTH), .STYLE(W_RAM)) bank (
        .clk(clk),
        .a_en(issued), .a_we(1'b0), .a_addr(issued_b_addr), .a_wdata('0), .a_rdata(lane_b[l]),
        .b_en(host_weight), .b_we(bank_host_we[l]),
        .b_addr(W_AW'(host_addr / 32'(P))), .b_wdata(host_wdata[CODE_W-1:0]),
        .b_rdata(weight_host_rdata[l]));
    assign lane_a[l] = group_a_rdata[lane_group_q[l]][CODE_W-1:0];
  end
  /* verilator lint_off UNUSEDSIGNAL */
  logic [P-1:0][ACC_W-1:0] unused_acc;
  logic [P-1:0] unused_saturated;
  /* verilator lint_on UNUSEDSIGNAL */
  // The operand registers take the block RAMs' words, the product registers the multiplies.
  tg_mac_lane #(.A_W(CODE_W), .B_W(CODE_W), .ACC_W(ACC_W), .OUT_W(ACC_W), .SHIFT_W(8), .MUL_STAGES(2),
                .REQUANT(0), .INIT(0), .LANES(P)) lanes (
      .clk(clk), .rst(rst), .acc_en(s1_valid), .clear(s1_valid && s1_first), .acc_init('0),
      .a(lane_a), .b(lane_b), .emit(s2_emit), .shift('0), .round_even(1'b0),
      .acc(unused_acc), .out(lane_out), .out_valid(lane_out_valid), .out_saturated(unused_saturated));

  // ------------------------------------------------------------------ drain / elementwise
  // The drain walks a tile group by group and each group's columns D lanes a cycle.  Every
  // "is this the last" test is a register computed the cycle before it is needed (the lanes
  // left in the group, the groups and tiles left, the next tile's columns), and the lane
  // drained is a register stepped by D or to the next group's first lane, so a drain step is
  // a few gates from registers instead of adders, compares and a shift from the instruction.
  logic drain_busy, lane_last, group_last, tile_last, tile_drained;
  logic [LANE_CW-1:0] lanes_left, drain_columns, drain_step;
  logic [LANE_AW-1:0] drained_lane, group_base;
  logic [LANE_AW:0] groups_left;
  logic [31:0] tiles_left, drain_rest;
  assign drain_step = LANE_CW'(1) << drain_log;
  // lane_on[j]: drain lane j takes part (j < D), a register (the instruction is stable from
  // DECODE on), so that the init reads' bank enables are not a shift and compare away from it.
  logic [DRAIN_W-1:0] lane_on;
  always_ff @(posedge clk) begin
    for (int j = 0; j < DRAIN_W; j++) lane_on[j] <= LANE_CW'(j) < drain_step;
  end
  logic drain_issue, ew_issue, e1_from_x;
  logic [DRAIN_W-1:0] e1_valid;
  logic signed [63:0] e1_value[DRAIN_W];
  logic [S_AW-1:0] e1_addr[DRAIN_W];
  logic [31:0] unwritten;
  logic all_written;
  /* verilator lint_off UNUSEDSIGNAL */
  logic signed [31:0] o_lane_stride, i_lane_stride;  // unused in a build of one drain lane
  /* verilator lint_on UNUSEDSIGNAL */
  assign o_lane_stride = ins[18][63:32];
  assign i_lane_stride = ins[35][63:32];
  assign drain_issue = (state == RUN_GEMM) && drain_busy;
  assign ew_issue = (state == RUN_EW) && a_valid;
  assign a_ready = issue || ew_issue;
  assign o_ready = drain_issue || ew_issue;
  assign i_ready = drain_issue || ew_issue;

  // A group starts at lane 0 with all of the tile's columns left; a row starts at tile 0.
  assign tile_drained = drain_busy && !lane_out_valid && lane_last && group_last;
  always_ff @(posedge clk) begin
    if (gens_start || (tile_drained && tile_last)) begin
      tiles_left <= tiles;
      tile_last <= tiles <= 32'd1;
      drain_columns <= LANE_CW'(tile_lanes(columns));
      drain_rest <= columns - group_lanes;
    end else if (tile_drained) begin
      tiles_left <= tiles_left - 32'd1;
      tile_last <= tiles_left <= 32'd2;
      drain_columns <= LANE_CW'(tile_lanes(drain_rest));
      drain_rest <= drain_rest - group_lanes;
    end
    if (gens_start) begin
      drain_busy <= 1'b0;
    end else if (lane_out_valid) begin
      drain_busy <= 1'b1;
      drained_lane <= '0;
      group_base <= '0;
      lanes_left <= drain_columns;
      lane_last <= drain_columns <= drain_step;
      groups_left <= (LANE_AW + 1)'(1) << group_log;
      group_last <= group_log == 8'd0;
    end else if (drain_busy) begin
      if (!lane_last) begin
        drained_lane <= drained_lane + LANE_AW'(drain_step);
        lanes_left <= lanes_left - drain_step;
        lane_last <= lanes_left <= drain_step << 1;
      end else if (!group_last) begin
        drained_lane <= group_base + LANE_AW'(group_lanes);
        group_base <= group_base + LANE_AW'(group_lanes);
        lanes_left <= drain_columns;
        lane_last <= drain_columns <= drain_step;
        groups_left <= groups_left - (LANE_AW + 1)'(1);
        group_last <= groups_left <= (LANE_AW + 1)'(2);
      end else begin
        drain_busy <= 1'b0;
      end
    end
  end

  // Drain lane j takes lane drained_lane + j (an EW instruction only lane 0, its X).
  for (genvar j = 0; j < DRAIN_W; j++) begin : g_drain_issue
    always_ff @(posedge clk) begin
      if (rst) e1_valid[j] <= 1'b0;
      else e1_valid[j] <= (drain_issue && lane_on[j]) || (ew_issue && j == 0);
      e1_value[j] <= 64'(signed'(lane_out[LANE_AW'(32'(drained_lane) + 32'(j))]));
      e1_addr[j] <= S_AW'(o_addr + 32'(j) * 32'(o_lane_stride));
    end
  end
  always_ff @(posedge clk) e1_from_x <= ew_issue;

  // The narrowing of every result, in tg_drain's pipelines; their writes go to the scratchpad.
  logic signed [63:0] scratch_i_rdata[DRAIN_W];
  logic signed [63:0] drained_value[DRAIN_W];
  logic [DRAIN_W-1:0] drained, drained_next;
  logic [S_AW-1:0] drained_addr[DRAIN_W];
  for (genvar j = 0; j < DRAIN_W; j++) begin : g_narrow
    tg_drain #(.ADDR_W(S_AW)) narrow (
        .clk(clk), .rst(rst), .load(gens_start), .acc_shift(ins[57][5:0]), .init_shift(ins[58][5:0]),
        .shift(ins[59][7:0]), .init_en(ins[60][1]), .round_even(ins[60][0]), .lo(ins[61]), .hi(ins[62]),
        .in_valid(e1_valid[j]), .x(e1_value[j]),
        .x_read(scratch_a_rdata), .from_read(j == 0 && e1_from_x), .init(scratch_i_rdata[j]),
        .in_addr(e1_addr[j]),
        .out_valid(drained[j]), .out_valid_next(drained_next[j]), .out_addr(drained_addr[j]),
        .out_value(drained_value[j]));
  end

  // The results still to be written count down from the instruction's word 63, and
  // all_written (none left after this cycle's writes) is a register: the compare against the
  // few results a cycle writes is shallow, and an instruction's end is a register's test.
  logic [31:0] drained_count;
  always_comb begin
    drained_count = '0;
    for (int j = 0; j < DRAIN_W; j++) drained_count = drained_count + 32'(drained[j]);
  end
  always_ff @(posedge clk) begin
    if (gens_start) begin
      unwritten <= ins[63][31:0];
      all_written <= ins[63][31:0] == 32'd0;
    end else begin
      unwritten <= unwritten - drained_count;
      all_written <= unwritten == drained_count;
    end
  end

  // ------------------------------------------------------------------ cell units
  // The instruction's opcode picks the unit whose ports reach the scratchpad and the tables.
  logic cell_start, cell_finished, cell_rd_en, cell_wr_en, cell_tbl_en;
  logic [S_AW-1:0] cell_rd_addr, cell_wr_addr;
  logic signed [63:0] cell_wr_data;
  logic [T_AW-1:0] cell_tbl_addr;
  /* verilator lint_off UNUSEDSIGNAL */
  logic [63:0] table_rdata;  // unused in a build without cell units
  /* verilator lint_on UNUSEDSIGNAL */
  logic [63:0] table_host_rdata;
  logic lstm_start, lstm_finished, lstm_rd_en, lstm_wr_en, lstm_tbl_en;
  logic [S_AW-1:0] lstm_rd_addr, lstm_wr_addr;
  logic signed [63:0] lstm_wr_data;
  logic [T_AW-1:0] lstm_tbl_addr;
  if (LSTM_CELL != 0) begin : g_lstm_cell
    tg_lstm_cell #(.NW(NW), .S_AW(S_AW), .T_AW(T_AW), .CODE_W(CODE_W)) cell_unit (
        .clk(clk), .rst(rst), .start(lstm_start), .ins(ins), .finished(lstm_finished),
        .rd_en(lstm_rd_en), .rd_addr(lstm_rd_addr), .rd_data(scratch_a_rdata),
        .wr_en(lstm_wr_en), .wr_addr(lstm_wr_addr), .wr_data(lstm_wr_data),
        .tbl_en(lstm_tbl_en), .tbl_addr(lstm_tbl_addr), .tbl_data(table_rdata));
  end else begin : g_no_lstm_cell
    tg_no_cell #(.S_AW(S_AW), .T_AW(T_AW)) cell_unit (
        .clk(clk), .rst(rst), .start(lstm_start), .finished(lstm_finished),
        .rd_en(lstm_rd_en), .rd_addr(lstm_rd_addr), .wr_en(lstm_wr_en), .wr_addr(lstm_wr_addr),
        .wr_data(lstm_wr_data), .tbl_en(lstm_tbl_en), .tbl_addr(lstm_tbl_addr));
  end
  logic gated, gated_start, gated_finished, gated_rd_en, gated_wr_en, gated_tbl_en;
  logic [S_AW-1:0] gated_rd_addr, gated_wr_addr;
  logic signed [63:0] gated_wr_data;
  logic [T_AW-1:0] gated_tbl_addr;
  if (GRU_RNN_CELL != 0) begin : g_gru_rnn_cell
    tg_gru_rnn_cell #(.NW(NW), .S_AW(S_AW), .T_AW(T_AW), .S_W(S_W)) gated_unit (
        .clk(clk), .rst(rst), .start(gated_start), .ins(ins), .finished(gated_finished),
        .rd_en(gated_rd_en), .rd_addr(gated_rd_addr), .rd_data(scratch_a_rdata),
        .wr_en(gated_wr_en), .wr_addr(gated_wr_addr), .wr_data(gated_wr_data),
        .tbl_en(gated_tbl_en), .tbl_addr(gated_tbl_addr), .tbl_data(table_rdata));
  end else begin : g_no_gru_rnn_cell
    tg_no_cell #(.S_AW(S_AW), .T_AW(T_AW)) gated_unit (
        .clk(clk), .rst(rst), .start(gated_start), .finished(gated_finished),
        .rd_en(gated_rd_en), .rd_addr(gated_rd_addr), .wr_en(gated_wr_en), .wr_addr(gated_wr_addr),
        .wr_data(gated_wr_data), .tbl_en(gated_tbl_en), .tbl_addr(gated_tbl_addr));
  end
  // `gated` (a GCELL runs) is a register from DECODE on, so that the choice of the unit's
  // ports is not the opcode's compare in front of every cell read and write of the scratchpad.
  always_ff @(posedge clk) if (state == DECODE) gated <= op_gcell;
  // cell_running (state == RUN_CELL) is a register of its own, so that write port 0's
  // choice of source, which every scratchpad write waits on, is not the state's decode.
  logic cell_running;
  always_ff @(posedge clk) begin
    if (rst) cell_running <= 1'b0;
    else if (cell_start) cell_running <= 1'b1;
    else if (cell_finished) cell_running <= 1'b0;
  end
  assign lstm_start = cell_start && !op_gcell;
  assign gated_start = cell_start && op_gcell;
  assign cell_finished = gated ? gated_finished : lstm_finished;
  assign cell_rd_en = gated ? gated_rd_en : lstm_rd_en;
  assign cell_rd_addr = gated ? gated_rd_addr : lstm_rd_addr;
  assign cell_wr_en = gated ? gated_wr_en : lstm_wr_en;
  assign cell_wr_addr = gated ? gated_wr_addr : lstm_wr_addr;
  assign cell_wr_data = gated ? gated_wr_data : lstm_wr_data;
  assign cell_tbl_en = gated ? gated_tbl_en : lstm_tbl_en;
  assign cell_tbl_addr = gated ? gated_tbl_addr : lstm_tbl_addr;
  tg_ram_dp #(.WIDTH(64), .DEPTH(T_DEPTH), .STYLE(T_RAM)) act_table (
      .clk(clk),
      .a_en(cell_tbl_en), .a_we(1'b0), .a_addr(cell_tbl_addr), .a_wdata('0), .a_rdata(table_rdata),
      .b_en(host_table), .b_we(host_we), .b_addr(T_AW'(host_addr)), .b_wdata(host_wdata),
      .b_rdata(table_host_rdata));

  // ------------------------------------------------------------------ input and output streams
  logic host_scratch_read, host_scratch_write;
  assign host_scratch_read = host_scratch && !host_we;
  assign host_scratch_write = host_scratch && host_we;

  // in_expected (more codes expected) is a register, so that in_ready, which a word's arrival
  // and the stream's counters wait on, is a few gates from registers.  in_left counts codes:
  // an armed stream's word is one code, an INPUT instruction's word IN_PACK (in_packed).
  // An INPUT's words pass through a queue of two (in_queue): the stream takes a word on every
  // edge the queue has room for it, in any state (an INPUT in the background arms the stream
  // and the program runs on), and the queue's head is written in a cycle no other source
  // writes the scratchpad (in_write), through write ports 0 .. IN_PACK-1.  An INPUT not in
  // the background waits until every code is written (in_busy low), and so does the decode
  // of an instruction that waits for the input (decoded).  in_queued (in_held != 0) is a
  // register, so that the input's claim on write port 0 is too.
  logic [31:0] in_addr, in_left, in_step;
  logic in_fire, in_load, in_expected, in_expected_after, in_packed, in_busy, in_background;
  logic [63:0] in_queue[2];
  logic [1:0] in_held;
  logic in_head, in_tail, in_room, in_queued, in_write, in_push, scratch_writing;
  assign in_ready = in_expected && (in_packed ? in_room : idle && !host_scratch_write);
  assign in_fire = in_valid && in_ready;
  assign in_busy = in_expected || in_queued;
  assign decoded = (state == DECODE) && !(ins[0][24] && in_busy);
  assign in_load = decoded && op_input;
  assign in_background = ins[3][0];
  assign in_step = in_packed ? 32'(IN_PACK) : 32'd1;
  assign in_expected_after = in_left > in_step;
  assign in_push = in_valid && in_expected && in_packed && in_room;  // in_fire && in_packed, not behind idle
  // drain_writing (drained != 0) is a register from the drains' valid bits a stage early,
  // so that the input's claim is not an OR over the drain lanes, which lie across the chip.
  logic drain_writing;
  always_ff @(posedge clk) drain_writing <= !rst && drained_next != '0;
  assign scratch_writing = drain_writing || (cell_running && cell_wr_en) || host_scratch_write;
  assign in_write = in_queued && !scratch_writing;
  always_ff @(posedge clk) begin
    if (rst) begin
      in_addr <= '0;
      in_left <= '0;
      in_expected <= 1'b0;
      in_packed <= 1'b0;
    end else if (in_load) begin
      in_addr <= ins[1][31:0];
      in_left <= ins[2][31:0];
      in_expected <= ins[2][31:0] != 32'd0;
      in_packed <= 1'b1;
    end else if (in_arm) begin
      in_addr <= in_base;
      in_left <= in_count;
      in_expected <= in_count != 32'd0;
      in_packed <= 1'b0;
    end else if (in_fire) begin
      in_addr <= in_addr + in_step;
      in_left <= in_expected_after ? in_left - in_step : 32'd0;
      in_expected <= in_expected_after;
    end
  end
  // A word pushed on the edge that empties the queue lands in a slot no count covers, so
  // the queue's memory is written on in_push alone, not behind the decode of an INPUT.
  always_ff @(posedge clk) if (in_push) in_queue[in_tail] <= in_data;
  always_ff @(posedge clk) begin
    if (rst || in_load || in_arm) begin
      in_held <= '0;
      in_queued <= 1'b0;
      in_room <= 1'b1;
      in_head <= 1'b0;
      in_tail <= 1'b0;
    end else begin
      if (in_push) in_tail <= ~in_tail;
      if (in_write) in_head <= ~in_head;
      in_held <= in_held + 2'(in_push) - 2'(in_write);
      in_queued <= in_held + 2'(in_push) - 2'(in_write) != 2'd0;
      in_room <= in_held + 2'(in_push) - 2'(in_write) != 2'd2;
    end
  end

  // The queue's head word is written to the codes' next words, lane j code j of the word
  // (consecutive words: distinct banks); lanes past the instruction's last code stay off.
  // Each lane's address and whether it is live are registers stepped on every write.  An
  // armed stream's word goes straight to port 0.
  logic [31:0] in_unwritten;
  logic [IN_PACK-1:0] in_lane_live, in_lane_en;
  logic [IN_PACK-1:0][S_AW-1:0] in_lane_addr;
  logic [IN_PACK-1:0][S_W-1:0] in_lane_code;
  always_ff @(posedge clk) begin
    if (in_load) in_unwritten <= ins[2][31:0];
    else if (in_write) in_unwritten <= in_unwritten > 32'(IN_PACK) ? in_unwritten - 32'(IN_PACK) : 32'd0;
  end
  for (genvar j = 0; j < IN_PACK; j++) begin : g_input_lane
    always_ff @(posedge clk) begin
      if (in_load) begin
        in_lane_live[j] <= ins[2][31:0] > 32'(j);
        in_lane_addr[j] <= S_AW'(ins[1][31:0] + 32'(j));
      end else if (in_write) begin
        in_lane_live[j] <= in_unwritten > 32'(IN_PACK + j);
        in_lane_addr[j] <= in_lane_addr[j] + S_AW'(IN_PACK);
      end
    end
    assign in_lane_en[j] = in_write && in_lane_live[j];
    assign in_lane_code[j] = S_W'(64'(signed'(in_queue[in_head][j * IN_FIELD +: IN_FIELD])));
  end

  // Reads are issued only when the buffer will have room for their word one edge later:
  // buffered + in flight - taken this cycle < 2.  out_owed (out_left != 0) is a register, as
  // in_expected is.
  logic [31:0] out_addr, out_left;
  logic out_owed;
  logic [63:0] out_buffer[2];
  logic out_head, out_tail, out_fetch, out_fetched, out_take;
  logic [1:0] out_held, out_claimed;
  assign out_valid = out_held != 2'd0;
  assign out_data = out_buffer[out_head];
  assign out_take = out_valid && out_ready;
  assign out_claimed = out_held + 2'(out_fetched) - 2'(out_take);
  assign out_fetch = idle && out_owed && !host_scratch_read && out_claimed < 2'd2;
  always_ff @(posedge clk) begin
    if (rst || out_arm) begin
      out_addr <= out_base;
      out_left <= rst ? 32'd0 : out_count;
      out_owed <= !rst && out_count != 32'd0;
      out_head <= 1'b0;
      out_tail <= 1'b0;
      out_held <= '0;
      out_fetched <= 1'b0;
    end else begin
      out_fetched <= out_fetch;
      if (out_fetch) begin
        out_addr <= out_addr + 32'd1;
        out_left <= out_left - 32'd1;
        out_owed <= out_left != 32'd1;
      end
      if (out_fetched) begin
        out_buffer[out_tail] <= scratch_a_rdata;
        out_tail <= ~out_tail;
      end
      if (out_take) out_head <= ~out_head;
      out_held <= out_held + 2'(out_fetched) - 2'(out_take);
    end
  end

  // ------------------------------------------------------------------ scratchpad (banked, two copies)
  // Two copies of BANKS banks each (tg_ram_banked), every write going to both: copy A's read
  // port 0 serves the A / X operand stream (row group 0), cell reads, the output stream and
  // host reads, its ports 1 .. GROUPS-1 the A streams of row groups 1 ..; copy I's read port
  // j the init stream of drain lane j.  Write port 0 takes drain lane 0's results or the
  // cell's, the input stream's or the host's words, write port j > 0 drain lane j's.
  logic s_read_en, s_write_en;
  logic [S_AW-1:0] s_read_addr, s_write_addr;
  /* verilator lint_off UNUSEDSIGNAL */
  logic [63:0] s_write_data;  // codes of S_W bits: the bits above are their sign
  /* verilator lint_on UNUSEDSIGNAL */
  always_comb begin
    // The reads are apart by state: the A / X stream's and the cell's while a program
    // runs, the output stream's and the host's while idle.  Port 0's address is chosen by
    // registers (idle, cell_running) and the host's request, so that neither the issue nor
    // the output stream's flow control is in front of the banks' address inputs.
    s_read_en = issue || ew_issue || (cell_running && cell_rd_en) || out_fetch || host_scratch_read;
    if (!idle) s_read_addr = cell_running ? cell_rd_addr : S_AW'(a_addr);
    else s_read_addr = host_scratch_read ? S_AW'(host_addr) : S_AW'(out_addr);
    // Port 0's address and data are chosen by the registered sources alone (a drain
    // result, the cell's write, the host's) and otherwise by the input's mode: the input
    // writes only in a cycle none of them does, so its claim (in_write, in_fire) gates
    // the enable and not the wide multiplexer.
    s_write_en = drained[0] || (cell_running && cell_wr_en) || in_lane_en[0] || (in_fire && !in_packed)
                 || host_scratch_write;
    if (drained[0]) begin
      s_write_addr = drained_addr[0];
      s_write_data = drained_value[0];
    end else if (cell_running && cell_wr_en) begin
      s_write_addr = cell_wr_addr;
      s_write_data = cell_wr_data;
    end else if (host_scratch_write) begin
      s_write_addr = S_AW'(host_addr);
      s_write_data = host_wdata;
    end else if (in_packed) begin
      s_write_addr = in_lane_addr[0];
      s_write_data = 64'(signed'(in_lane_code[0]));
    end else begin
      s_write_addr = S_AW'(in_addr);
      s_write_data = in_data;
    end
  end

  // Ports j > 0 likewise: an input lane writes only where no drain lane does.
  logic [DRAIN_W-1:0] w_en;
  logic [DRAIN_W-1:0][S_AW-1:0] w_addr;
  logic [DRAIN_W-1:0][S_W-1:0] w_data;
  always_comb begin
    for (int j = 0; j < DRAIN_W; j++) begin
      w_en[j] = (j == 0) ? s_write_en : drained[j];
      w_addr[j] = (j == 0) ? s_write_addr : drained_addr[j];
      w_data[j] = (j == 0) ? s_write_data[S_W-1:0] : drained_value[j][S_W-1:0];
    end
    for (int j = 1; j < IN_PACK; j++) begin
      w_en[j] = drained[j] || in_lane_en[j];
      if (!drained[j]) begin
        w_addr[j] = in_lane_addr[j];
        w_data[j] = in_lane_code[j];
      end
    end
  end

  logic [GROUPS-1:0] a_en;
  logic [GROUPS-1:0][S_AW-1:0] a_port_addr;
  logic [GROUPS-1:0][S_W-1:0] a_word;
  always_comb begin
    for (int g = 0; g < GROUPS; g++) begin
      a_en[g] = (g == 0) ? s_read_en : issue;
      a_port_addr[g] = (g == 0) ? s_read_addr : S_AW'(a_addr + 32'(g) * 32'(a_group_stride));
    end
  end
  tg_ram_banked #(.WIDTH(S_W), .DEPTH(S_DEPTH), .BANKS(BANKS), .RD(GROUPS), .WR(DRAIN_W), .STYLE(SA_RAM))
      scratch_a (
      .clk(clk), .rst(rst), .rd_en(a_en), .rd_addr(a_port_addr), .rd_data(a_word),
      .wr_en(w_en), .wr_addr(w_addr), .wr_data(w_data));
  assign scratch_a_rdata = 64'(signed'(a_word[0]));
  for (genvar g = 0; g < GROUPS; g++) begin : g_group_operand
    always_ff @(posedge clk) group_a_rdata[g] <= 64'(signed'(a_word[g]));
  end

  logic [DRAIN_W-1:0] i_en;
  logic [DRAIN_W-1:0][S_AW-1:0] i_port_addr;
  logic [DRAIN_W-1:0][S_W-1:0] i_word;
  always_comb begin
    for (int j = 0; j < DRAIN_W; j++) begin
      i_en[j] = i_ready && lane_on[j];
      i_port_addr[j] = S_AW'(i_addr + 32'(j) * 32'(i_lane_stride));
    end
  end
  tg_ram_banked #(.WIDTH(S_W), .DEPTH(S_DEPTH), .BANKS(BANKS), .RD(DRAIN_W), .WR(DRAIN_W), .STYLE(SI_RAM))
      scratch_i (
      .clk(clk), .rst(rst), .rd_en(i_en), .rd_addr(i_port_addr), .rd_data(i_word),
      .wr_en(w_en), .wr_addr(w_addr), .wr_data(w_data));
  for (genvar j = 0; j < DRAIN_W; j++) begin : g_init_operand
    assign scratch_i_rdata[j] = 64'(signed'(i_word[j]));
  end

  always_comb begin
    case (host_mem_q)
      2'd0: host_rdata = prog_host_rdata;
      2'd1: host_rdata = 64'(signed'(weight_host_rdata[host_addr_q % 32'(P)]));
      2'd2: host_rdata = scratch_a_rdata;
      default: host_rdata = table_host_rdata;
    endcase
  end

  // ------------------------------------------------------------------ performance counters
  always_ff @(posedge clk) begin
    if (rst || (idle && start)) begin
      gemm_cycles <= '0;
      ew_cycles <= '0;
      cell_cycles <= '0;
    end else begin
      if (state == RUN_GEMM) gemm_cycles <= gemm_cycles + 64'd1;
      if (state == RUN_EW) ew_cycles <= ew_cycles + 64'd1;
      if (state == RUN_CELL) cell_cycles <= cell_cycles + 64'd1;
    end
  end

  // ------------------------------------------------------------------ controller
  assign gens_start = decoded && op_gens;
  assign cell_start = decoded && (op_cell || op_gcell);
  always_ff @(posedge clk) begin
    if (rst) begin
      state <= IDLE;
      done <= 1'b0;
    end else begin
      case (state)
        IDLE: if (start) begin
          done <= 1'b0;
          state <= FETCH;
        end
        FETCH: if (take) state <= DECODE;
        DECODE: if (decoded) begin
          case (opcode)
            OP_GEMM: state <= RUN_GEMM;
            OP_EW: state <= RUN_EW;
            OP_CELL, OP_GCELL: state <= RUN_CELL;
            OP_INPUT: state <= in_background ? FETCH : RUN_INPUT;
            default: begin
              done <= 1'b1;
              state <= IDLE;
            end
          endcase
        end
        // Every result in flight is one still to be written, so all_written alone says the
        // drain is empty: no OR over the drain lanes' pipelines, which lie across the chip.
        RUN_GEMM, RUN_EW: if (all_written) state <= FETCH;
        RUN_CELL: if (cell_finished) state <= FETCH;
        RUN_INPUT: if (!in_busy) state <= FETCH;
        default: state <= IDLE;
      endcase
    end
  end
endmodule
