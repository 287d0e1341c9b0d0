// LSTM cell unit: one CELL instruction updates one batch row of one direction, H elements,
// in the golden model's integer arithmetic (fixedpoint/programs.py):
//
//   i = σ(pre_i)   f = σ(pre_f) (ONE - i with input_forget)   g = tanh(pre_c)
//   c' = clamp(round((f·c << fc_shift) + (i·g << ig_shift), c_shift), c_lo, c_hi)
//   o = σ(pre_o)   h' = clamp(round(o · tanh_cell(c'), h_shift), h_lo, h_hi)
//
// With a sequence length (flags.has_len) the row is active when t < len; an inactive row
// keeps h and c and writes 0 to y.  Operands and results live in the scratchpad (one read
// and one write port, read latency one cycle); σ, tanh and tanh_cell are configurations of
// one tg_act_pipe over one table memory.
//
// A modulo-scheduled pipeline: element k starts in cycle 5k and does everything at fixed
// offsets from its start, so that the scratchpad's read port, the table and the write port
// each serve at most one element per cycle (five reads, five lookups and three writes in
// five cycles: distinct offsets mod 5).  The datapath itself is free-running while the
// instruction runs (registers enabled only by `running`, delay lines for values that wait);
// the offsets pick its results:
//    0-4  read pre_i, pre_f, pre_c, c, pre_o       (each word registered two cycles later)
//    2, 3, 4, 6   look up σ(pre_i), σ(pre_f), tanh(pre_c), σ(pre_o)  -> i, f, g, o at +12
//   17    f·c and i·g (gate-width multipliers, registered), 18 the shifts, 19 the add,
//   20-23 rounding, 24 the clamp -> c' in cycle 25: written, and tanh_cell(c') looked up
//   37    o·tanh_cell(c'), 38-41 rounding, 42 the clamp -> h' in 43: written; y in 44
// Multipliers are OP_W = CODE_W + 2 bits (gates, cell states and ONE - i fit), the sums and
// their rounding 64 bits as in the golden model.  An instruction of H elements takes
// 5H + 45 cycles plus the length read.
//
// Instruction words (64 bits each): 1-4 pre_i/pre_o/pre_f/pre_c row addresses, 5 c, 6 h,
// 7 y, 8 H, 9 len address, 10 t, 11 flags {write_y, round_even, input_forget, has_len},
// 12 ONE, 13 fc_shift, 14 ig_shift, 15 c_shift, 16 c_lo, 17 c_hi, 18 h_shift, 19 h_lo,
// 20 h_hi, 21 gate lo, 22 gate hi, then per unit u (σ, tanh, tanh_cell) at 24 + 8u:
// pwl, lo, span - 1, index_shift, offset_drop, guard_bits, table base.  They are sampled at
// `start`.
module tg_lstm_cell #(
    parameter int NW = 64,
    parameter int S_AW = 13,
    parameter int T_AW = 12,
    parameter int CODE_W = 16
) (
    input  logic                      clk,
    input  logic                      rst,
    input  logic                      start,
    input  logic        [NW-1:0][63:0] ins,
    output logic                      finished,
    output logic                      rd_en,
    output logic        [   S_AW-1:0] rd_addr,
    input  logic signed [       63:0] rd_data,
    output logic                      wr_en,
    output logic        [   S_AW-1:0] wr_addr,
    output logic signed [       63:0] wr_data,
    output logic                      tbl_en,
    output logic        [   T_AW-1:0] tbl_addr,
    input  logic        [       63:0] tbl_data
);
  localparam int II = 5;
  localparam int OP_W = CODE_W + 2;
  localparam int PRODUCT_W = (2 * OP_W < 64) ? 2 * OP_W : 64;  // a 64-bit product wraps as the golden one
  localparam int ACT_LATENCY = 12;
  // Offsets from an element's start (the schedule above).
  localparam int LOOK_I = 2, LOOK_F = 3, LOOK_G = 4, LOOK_O = 6;
  localparam int MUL_C = LOOK_G + ACT_LATENCY + 1;  // 17: every operand of f·c and i·g is registered
  localparam int WRITE_C = MUL_C + 8;  // 25
  localparam int MUL_H = WRITE_C + ACT_LATENCY;  // 37
  localparam int WRITE_H = MUL_H + 6;  // 43
  localparam int WRITE_Y = WRITE_H + 1;  // 44
  localparam int C_DELAY = MUL_C - 1 - (3 + 2);  // c is read at 3, registered from 5
  localparam int O_DELAY = MUL_H - 1 - (LOOK_O + ACT_LATENCY);
  localparam int UNIT_SIGMOID = 0, UNIT_TANH = 1, UNIT_TANH_CELL = 2;

  // ---------------------------------------------------------------- the instruction's fields
  logic [S_AW-1:0] len_addr;
  logic [31:0] hidden;
  logic signed [OP_W-1:0] one;
  logic signed [63:0] t_now, c_lo, c_hi, h_lo, h_hi, gate_lo, gate_hi;
  logic input_forget, round_even, write_y;
  logic [5:0] fc_shift, ig_shift;
  logic [7:0] c_shift, h_shift;
  logic [2:0] unit_pwl;
  logic [2:0][63:0] unit_lo;
  logic [2:0][31:0] unit_span_m1;
  logic [2:0][5:0] unit_index_shift, unit_offset_drop, unit_guard_bits;
  logic [2:0][T_AW-1:0] unit_base;
  always_ff @(posedge clk) begin
    if (start) begin
      hidden <= ins[8][31:0];
      len_addr <= S_AW'(ins[9]);
      t_now <= ins[10];
      {write_y, round_even, input_forget} <= ins[11][3:1];
      one <= OP_W'(ins[12]);
      fc_shift <= ins[13][5:0];
      ig_shift <= ins[14][5:0];
      c_shift <= ins[15][7:0];
      c_lo <= ins[16];
      c_hi <= ins[17];
      h_shift <= ins[18][7:0];
      h_lo <= ins[19];
      h_hi <= ins[20];
      gate_lo <= ins[21];
      gate_hi <= ins[22];
      for (int u = 0; u < 3; u++) begin
        unit_pwl[u] <= ins[24+8*u] != 64'd0;
        unit_lo[u] <= ins[25+8*u];
        unit_span_m1[u] <= ins[26+8*u][31:0];
        unit_index_shift[u] <= ins[27+8*u][5:0];
        unit_offset_drop[u] <= ins[28+8*u][5:0];
        unit_guard_bits[u] <= ins[29+8*u][5:0];
        unit_base[u] <= ins[30+8*u][T_AW-1:0];
      end
    end
  end

  // ---------------------------------------------------------------- sequencing
  typedef enum logic [2:0] {IDLE, LEN_READ, LEN_WAIT, LEN_TAKE, RUN} state_t;
  state_t state;
  logic active, launch, unlaunched;
  logic [2:0] phase;
  logic [31:0] launched, written_y;
  // since[d]: an element started d + 1 cycles ago (so offset d + 1 of its schedule is now).
  logic [WRITE_Y-1:0] since;
  logic signed [63:0] rd_q;
  // unlaunched (launched < hidden) is a register, so that a launch, which every read
  // address and table lookup of the schedule follows, is a few gates from registers.
  assign launch = state == RUN && phase == 3'd0 && unlaunched;
  // running: an instruction is in flight; the datapath, the activation pipe and the
  // narrowings move only then (clock enables), so an idle unit costs a simulation nothing.
  logic running;
  assign running = state != IDLE;

  function automatic logic at(input int offset);
    at = (offset == 0) ? launch : since[offset-1];
  endfunction

  always_ff @(posedge clk) begin
    if (rst) begin
      state <= IDLE;
      finished <= 1'b0;
      since <= '0;
    end else begin
      finished <= 1'b0;
      since <= {since[WRITE_Y-2:0], launch};
      case (state)
        IDLE: if (start) state <= ins[11][0] ? LEN_READ : RUN;
        LEN_READ: state <= LEN_WAIT;
        LEN_WAIT: state <= LEN_TAKE;
        LEN_TAKE: state <= RUN;
        RUN: if (at(WRITE_Y) && written_y + 32'd1 >= hidden) begin
          finished <= 1'b1;
          state <= IDLE;
        end
        default: state <= IDLE;
      endcase
    end
  end

  always_ff @(posedge clk) begin
    if (start) begin
      active <= 1'b1;
      phase <= '0;
      launched <= '0;
      unlaunched <= ins[8][31:0] != 32'd0;
    end else begin
      if (state == LEN_TAKE) active <= t_now < rd_q;
      if (state == RUN) phase <= (phase == 3'(II - 1)) ? 3'd0 : phase + 3'd1;
      if (launch) begin
        launched <= launched + 32'd1;
        unlaunched <= launched + 32'd1 < hidden;
      end
    end
  end

  // ---------------------------------------------------------------- reads (offsets 0-4)
  // Each operand row's next address is a register that steps past the word just read, so a
  // read address is a one-hot choice of registers (no adder before the scratchpad's banks).
  localparam int READS = 5;  // pre_i, pre_f, pre_c, c, pre_o at offsets 0 .. 4
  logic [READS-1:0][S_AW-1:0] read_addr;
  always_ff @(posedge clk) begin
    if (start) begin
      read_addr <= {S_AW'(ins[2]), S_AW'(ins[5]), S_AW'(ins[4]), S_AW'(ins[3]), S_AW'(ins[1])};
    end else begin
      for (int r = 0; r < READS; r++) if (at(r)) read_addr[r] <= read_addr[r] + S_AW'(1);
    end
    rd_q <= rd_data;
  end
  always_comb begin
    rd_en = state == LEN_READ;
    rd_addr = (state == LEN_READ) ? len_addr : '0;
    for (int r = 0; r < READS; r++) begin
      rd_en = rd_en || at(r);
      rd_addr = rd_addr | ({S_AW{at(r)}} & read_addr[r]);
    end
  end

  // ---------------------------------------------------------------- activations
  logic lookup;
  logic [1:0] unit;
  logic signed [63:0] act_q, c_new;
  /* verilator lint_off UNUSEDSIGNAL */
  logic signed [63:0] act_y;  // a gate-format code: the bits above OP_W are its sign
  /* verilator lint_on UNUSEDSIGNAL */
  // The lookup's controls are registers set a cycle ahead from `since` (at(d) next cycle is
  // since[d - 2] now): `since` reaches across the whole schedule, and these feed the unit's
  // 64-bit clip compares, so they start from flip-flops of their own.
  logic look_c;
  always_ff @(posedge clk) begin
    if (rst) begin
      lookup <= 1'b0;
      look_c <= 1'b0;
    end else begin
      lookup <= since[LOOK_I-2] || since[LOOK_F-2] || since[LOOK_G-2] || since[LOOK_O-2] || since[WRITE_C-2];
      look_c <= since[WRITE_C-2];
    end
    unit <= since[LOOK_G-2] ? 2'(UNIT_TANH) : (since[WRITE_C-2] ? 2'(UNIT_TANH_CELL) : 2'(UNIT_SIGMOID));
  end
  assign act_q = look_c ? c_new : rd_q;
  tg_act_pipe #(.ADDR_W(T_AW)) act (
      .clk(clk), .en(running), .lookup(lookup), .q(act_q), .unit(unit), .pwl(unit_pwl), .lo(unit_lo),
      .span_m1(unit_span_m1), .index_shift(unit_index_shift), .offset_drop(unit_offset_drop),
      .guard_bits(unit_guard_bits), .base(unit_base), .out_lo(gate_lo), .out_hi(gate_hi),
      .round_even(round_even), .tbl_en(tbl_en), .table_addr(tbl_addr), .table_word(tbl_data), .y(act_y));

  // ---------------------------------------------------------------- the free-running datapath
  // y_d[n] and c_d[n] hold act_y and rd_q of n + 1 cycles ago; o_d the same for o.
  logic signed [OP_W-1:0] y_d[3], c_d[C_DELAY+1], o_d[O_DELAY+1], gate_f;
  always_ff @(posedge clk) begin
    if (running) begin
      y_d[0] <= OP_W'(act_y);
      y_d[1] <= y_d[0];
      y_d[2] <= y_d[1];
      c_d[0] <= OP_W'(rd_q);
      for (int n = 1; n <= C_DELAY; n++) c_d[n] <= c_d[n-1];
      o_d[0] <= OP_W'(act_y);
      for (int n = 1; n <= O_DELAY; n++) o_d[n] <= o_d[n-1];
      // In cycle MUL_C - 1, y_d[0] is f and y_d[1] is i.
      gate_f <= input_forget ? one - y_d[1] : y_d[0];
    end
  end

  // c' (cycle MUL_C: gate_f, c = c_d[C_DELAY], i = y_d[2], g = y_d[0]).
  logic signed [PRODUCT_W-1:0] f_times_c, i_times_g;
  logic signed [63:0] fc_term, ig_term, cell_sum, cell_rounded, hidden_rounded;
  logic unused_cell_saturated, unused_hidden_saturated, cell_below, cell_above, hidden_below, hidden_above;
  always_ff @(posedge clk) begin
    if (running) begin
      f_times_c <= gate_f * c_d[C_DELAY];
      i_times_g <= y_d[2] * y_d[0];
      fc_term <= 64'(f_times_c) <<< fc_shift;
      ig_term <= 64'(i_times_g) <<< ig_shift;
      cell_sum <= fc_term + ig_term;
    end
  end
  tg_requant_pipe #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) cell_narrow (
      .clk(clk), .en(running), .value(cell_sum), .shift(c_shift), .round_even(round_even), .lo(c_lo), .hi(c_hi),
      .result(cell_rounded), .saturated(unused_cell_saturated), .below(cell_below), .above(cell_above));

  // h' (cycle MUL_H: o = o_d[O_DELAY], tanh_cell(c') = act_y).
  logic signed [PRODUCT_W-1:0] o_times_tanh;
  logic signed [63:0] h_new, h_held;
  always_ff @(posedge clk) begin
    if (running) begin
      c_new <= cell_below ? c_lo : (cell_above ? c_hi : cell_rounded);
      o_times_tanh <= o_d[O_DELAY] * OP_W'(act_y);
      h_new <= hidden_below ? h_lo : (hidden_above ? h_hi : hidden_rounded);
      if (at(WRITE_H)) h_held <= h_new;
    end
  end
  tg_requant_pipe #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) hidden_narrow (
      .clk(clk), .en(running), .value(64'(o_times_tanh)), .shift(h_shift), .round_even(round_even), .lo(h_lo), .hi(h_hi),
      .result(hidden_rounded), .saturated(unused_hidden_saturated), .below(hidden_below), .above(hidden_above));

  // ---------------------------------------------------------------- writes (offsets 25, 43, 44)
  // As the reads: c', h' and y each write at a register that steps past the word written.
  logic [S_AW-1:0] c_addr, h_addr, y_addr;
  always_ff @(posedge clk) begin
    if (start) begin
      c_addr <= S_AW'(ins[5]);
      h_addr <= S_AW'(ins[6]);
      y_addr <= S_AW'(ins[7]);
      written_y <= '0;
    end else begin
      if (at(WRITE_C)) c_addr <= c_addr + S_AW'(1);
      if (at(WRITE_H)) h_addr <= h_addr + S_AW'(1);
      if (at(WRITE_Y)) begin
        y_addr <= y_addr + S_AW'(1);
        written_y <= written_y + 32'd1;
      end
    end
  end
  // wr_en is a register set a cycle ahead (as the lookup's controls): every scratchpad
  // write's choice of source waits on it, so it starts from a flip-flop of its own.
  always_ff @(posedge clk) begin
    if (rst) wr_en <= 1'b0;
    else wr_en <= ((since[WRITE_C-2] || since[WRITE_H-2]) && active) || (since[WRITE_Y-2] && write_y);
  end
  always_comb begin
    wr_addr = '0;
    wr_data = '0;
    if (at(WRITE_C)) begin
      wr_addr = c_addr;
      wr_data = c_new;
    end else if (at(WRITE_H)) begin
      wr_addr = h_addr;
      wr_data = h_new;
    end else if (at(WRITE_Y)) begin
      wr_addr = y_addr;
      wr_data = active ? h_held : '0;
    end
  end

  // Each resource serves one element a cycle: its events' offsets are distinct mod II.
  function automatic logic [II-1:0] slot(input int offset);
    slot = II'(1) << (offset % II);
  endfunction
  localparam logic [II-1:0] LOOKUPS = slot(LOOK_I) | slot(LOOK_F) | slot(LOOK_G) | slot(LOOK_O) | slot(WRITE_C);
  localparam logic [II-1:0] WRITES = slot(WRITE_C) | slot(WRITE_H) | slot(WRITE_Y);
  if ($countones(LOOKUPS) != 5 || $countones(WRITES) != 3) begin : g_bad_schedule
    $error("tg_lstm_cell: two events of one resource share a cycle of the schedule");
  end
endmodule
