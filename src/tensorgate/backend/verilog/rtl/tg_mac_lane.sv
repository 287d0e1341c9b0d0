// Multiply-accumulate lane with a requantizing output register.
//
// Accumulator, per clock edge:
//   acc <= (clear ? acc_init : acc) + (acc_en ? a * b : 0)
// so `clear` together with `acc_en` starts a new sum with its first product and
// no idle cycle; acc_init carries a bias or a partial sum (zero for a plain sum).
// The accumulator wraps modulo 2**ACC_W; the compiler sizes ACC_W so that it
// never does (ACC_W >= A_W + B_W + ceil(log2 K)).
//
// Output register, on an edge where `emit` is high:
//   out <= saturate_OUT_W(round(acc * 2**-shift))   (tg_requant; shift is signed)
// It reads the accumulator before that edge, so `emit` may coincide with the
// `clear` that starts the next sum: the output register is the second buffer of
// a double-buffered accumulator.  out_valid follows `emit` by one cycle.
module tg_mac_lane #(
    parameter int A_W     = 8,
    parameter int B_W     = 8,
    parameter int ACC_W   = 32,
    parameter int OUT_W   = 8,
    parameter int SHIFT_W = 7
) (
    input  logic                      clk,
    input  logic                      rst,
    input  logic                      acc_en,
    input  logic                      clear,
    input  logic signed [  ACC_W-1:0] acc_init,
    input  logic signed [    A_W-1:0] a,
    input  logic signed [    B_W-1:0] b,
    input  logic                      emit,
    input  logic signed [SHIFT_W-1:0] shift,
    input  logic                      round_even,
    output logic signed [  ACC_W-1:0] acc,
    output logic signed [  OUT_W-1:0] out,
    output logic                      out_valid,
    output logic                      out_saturated
);
  if (ACC_W < A_W + B_W) begin : g_bad_width
    $error("tg_mac_lane: ACC_W (%0d) must hold a full product (A_W + B_W = %0d)", ACC_W, A_W + B_W);
  end

  logic signed [A_W+B_W-1:0] product;
  logic signed [  ACC_W-1:0] addend;
  logic signed [  ACC_W-1:0] acc_base;
  logic signed [  OUT_W-1:0] requantized;
  logic                      requant_saturated;

  assign product  = a * b;
  assign addend   = acc_en ? ACC_W'(product) : '0;
  assign acc_base = clear ? acc_init : acc;

  tg_requant #(
      .IN_W   (ACC_W),
      .OUT_W  (OUT_W),
      .SHIFT_W(SHIFT_W)
  ) requant (
      .value     (acc),
      .shift     (shift),
      .round_even(round_even),
      .result    (requantized),
      .saturated (requant_saturated)
  );

  always_ff @(posedge clk) begin
    if (rst) begin
      acc       <= '0;
      out_valid <= 1'b0;
    end else begin
      acc       <= acc_base + addend;
      out_valid <= emit;
    end
  end

  always_ff @(posedge clk) begin
    if (emit) begin
      out           <= requantized;
      out_saturated <= requant_saturated;
    end
  end
endmodule
