// Pipelined requantizer: tg_requant's result, LATENCY = 4 edges after its operands.
//
// The same arithmetic as tg_requant (round by a signed run-time shift, ties by
// `round_even`, saturate to OUT_W bits), cut so that no stage holds more than one wide
// carry chain or one barrel shifter:
//   1  shift magnitude and direction, the rounding bias (a mask: no adder)
//   2  value + bias (right path), value << lift (left path)
//   3  >>> shift
//   4  saturation to OUT_W bits
// It takes new operands every cycle; `result` and `saturated` belong to the operands
// given LATENCY edges earlier.
module tg_requant_pipe #(
    parameter int IN_W    = 32,
    parameter int OUT_W   = 8,
    parameter int SHIFT_W = 7
) (
    input  logic                      clk,
    input  logic signed [   IN_W-1:0] value,
    input  logic signed [SHIFT_W-1:0] shift,
    input  logic                      round_even,
    output logic signed [  OUT_W-1:0] result,
    output logic                      saturated
);
  localparam int RW = IN_W + 2;
  localparam int LW = IN_W + OUT_W;
  localparam int MAX_RIGHT = IN_W + 1;
  localparam int MAX_LEFT = OUT_W;
  localparam int SW = $clog2(MAX_RIGHT + 1);

  if (OUT_W < 2 || OUT_W > IN_W) begin : g_bad_width
    $error("tg_requant_pipe: OUT_W (%0d) must lie in 2..IN_W (%0d)", OUT_W, IN_W);
  end

  // Stage 1: the shift's direction and clamped magnitudes, and the bias.
  logic               lift_now;
  logic [SHIFT_W-1:0] magnitude;
  logic [     SW-1:0] s_now, l_now;
  logic signed [RW-1:0] wide_now, half, bias_now;
  always_comb begin
    lift_now = shift[SHIFT_W-1];
    magnitude = lift_now ? -shift : shift;
    s_now = (32'(magnitude) > MAX_RIGHT) ? SW'(MAX_RIGHT) : SW'(magnitude);
    l_now = (32'(magnitude) > MAX_LEFT) ? SW'(MAX_LEFT) : SW'(magnitude);
    wide_now = RW'(value);
    half = '0;
    bias_now = '0;
    if (s_now != '0) begin
      half[s_now-SW'(1)] = 1'b1;
      // half - 1 + bit s (half-even) or half - sign (half-away): half or the mask below it.
      if (round_even) bias_now = wide_now[s_now] ? half : half - RW'(1);
      else bias_now = wide_now[RW-1] ? half - RW'(1) : half;
    end
  end

  logic lift1, lift2, lift3;
  logic [SW-1:0] s1, l1, s2;
  logic signed [RW-1:0] wide1, bias1, sum2, rounded3;
  logic signed [LW-1:0] lifted2, lifted3;
  always_ff @(posedge clk) begin
    lift1 <= lift_now;
    s1 <= s_now;
    l1 <= l_now;
    wide1 <= wide_now;
    bias1 <= bias_now;
    // Stage 2: the rounding add, and the exact lift.
    lift2 <= lift1;
    s2 <= s1;
    sum2 <= wide1 + bias1;
    lifted2 <= LW'(signed'(wide1[IN_W-1:0])) <<< l1;
    // Stage 3: the rounding shift.
    lift3 <= lift2;
    rounded3 <= sum2 >>> s2;
    lifted3 <= lifted2;
  end

  // Stage 4: a value fits when all its bits from the OUT_W sign bit upwards agree.
  logic fits, negative;
  logic [OUT_W-1:0] low_bits;
  always_comb begin
    if (lift3) begin
      fits = (lifted3[LW-1:OUT_W-1] == '0) || (lifted3[LW-1:OUT_W-1] == '1);
      negative = lifted3[LW-1];
      low_bits = lifted3[OUT_W-1:0];
    end else begin
      fits = (rounded3[RW-1:OUT_W-1] == '0) || (rounded3[RW-1:OUT_W-1] == '1);
      negative = rounded3[RW-1];
      low_bits = rounded3[OUT_W-1:0];
    end
  end
  always_ff @(posedge clk) begin
    saturated <= !fits;
    result <= fits ? low_bits : {negative, {(OUT_W - 1) {!negative}}};
  end
endmodule
