// LSTM cell unit: one CELL instruction updates one batch row of one direction, H elements,
// in the golden model's integer arithmetic (runtime/fixed_runtime.py):
//
//   i = σ(pre_i)   f = σ(pre_f) (ONE - i with input_forget)   g = tanh(pre_c)
//   c' = clamp(round((f·c << fc_shift) + (i·g << ig_shift), c_shift), c_lo, c_hi)
//   o = σ(pre_o)   h' = clamp(round(o · tanh_cell(c'), h_shift), h_lo, h_hi)
//
// With a sequence length (flags.has_len) the row is active when t < len; an inactive row
// keeps h and c and writes 0 to y.  Operands and results live in the scratchpad (one read
// and one write port, read latency one cycle); σ, tanh and tanh_cell are tg_act_unit
// configurations over one table memory (read latency one cycle).
//
// Elements are pipelined, one every six cycles (S0-S5): five scratchpad reads and five
// table lookups per element, each resource busy at most once per stage.  Element k:
//   S0 read pre_i                         | k-1: take o, look up tanh_cell(c'), write c'
//   S1 read pre_f, look up σ(pre_i)       | k-1: take tanh_cell, h'
//   S2 read pre_c, look up σ(pre_f), take i | k-1: write h'
//   S3 read c, look up tanh(pre_c), take f  | k-1: write y
//   S4 read pre_o, take g, take c
//   S5 look up σ(pre_o), c'
// and after the last element T0-T3 finish it as S0-S3 would.
//
// Instruction words (64 bits each): 1-4 pre_i/pre_o/pre_f/pre_c row addresses, 5 c, 6 h,
// 7 y, 8 H, 9 len address, 10 t, 11 flags {write_y, round_even, input_forget, has_len},
// 12 ONE, 13 fc_shift, 14 ig_shift, 15 c_shift, 16 c_lo, 17 c_hi, 18 h_shift, 19 h_lo,
// 20 h_hi, 21 gate lo, 22 gate hi, then per unit u (σ, tanh, tanh_cell) at 24 + 8u:
// pwl, lo, span - 1, index_shift, offset_drop, guard_bits, table base.
module tg_lstm_cell #(
    parameter int NW = 64,
    parameter int S_AW = 13,
    parameter int T_AW = 12
) (
    input  logic                   clk,
    input  logic                   rst,
    input  logic                   start,
    input  logic [NW-1:0][63:0]     ins,
    output logic                   finished,
    output logic                   rd_en,
    output logic        [S_AW-1:0] rd_addr,
    input  logic signed [    63:0] rd_data,
    output logic                   wr_en,
    output logic        [S_AW-1:0] wr_addr,
    output logic signed [    63:0] wr_data,
    output logic                   tbl_en,
    output logic        [T_AW-1:0] tbl_addr,
    input  logic        [    63:0] tbl_data
);
  typedef enum logic [3:0] {
    IDLE, LEN_READ, LEN_WAIT, S0, S1, S2, S3, S4, S5, T0, T1, T2, T3
  } state_t;

  localparam int UNIT_SIGMOID = 0;
  localparam int UNIT_TANH = 1;
  localparam int UNIT_TANH_CELL = 2;

  state_t state;
  logic [31:0] k;
  logic active, prev;  // prev: an element before k is still in flight (its S0-S3 work)
  logic finishing_prev;
  assign finishing_prev = prev || state == T0 || state == T1 || state == T2 || state == T3;
  logic signed [63:0] gate_i, gate_f, gate_g, gate_o, c_old, c_new, h_new;

  logic [1:0] unit;
  logic lookup;
  logic signed [63:0] act_q;
  logic signed [63:0] act_y;

  logic [63:0] hidden;
  logic [3:0] flags;
  logic has_len, input_forget, round_even, write_y;
  assign hidden = ins[8];
  assign flags = ins[11][3:0];
  assign has_len = flags[0];
  assign input_forget = flags[1];
  assign round_even = flags[2];
  assign write_y = flags[3];

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
      .out_lo     (ins[21]),
      .out_hi     (ins[22]),
      .round_even (round_even),
      .table_addr (tbl_addr),
      .table_word (tbl_data),
      .y          (act_y)
  );

  // The narrowing of c' and h': one rounding shift, then the format's bounds.
  logic signed [63:0] cell_sum, hidden_product, cell_rounded, hidden_rounded;
  logic unused_cell_saturated, unused_hidden_saturated;
  assign cell_sum = ((gate_f * c_old) <<< ins[13][5:0]) + ((gate_i * gate_g) <<< ins[14][5:0]);
  assign hidden_product = gate_o * act_y;

  tg_requant #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) cell_narrow (
      .value(cell_sum), .shift(ins[15][7:0]), .round_even(round_even),
      .result(cell_rounded), .saturated(unused_cell_saturated));
  tg_requant #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) hidden_narrow (
      .value(hidden_product), .shift(ins[18][7:0]), .round_even(round_even),
      .result(hidden_rounded), .saturated(unused_hidden_saturated));

  function automatic logic signed [63:0] clamp(input logic signed [63:0] v, input logic signed [63:0] low,
                                               input logic signed [63:0] high);
    clamp = (v < low) ? low : ((v > high) ? high : v);
  endfunction

  // Unit selection and lookup strobes per state; reads, table reads and writes.
  logic [31:0] k_prev;
  assign k_prev = (state == T0 || state == T1 || state == T2 || state == T3) ? k : k - 32'd1;
  always_comb begin
    unit = 2'(UNIT_SIGMOID);
    lookup = 1'b0;
    act_q = rd_data;
    rd_en = 1'b0;
    rd_addr = '0;
    tbl_en = 1'b0;
    wr_en = 1'b0;
    wr_addr = '0;
    wr_data = '0;
    case (state)
      LEN_READ: begin rd_en = 1'b1; rd_addr = S_AW'(ins[9]); end
      S0: begin rd_en = 1'b1; rd_addr = S_AW'(ins[1] + k); end
      S1: begin rd_en = 1'b1; rd_addr = S_AW'(ins[3] + k); lookup = 1'b1; tbl_en = 1'b1; end
      S2: begin rd_en = 1'b1; rd_addr = S_AW'(ins[4] + k); lookup = 1'b1; tbl_en = 1'b1; end
      S3: begin
        rd_en = 1'b1;
        rd_addr = S_AW'(ins[5] + k);
        unit = 2'(UNIT_TANH);
        lookup = 1'b1;
        tbl_en = 1'b1;
      end
      S4: begin rd_en = 1'b1; rd_addr = S_AW'(ins[2] + k); end
      S5: begin lookup = 1'b1; tbl_en = 1'b1; end
      default: ;
    endcase
    // The previous element's tail, in the stages where this element leaves room for it.
    if (finishing_prev) begin
      case (state)
        S0, T0: begin
          unit = 2'(UNIT_TANH_CELL);
          act_q = c_new;
          lookup = 1'b1;
          tbl_en = 1'b1;
          wr_en = active;
          wr_addr = S_AW'(ins[5] + k_prev);
          wr_data = c_new;
        end
        S2, T2: begin wr_en = active; wr_addr = S_AW'(ins[6] + k_prev); wr_data = h_new; end
        S3, T3: begin wr_en = write_y; wr_addr = S_AW'(ins[7] + k_prev); wr_data = active ? h_new : '0; end
        default: ;
      endcase
    end
  end

  always_ff @(posedge clk) begin
    if (rst) begin
      state <= IDLE;
      finished <= 1'b0;
      prev <= 1'b0;
    end else begin
      finished <= 1'b0;
      if (finishing_prev && (state == S0 || state == T0)) gate_o <= act_y;
      if (finishing_prev && (state == S1 || state == T1)) h_new <= clamp(hidden_rounded, ins[19], ins[20]);
      case (state)
        IDLE: if (start) begin
          k <= '0;
          active <= 1'b1;
          prev <= 1'b0;
          state <= has_len ? LEN_READ : S0;
        end
        LEN_READ: state <= LEN_WAIT;
        LEN_WAIT: begin active <= $signed(ins[10]) < rd_data; state <= S0; end
        S0: state <= S1;
        S1: state <= S2;
        S2: begin gate_i <= act_y; state <= S3; end
        S3: begin gate_f <= input_forget ? $signed(ins[12]) - gate_i : act_y; state <= S4; end
        S4: begin gate_g <= act_y; c_old <= rd_data; state <= S5; end
        S5: begin
          c_new <= clamp(cell_rounded, ins[16], ins[17]);
          prev <= 1'b1;
          if (64'(k) + 64'd1 >= hidden) begin
            state <= T0;
          end else begin
            k <= k + 32'd1;
            state <= S0;
          end
        end
        T0: state <= T1;
        T1: state <= T2;
        T2: state <= T3;
        T3: begin
          prev <= 1'b0;
          finished <= 1'b1;
          state <= IDLE;
        end
        default: state <= IDLE;
      endcase
    end
  end
endmodule
