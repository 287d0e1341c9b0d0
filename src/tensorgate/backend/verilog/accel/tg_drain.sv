// The narrowing every GEMM drain and EW instruction writes through, pipelined:
//
//   out = clamp(round((x << acc_shift) + (init_en ? i : 0) << init_shift, shift), lo, hi)
//
// in 64-bit two's complement arithmetic (the golden requantize, rounding half away from
// zero or to even), one result per cycle, LATENCY = 8 edges from `in_valid` to `out_valid`:
//   1  operands registered (the scratchpad's and the lanes' output registers)
//   2  x or x_read (from_read), and the two run-time left shifts
//   3  the add
//   4-7  tg_requant_pipe (bias, rounding add, shift, saturation)
//   8  the clamp to [lo, hi] (the requantizer compared)
// `load` samples the instruction's fields (acc_shift, init_shift, shift, flags {init_en,
// round_even}, lo, hi) for the results that follow.  The write address travels with its
// result.  The stages move only while a result enters or is in flight (clock enables), so
// an idle drain costs a simulation nothing.
module tg_drain #(
    parameter int ADDR_W = 13
) (
    input  logic                     clk,
    input  logic                     rst,
    input  logic                     load,
    input  logic        [       5:0] acc_shift,
    input  logic        [       5:0] init_shift,
    input  logic        [       7:0] shift,
    input  logic                     init_en,
    input  logic                     round_even,
    input  logic signed [      63:0] lo,
    input  logic signed [      63:0] hi,
    input  logic                     in_valid,
    input  logic signed [      63:0] x,
    input  logic signed [      63:0] x_read,
    input  logic                     from_read,
    input  logic signed [      63:0] init,
    input  logic        [ADDR_W-1:0] in_addr,
    output logic                     out_valid,
    output logic                     out_valid_next,
    output logic        [ADDR_W-1:0] out_addr,
    output logic signed [      63:0] out_value
);
  localparam int LATENCY = 8;
  localparam int REQUANT_AT = 3;  // stages before the requantizer's input

  logic [5:0] acc_shift_q, init_shift_q;
  logic [7:0] shift_q;
  logic init_en_q, round_even_q;
  logic signed [63:0] lo_q, hi_q;
  always_ff @(posedge clk) begin
    if (load) begin
      acc_shift_q <= acc_shift;
      init_shift_q <= init_shift;
      shift_q <= shift;
      init_en_q <= init_en;
      round_even_q <= round_even;
      lo_q <= lo;
      hi_q <= hi;
    end
  end

  logic [LATENCY-1:0] valid;
  logic [ADDR_W-1:0] addr[LATENCY];
  // busy (a result is in flight: valid != 0) is a register of the valid bits' next value,
  // so that the stages' clock enable is a gate from registers.
  logic moving, busy;
  assign moving = in_valid || busy;
  always_ff @(posedge clk) begin
    if (rst) valid <= '0;
    else valid <= {valid[LATENCY-2:0], in_valid};
    busy <= !rst && {valid[LATENCY-2:0], in_valid} != '0;
    if (moving) begin
      addr[0] <= in_addr;
      for (int s = 1; s < LATENCY; s++) addr[s] <= addr[s-1];
    end
  end
  assign out_valid = valid[LATENCY-1];
  // out_valid on the next edge: the valid bits shift on every edge.
  assign out_valid_next = valid[LATENCY-2];
  assign out_addr = addr[LATENCY-1];

  // x_read (a scratchpad read, its bank's output a few gates back) is registered beside x and
  // chosen in stage 2 (from_read), so that no choice sits between a block RAM and stage 1.
  logic signed [63:0] x1, x_read1, init1, x2, init2, total3, rounded;
  logic from_read1;
  logic unused_saturated, below, above;
  always_ff @(posedge clk) begin
    if (moving) begin
      x1 <= x;
      x_read1 <= x_read;
      from_read1 <= from_read;
      init1 <= init_en_q ? init : '0;
      x2 <= (from_read1 ? x_read1 : x1) <<< acc_shift_q;
      init2 <= init1 <<< init_shift_q;
      total3 <= x2 + init2;
    end
  end

  tg_requant_pipe #(.IN_W(64), .OUT_W(64), .SHIFT_W(8)) narrow (
      .clk(clk), .en(moving), .value(total3), .shift(shift_q), .round_even(round_even_q), .lo(lo_q), .hi(hi_q),
      .result(rounded), .saturated(unused_saturated), .below(below), .above(above));

  always_ff @(posedge clk) if (moving) out_value <= below ? lo_q : (above ? hi_q : rounded);

  if (REQUANT_AT + 4 + 1 != LATENCY) begin : g_bad_latency
    $error("tg_drain: its stages do not add up to LATENCY");
  end
endmodule
