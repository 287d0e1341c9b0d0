// GRU and RNN cell unit: one GCELL instruction updates one batch row of one direction, H
// elements, in the golden model's integer arithmetic (fixedpoint/programs.py, GRUProgram and
// RNNProgram).  The recurrent contractions and their epilogues (gate terms, formats, clip) are
// GEMMs before it; this unit does the elementwise rest.  Three modes (flags bits 5:4):
//
//   RNN     h' = act(pre), or max(pre, 0) with flags.relu
//   RESET   (GRU without linear_before_reset, before R_h·(r ⊙ h))
//           r = σ(pre_r);  rh = clamp(round(r·h, h_shift), h_lo, h_hi)  written to the y row
//   UPDATE  z = σ(pre_z);  r = σ(pre_r)
//           linear_before_reset:  pre_h = clamp(round((r·rn << n_prod) + (gx_h << n_gx), n_shift),
//                                               n_lo, n_hi)            (PT's range and the clip)
//           otherwise pre_h is read (the GEMM of R_h·rh + gx_h made it)
//           n = tanh(pre_h)
//           h' = clamp(round(((ONE - z)·n << h_n) + (z·h << h_z), h_shift), h_lo, h_hi)
//
// With a sequence length (flags.has_len) the row is active when t < len; an inactive row
// keeps h and writes 0 to y.  Operands and results live in the scratchpad (one read and one
// write port, read latency one cycle); σ and tanh (or the RNN's unit) are configurations of
// one tg_act_pipe over one table memory.
//
// A modulo-scheduled pipeline as tg_lstm_cell's: element k starts in cycle II·k (II = 5 for
// UPDATE, 2 for RESET and RNN) and does everything at fixed offsets from its start, distinct
// mod II per resource (read port, table, write port).  The datapath is free-running while
// the instruction runs (enabled by `running`); the offsets pick its results.  Offsets (reads
// registered two cycles later, lookups 12 cycles to their result, each narrowing 8 cycles
// from its multiply to its clamped result):
//   UPDATE  0-4 read pre_z, pre_r, rn / pre_h, gx_h (linear_before_reset), h
//           2, 3 look up σ(pre_z), σ(pre_r);  16 r·rn (and gx_h at 17) -> pre_h in 24
//           24 look up tanh(pre_h);  37 (ONE - z)·n and z·h -> h' in 45: written; y in 46
//   RESET   0, 1 read pre_r, h;  2 look up σ(pre_r);  15 r·h -> rh in 23: written
//   RNN     0 read pre;  2 look up act(pre);  h' in 15: written; y in 16
// RESET's r·h goes through UPDATE's pre_h narrowing (the same operand taps, a cycle
// earlier), with the hidden format's shift and bounds.  Multipliers are OP_W = S_W + 2 bits
// (every operand is a scratchpad word or a gate, and ONE - z fits), the sums and their
// rounding 64 bits as in the golden model.  An instruction of H elements takes II·H plus the
// last element's schedule (47, 24 or 17 cycles) plus the length read.
//
// Instruction words (64 bits each): 1 pre_z / pre_r (RESET) / pre (RNN) row address,
// 2 pre_r, 3 rn or pre_h, 4 gx_h, 5 h, 6 y (RESET: rh), 7 H, 8 len address, 9 t,
// 10 flags {relu, mode[1:0], linear_before_reset, write_y, round_even, has_len} (bit 6..0),
// 11 ONE, 12 n_prod, 13 n_gx, 14 n_shift, 15 n_lo, 16 n_hi, 17 h_n, 18 h_z, 19 h_shift,
// 20 h_lo, 21 h_hi, 22 unit output lo, 23 unit output hi, then per unit u (σ or the RNN's
// activation, tanh) at 24 + 8u: pwl, lo, span - 1, index_shift, offset_drop, guard_bits,
// table base.  They are sampled at `start`.
module tg_gru_rnn_cell #(
    parameter int NW = 64,
    parameter int S_AW = 13,
    parameter int T_AW = 12,
    parameter int S_W = 64
) (
    input  logic                           clk,
    input  logic                           rst,
    input  logic                           start,
    input  logic        [NW-1:0][    63:0] ins,
    output logic                           finished,
    output logic                           rd_en,
    output logic        [  S_AW-1:0]       rd_addr,
    input  logic signed [      63:0]       rd_data,
    output logic                           wr_en,
    output logic        [  S_AW-1:0]       wr_addr,
    output logic signed [      63:0]       wr_data,
    output logic                           tbl_en,
    output logic        [  T_AW-1:0]       tbl_addr,
    input  logic        [      63:0]       tbl_data
);
  localparam int OP_W = (S_W + 2 < 64) ? S_W + 2 : 64;
  localparam int PRODUCT_W = (2 * OP_W < 64) ? 2 * OP_W : 64;  // a 64-bit product wraps as the golden one
  localparam int ACT_LATENCY = 12;
  localparam int NARROW_LATENCY = 8;  // multiply, shifts, add, tg_requant_pipe, clamp
  localparam int READ_LATENCY = 2;  // a read's word is rd_q two cycles after its offset
  // Offsets from an element's start (the schedule above).
  localparam int LOOK_FIRST = 2, LOOK_R = 3;
  localparam int MUL_RESET = LOOK_FIRST + ACT_LATENCY + 1;  // 15
  localparam int MUL_N = LOOK_R + ACT_LATENCY + 1;  // 16
  localparam int WRITE_RH = MUL_RESET + NARROW_LATENCY;  // 23
  localparam int LOOK_N = MUL_N + NARROW_LATENCY;  // 24
  localparam int MUL_H = LOOK_N + ACT_LATENCY + 1;  // 37
  localparam int WRITE_H = MUL_H + NARROW_LATENCY;  // 45
  localparam int WRITE_Y = WRITE_H + 1;  // 46
  localparam int RNN_WRITE_H = LOOK_FIRST + ACT_LATENCY + 1;  // 15
  localparam int RNN_WRITE_Y = RNN_WRITE_H + 1;  // 16
  // Taps of the read-word delay line (rd_d[n]: rd_q of n + 1 cycles ago): the word read at
  // offset 1 (RESET's h) in cycle MUL_RESET, at 2 (rn) in MUL_N, at 3 (gx_h) in MUL_N + 1 and
  // at 0 (the RNN's pre) in RNN_WRITE_H - 1 are one tap; pre_h (read at 2) in LOOK_N; h (read
  // at 4) in MUL_H.
  localparam int OPERAND_TAP = MUL_RESET - 1 - (1 + READ_LATENCY);  // 11
  localparam int PRE_H_TAP = LOOK_N - 1 - (2 + READ_LATENCY);  // 19
  localparam int H_TAP = MUL_H - 1 - (4 + READ_LATENCY);  // 30
  localparam int Z_TAP = (MUL_H - 1) - 1 - (LOOK_FIRST + ACT_LATENCY);  // z (act_y at 14) in MUL_H - 1
  localparam logic [1:0] MODE_RNN = 2'd0;
  localparam logic [1:0] MODE_RESET = 2'd1;
  localparam logic [1:0] MODE_UPDATE = 2'd2;

  // ---------------------------------------------------------------- the instruction's fields
  logic [S_AW-1:0] first_base, pre_r_base, candidate_base, gx_base, h_base, y_base, len_addr;
  logic [31:0] hidden;
  logic signed [63:0] t_now;
  logic round_even, write_y, lbr, relu;
  logic [1:0] mode;
  logic signed [OP_W-1:0] one;
  logic [5:0] n_prod_shift, n_gx_shift, h_n_shift, h_z_shift;
  logic [7:0] n_shift, h_shift;
  logic signed [63:0] n_lo, n_hi, h_lo, h_hi, unit_lo_out, unit_hi_out;
  logic [2:0] unit_pwl;
  logic [2:0][63:0] unit_lo;
  logic [2:0][31:0] unit_span_m1;
  logic [2:0][5:0] unit_index_shift, unit_offset_drop, unit_guard_bits;
  logic [2:0][T_AW-1:0] unit_base;
  logic reset_mode;
  assign reset_mode = ins[10][5:4] == MODE_RESET;
  always_ff @(posedge clk) begin
    if (start) begin
      first_base <= S_AW'(ins[1]);
      pre_r_base <= S_AW'(ins[2]);
      candidate_base <= S_AW'(ins[3]);
      gx_base <= S_AW'(ins[4]);
      h_base <= S_AW'(ins[5]);
      y_base <= S_AW'(ins[6]);
      hidden <= ins[7][31:0];
      len_addr <= S_AW'(ins[8]);
      t_now <= ins[9];
      {relu, mode, lbr, write_y, round_even} <= ins[10][6:1];  // bit 0, has_len, picks the first state
      one <= OP_W'(ins[11]);
      // RESET narrows r·h with the hidden format's shift and bounds, and no gx term.
      n_prod_shift <= reset_mode ? 6'd0 : ins[12][5:0];
      n_gx_shift <= ins[13][5:0];
      n_shift <= reset_mode ? ins[19][7:0] : ins[14][7:0];
      n_lo <= reset_mode ? ins[20] : ins[15];
      n_hi <= reset_mode ? ins[21] : ins[16];
      h_n_shift <= ins[17][5:0];
      h_z_shift <= ins[18][5:0];
      h_shift <= ins[19][7:0];
      h_lo <= ins[20];
      h_hi <= ins[21];
      unit_lo_out <= ins[22];
      unit_hi_out <= ins[23];
      // Units 0 (σ or the RNN's) and 1 (tanh); the pipe's third configuration repeats unit 0.
      for (int u = 0; u < 3; u++) begin
        unit_pwl[u] <= ins[24+8*(u%2)] != 64'd0;
        unit_lo[u] <= ins[25+8*(u%2)];
        unit_span_m1[u] <= ins[26+8*(u%2)][31:0];
        unit_index_shift[u] <= ins[27+8*(u%2)][5:0];
        unit_offset_drop[u] <= ins[28+8*(u%2)][5:0];
        unit_guard_bits[u] <= ins[29+8*(u%2)][5:0];
        unit_base[u] <= ins[30+8*(u%2)][T_AW-1:0];
      end
    end
  end

  // ---------------------------------------------------------------- sequencing
  typedef enum logic [2:0] {IDLE, LEN_READ, LEN_WAIT, LEN_TAKE, RUN} state_t;
  state_t state;
  logic active, launch, update, resetting, rnn;
  logic [2:0] phase, last_phase;
  logic [31:0] launched, retired;
  // since[d]: an element started d + 1 cycles ago (so offset d + 1 of its schedule is now).
  logic [WRITE_Y-1:0] since;
  logic signed [63:0] rd_q;
  assign update = mode == MODE_UPDATE;
  assign resetting = mode == MODE_RESET;
  assign rnn = mode == MODE_RNN;
  assign last_phase = update ? 3'd4 : 3'd1;
  assign launch = state == RUN && phase == 3'd0 && launched < hidden;
  // running: an instruction is in flight; the datapath, the activation pipe and the
  // narrowings move only then (clock enables), so an idle unit costs a simulation nothing.
  logic running;
  assign running = state != IDLE;

  function automatic logic at(input int offset);
    at = (offset == 0) ? launch : since[offset-1];
  endfunction

  // The element's first write (h', or RESET's rh) and its last event.
  logic first_write, y_write, retire;
  assign first_write = update ? at(WRITE_H) : (resetting ? at(WRITE_RH) : at(RNN_WRITE_H));
  assign y_write = update ? at(WRITE_Y) : (rnn && at(RNN_WRITE_Y));
  assign retire = resetting ? first_write : y_write;

  always_ff @(posedge clk) begin
    if (rst) begin
      state <= IDLE;
      finished <= 1'b0;
    end else begin
      finished <= 1'b0;
      case (state)
        IDLE: if (start) state <= ins[10][0] ? LEN_READ : RUN;
        LEN_READ: state <= LEN_WAIT;
        LEN_WAIT: state <= LEN_TAKE;
        LEN_TAKE: state <= RUN;
        RUN: if (retire && retired + 32'd1 >= hidden) begin
          finished <= 1'b1;
          state <= IDLE;
        end
        default: state <= IDLE;
      endcase
    end
  end

  always_ff @(posedge clk) begin
    if (rst || start) since <= '0;
    else since <= {since[WRITE_Y-2:0], launch};
    if (start) begin
      active <= 1'b1;
      phase <= '0;
      launched <= '0;
      retired <= '0;
    end else begin
      if (state == LEN_TAKE) active <= t_now < rd_q;
      if (state == RUN) phase <= (phase == last_phase) ? 3'd0 : phase + 3'd1;
      if (launch) launched <= launched + 32'd1;
      if (retire) retired <= retired + 32'd1;
    end
  end

  // ---------------------------------------------------------------- reads
  logic [S_AW-1:0] read_k, first_k, y_k;
  logic last_read;
  assign last_read = update ? at(4) : (resetting ? at(1) : at(0));
  always_ff @(posedge clk) begin
    if (start) read_k <= '0;
    else if (last_read) read_k <= read_k + S_AW'(1);
    rd_q <= rd_data;
  end
  always_comb begin
    rd_en = 1'b1;
    rd_addr = '0;
    if (state == LEN_READ) rd_addr = len_addr;
    else if (at(0)) rd_addr = first_base + read_k;
    else if (at(1) && update) rd_addr = pre_r_base + read_k;
    else if (at(1) && resetting) rd_addr = h_base + read_k;
    else if (at(2) && update) rd_addr = candidate_base + read_k;
    else if (at(3) && update && lbr) rd_addr = gx_base + read_k;
    else if (at(4) && update) rd_addr = h_base + read_k;
    else rd_en = 1'b0;
  end

  // ---------------------------------------------------------------- activations
  logic lookup, look_n;
  logic [1:0] unit;
  logic signed [63:0] act_q, pre_h;
  /* verilator lint_off UNUSEDSIGNAL */
  logic signed [63:0] act_y;  // a unit-format code: the bits above OP_W are its sign
  /* verilator lint_on UNUSEDSIGNAL */
  assign look_n = update && at(LOOK_N);
  always_comb begin
    lookup = (at(LOOK_FIRST) && !(rnn && relu)) || (update && at(LOOK_R)) || look_n;
    unit = look_n ? 2'd1 : 2'd0;
    act_q = look_n ? pre_h : rd_q;
  end
  tg_act_pipe #(.ADDR_W(T_AW)) act (
      .clk(clk), .en(running), .lookup(lookup), .q(act_q), .unit(unit), .pwl(unit_pwl), .lo(unit_lo),
      .span_m1(unit_span_m1), .index_shift(unit_index_shift), .offset_drop(unit_offset_drop),
      .guard_bits(unit_guard_bits), .base(unit_base), .out_lo(unit_lo_out), .out_hi(unit_hi_out),
      .round_even(round_even), .tbl_en(tbl_en), .table_addr(tbl_addr), .table_word(tbl_data), .y(act_y));

  // ---------------------------------------------------------------- the free-running datapath
  // rd_d[n] holds rd_q of n + 1 cycles ago, z_d[n] act_y of n + 1 cycles ago, y_d act_y of one.
  logic signed [OP_W-1:0] rd_d[H_TAP+1], z_d[Z_TAP+1], y_d;
  always_ff @(posedge clk) begin
    if (running) begin
      rd_d[0] <= OP_W'(rd_q);
      for (int n = 1; n <= H_TAP; n++) rd_d[n] <= rd_d[n-1];
      z_d[0] <= OP_W'(act_y);
      for (int n = 1; n <= Z_TAP; n++) z_d[n] <= z_d[n-1];
      y_d <= OP_W'(act_y);
    end
  end

  // pre_h (UPDATE, cycle MUL_N: r = y_d, rn = rd_d[OPERAND_TAP]; gx_h a cycle later at the
  // same tap) or RESET's rh (cycle MUL_RESET: r = y_d, h = rd_d[OPERAND_TAP]).
  logic gx_en;
  assign gx_en = update && lbr;
  logic signed [PRODUCT_W-1:0] r_times_x;
  logic signed [63:0] rx_term, gx_term, n_sum, n_rounded, n_new;
  logic unused_n_saturated, n_below, n_above;
  always_ff @(posedge clk) begin
    if (running) begin
      r_times_x <= y_d * rd_d[OPERAND_TAP];
      rx_term <= 64'(r_times_x) <<< n_prod_shift;
      gx_term <= gx_en ? 64'(rd_d[OPERAND_TAP]) <<< n_gx_shift : '0;
      n_sum <= rx_term + gx_term;
      n_new <= n_below ? n_lo : (n_above ? n_hi : n_rounded);
    end
  end
  tg_requant_pipe #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) pre_h_narrow (
      .clk(clk), .en(running), .value(n_sum), .shift(n_shift), .round_even(round_even), .lo(n_lo), .hi(n_hi),
      .result(n_rounded), .saturated(unused_n_saturated), .below(n_below), .above(n_above));
  assign pre_h = lbr ? n_new : 64'(rd_d[PRE_H_TAP]);

  // h' (UPDATE, cycle MUL_H: ONE - z and z registered the cycle before, n = y_d, h = rd_d[H_TAP]).
  logic signed [OP_W-1:0] one_minus_z, gate_z;
  logic signed [PRODUCT_W-1:0] n_product, h_product;
  logic signed [63:0] n_term, h_term, h_sum, h_rounded, h_new, rnn_h, h_out, h_held;
  logic unused_h_saturated, h_below, h_above;
  always_ff @(posedge clk) begin
    if (running) begin
      one_minus_z <= one - z_d[Z_TAP];
      gate_z <= z_d[Z_TAP];
      n_product <= one_minus_z * y_d;
      h_product <= gate_z * rd_d[H_TAP];
      n_term <= 64'(n_product) <<< h_n_shift;
      h_term <= 64'(h_product) <<< h_z_shift;
      h_sum <= n_term + h_term;
      h_new <= h_below ? h_lo : (h_above ? h_hi : h_rounded);
      // The RNN's h' in cycle RNN_WRITE_H (act(pre) = act_y, pre = rd_d[OPERAND_TAP] the cycle before).
      rnn_h <= relu ? (rd_d[OPERAND_TAP] < 0 ? '0 : 64'(rd_d[OPERAND_TAP])) : act_y;
      if (first_write) h_held <= h_out;
    end
  end
  tg_requant_pipe #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) hidden_narrow (
      .clk(clk), .en(running), .value(h_sum), .shift(h_shift), .round_even(round_even), .lo(h_lo), .hi(h_hi),
      .result(h_rounded), .saturated(unused_h_saturated), .below(h_below), .above(h_above));
  assign h_out = rnn ? rnn_h : h_new;

  // ---------------------------------------------------------------- writes
  always_ff @(posedge clk) begin
    if (start) begin
      first_k <= '0;
      y_k <= '0;
    end else begin
      if (first_write) first_k <= first_k + S_AW'(1);
      if (y_write) y_k <= y_k + S_AW'(1);
    end
  end
  always_comb begin
    wr_en = 1'b0;
    wr_addr = '0;
    wr_data = '0;
    if (first_write && resetting) begin
      wr_en = 1'b1;
      wr_addr = y_base + first_k;
      wr_data = n_new;
    end else if (first_write) begin
      wr_en = active;
      wr_addr = h_base + first_k;
      wr_data = h_out;
    end else if (y_write) begin
      wr_en = write_y;
      wr_addr = y_base + y_k;
      wr_data = active ? h_held : '0;
    end
  end

  // Each resource serves one element a cycle: its events' offsets are distinct mod II.
  function automatic logic [4:0] slot(input int offset, input int ii);
    slot = 5'(1) << (offset % ii);
  endfunction
  localparam logic [4:0] UPDATE_LOOKUPS = slot(LOOK_FIRST, 5) | slot(LOOK_R, 5) | slot(LOOK_N, 5);
  localparam logic [4:0] UPDATE_WRITES = slot(WRITE_H, 5) | slot(WRITE_Y, 5);
  localparam logic [4:0] RNN_WRITES = slot(RNN_WRITE_H, 2) | slot(RNN_WRITE_Y, 2);
  if ($countones(UPDATE_LOOKUPS) != 3 || $countones(UPDATE_WRITES) != 2 || $countones(RNN_WRITES) != 2)
  begin : g_bad_schedule
    $error("tg_gru_rnn_cell: two events of one resource share a cycle of the schedule");
  end
endmodule
