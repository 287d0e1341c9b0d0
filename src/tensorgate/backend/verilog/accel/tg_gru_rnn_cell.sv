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
// write port, read latency one cycle); σ and tanh (or the RNN's unit) are tg_act_unit
// configurations over one table memory (read latency one cycle).
//
// Elements run one after another; element k's writes of h' and y overlap the next element's
// first two stages (E0, E1 read only), and T0/T1 finish the last one.  Stages of element k:
//   E0 read pre_z / pre_r / pre
//   E1 look up σ(pre_z) (RESET: σ(pre_r), RNN: act(pre)); read pre_r (RESET: h)
//   E2 UPDATE: take z, look up σ(pre_r), read rn / pre_h | RESET: rh | RNN: h'
//   E3 UPDATE: take r, take rn and read gx_h / take pre_h | RESET: write rh
//   E4 UPDATE with linear_before_reset: pre_h
//   E5 UPDATE: look up tanh(pre_h), read h
//   E6 UPDATE: h'
//
// Instruction words (64 bits each): 1 pre_z / pre_r (RESET) / pre (RNN) row address,
// 2 pre_r, 3 rn or pre_h, 4 gx_h, 5 h, 6 y (RESET: rh), 7 H, 8 len address, 9 t,
// 10 flags {relu, mode[1:0], linear_before_reset, write_y, round_even, has_len} (bit 6..0),
// 11 ONE, 12 n_prod, 13 n_gx, 14 n_shift, 15 n_lo, 16 n_hi, 17 h_n, 18 h_z, 19 h_shift,
// 20 h_lo, 21 h_hi, 22 unit output lo, 23 unit output hi, then per unit u (σ or the RNN's
// activation, tanh) at 24 + 8u: pwl, lo, span - 1, index_shift, offset_drop, guard_bits,
// table base.
module tg_gru_rnn_cell #(
    parameter int NW = 64,
    parameter int S_AW = 13,
    parameter int T_AW = 12
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
  typedef enum logic [3:0] {
    IDLE, LEN_READ, LEN_WAIT, E0, E1, E2, E3, E4, E5, E6, T0, T1
  } state_t;

  localparam logic [1:0] MODE_RNN = 2'd0;
  localparam logic [1:0] MODE_RESET = 2'd1;
  localparam logic [1:0] MODE_UPDATE = 2'd2;

  state_t state;
  logic [31:0] k, k_done;
  logic active, pending;  // pending: element k_done's h' and y are still to be written
  logic signed [63:0] gate_z, gate_r, candidate, pre_h, h_new;

  logic [63:0] hidden;
  logic [6:0] flags;
  logic has_len, round_even, write_y, lbr, relu;
  logic [1:0] mode;
  assign hidden = ins[7];
  assign flags = ins[10][6:0];
  assign has_len = flags[0];
  assign round_even = flags[1];
  assign write_y = flags[2];
  assign lbr = flags[3];
  assign mode = flags[5:4];
  assign relu = flags[6];

  logic unit;
  logic lookup;
  logic signed [63:0] act_q, act_y;
  logic [63:0] unit_cfg[7];
  always_comb begin
    for (int field = 0; field < 7; field++) unit_cfg[field] = ins[24+8*int'(unit)+field];
  end

  tg_act_unit #(
      .ADDR_W(T_AW)
  ) act (
      .clk        (clk),
      .lookup     (lookup),
      .q          (act_q),
      .pwl        (unit_cfg[0] != 64'd0),
      .lo         (unit_cfg[1]),
      .span_m1    (unit_cfg[2][31:0]),
      .index_shift(unit_cfg[3][5:0]),
      .offset_drop(unit_cfg[4][5:0]),
      .guard_bits (unit_cfg[5][5:0]),
      .base       (unit_cfg[6][T_AW-1:0]),
      .out_lo     (ins[22]),
      .out_hi     (ins[23]),
      .round_even (round_even),
      .table_addr (tbl_addr),
      .table_word (tbl_data),
      .y          (act_y)
  );

  function automatic logic signed [63:0] clamp(input logic signed [63:0] v, input logic signed [63:0] low,
                                               input logic signed [63:0] high);
    clamp = (v < low) ? low : ((v > high) ? high : v);
  endfunction

  // The three narrowings: the candidate's pre-activation, the new hidden state (UPDATE) and
  // r ⊙ h (RESET), each one rounding shift, then the format's bounds.
  logic signed [63:0] pre_h_sum, hidden_sum, reset_product, pre_h_rounded, hidden_rounded, reset_rounded;
  logic unused_pre_h_saturated, unused_hidden_saturated, unused_reset_saturated;
  assign pre_h_sum = ((gate_r * candidate) <<< ins[12][5:0]) + (rd_data <<< ins[13][5:0]);
  assign hidden_sum = (((signed'(ins[11]) - gate_z) * act_y) <<< ins[17][5:0]) + ((gate_z * rd_data) <<< ins[18][5:0]);
  assign reset_product = act_y * rd_data;

  tg_requant #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) pre_h_narrow (
      .value(pre_h_sum), .shift(ins[14][7:0]), .round_even(round_even),
      .result(pre_h_rounded), .saturated(unused_pre_h_saturated));
  tg_requant #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) hidden_narrow (
      .value(hidden_sum), .shift(ins[19][7:0]), .round_even(round_even),
      .result(hidden_rounded), .saturated(unused_hidden_saturated));
  tg_requant #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) reset_narrow (
      .value(reset_product), .shift(ins[19][7:0]), .round_even(round_even),
      .result(reset_rounded), .saturated(unused_reset_saturated));

  // Reads, lookups and writes per stage.
  always_comb begin
    unit = 1'b0;
    lookup = 1'b0;
    act_q = rd_data;
    rd_en = 1'b0;
    rd_addr = '0;
    tbl_en = 1'b0;
    wr_en = 1'b0;
    wr_addr = '0;
    wr_data = '0;
    case (state)
      LEN_READ: begin rd_en = 1'b1; rd_addr = S_AW'(ins[8]); end
      E0: begin rd_en = 1'b1; rd_addr = S_AW'(ins[1] + 64'(k)); end
      E1: begin
        rd_en = mode != MODE_RNN;
        rd_addr = S_AW'((mode == MODE_RESET ? ins[5] : ins[2]) + 64'(k));
        lookup = !relu;
        tbl_en = !relu;
      end
      E2: if (mode == MODE_UPDATE) begin
        rd_en = 1'b1;
        rd_addr = S_AW'(ins[3] + 64'(k));
        lookup = 1'b1;
        tbl_en = 1'b1;
      end
      E3: begin
        if (mode == MODE_RESET) begin
          wr_en = 1'b1;
          wr_addr = S_AW'(ins[6] + 64'(k));
          wr_data = h_new;
        end else if (lbr) begin
          rd_en = 1'b1;
          rd_addr = S_AW'(ins[4] + 64'(k));
        end
      end
      E5: begin
        rd_en = 1'b1;
        rd_addr = S_AW'(ins[5] + 64'(k));
        unit = 1'b1;
        act_q = pre_h;
        lookup = 1'b1;
        tbl_en = 1'b1;
      end
      default: ;
    endcase
    // The previous element's writes, in the stages where this element leaves the port free.
    if (pending) begin
      case (state)
        E0, T0: begin wr_en = active; wr_addr = S_AW'(ins[5] + 64'(k_done)); wr_data = h_new; end
        E1, T1: begin wr_en = write_y; wr_addr = S_AW'(ins[6] + 64'(k_done)); wr_data = active ? h_new : '0; end
        default: ;
      endcase
    end
  end

  // After an element's result: the next element, or the tail.
  logic last;
  assign last = 64'(k) + 64'd1 >= hidden;
  always_ff @(posedge clk) begin
    if (rst) begin
      state <= IDLE;
      finished <= 1'b0;
      pending <= 1'b0;
    end else begin
      finished <= 1'b0;
      if (state == E1 || state == T1) pending <= 1'b0;
      case (state)
        IDLE: if (start) begin
          k <= '0;
          active <= 1'b1;
          pending <= 1'b0;
          state <= has_len ? LEN_READ : E0;
        end
        LEN_READ: state <= LEN_WAIT;
        LEN_WAIT: begin active <= $signed(ins[9]) < rd_data; state <= E0; end
        E0: state <= E1;
        E1: begin candidate <= rd_data; state <= E2; end
        E2: begin
          case (mode)
            MODE_UPDATE: begin gate_z <= act_y; state <= E3; end
            MODE_RESET: begin h_new <= clamp(reset_rounded, ins[20], ins[21]); state <= E3; end
            default: begin
              h_new <= relu ? ((candidate < 0) ? '0 : candidate) : act_y;
              pending <= 1'b1;
              k_done <= k;
              k <= k + 32'd1;
              state <= last ? T0 : E0;
            end
          endcase
        end
        E3: begin
          if (mode == MODE_RESET) begin
            k <= k + 32'd1;
            state <= last ? T1 : E0;
          end else begin
            gate_r <= act_y;
            candidate <= rd_data;
            pre_h <= rd_data;
            state <= lbr ? E4 : E5;
          end
        end
        E4: begin pre_h <= clamp(pre_h_rounded, ins[15], ins[16]); state <= E5; end
        E5: state <= E6;
        E6: begin
          h_new <= clamp(hidden_rounded, ins[20], ins[21]);
          pending <= 1'b1;
          k_done <= k;
          k <= k + 32'd1;
          state <= last ? T0 : E0;
        end
        T0: state <= T1;
        T1: begin
          finished <= 1'b1;
          state <= IDLE;
        end
        default: state <= IDLE;
      endcase
    end
  end
endmodule
