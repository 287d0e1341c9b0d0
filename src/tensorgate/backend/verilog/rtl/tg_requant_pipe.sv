// Pipelined requantizer: tg_requant's result, LATENCY = 4 edges after its value.
//
// The same arithmetic as tg_requant (round by a signed run-time shift, ties by
// `round_even`, saturate to OUT_W bits), cut so that no stage holds more than one wide
// carry chain or one barrel shifter.  `shift` is given one cycle before the value it
// applies to (it is an instruction's static field, or known a stage early), so that its
// decoding (direction, clamped magnitudes) is a register stage of its own:
//   0  (the cycle before) the shift's direction and clamped magnitudes
//   1  the rounding bias: half or the mask below it, by bit compares (no adder)
//   2  value + bias (right path), value << lift (left path)
//   3  >>> shift
//   4  saturation to OUT_W bits, and the comparisons with the bounds lo and hi
// It takes a new value every cycle; `result` and `saturated` belong to the value given
// LATENCY edges earlier (and the shift given the cycle before it).  `en` is a clock enable
// of every stage: on an edge where it is low the pipeline holds, so edges count as above
// only where en is high.  A unit that drives it high while it runs keeps an idle pipe from
// being re-evaluated on every edge of a simulation (its logic all sits behind the enable).  `below` and `above` pick
// lo or hi for a caller's clamp of that result to [lo, hi] (bounds of OUT_W bits, read in
// stage 4), so that the clamp is a multiplexer, not two wide comparisons and a multiplexer in
// one cycle.  They come from the fit and the low bits: a result that does not fit is the
// extreme of its sign, flagged below (above) even where lo (hi) is that extreme and equals
// it, which the clamp gives alike.
module tg_requant_pipe #(
    parameter int IN_W    = 32,
    parameter int OUT_W   = 8,
    parameter int SHIFT_W = 7
) (
    input  logic                      clk,
    input  logic                      en,
    input  logic signed [   IN_W-1:0] value,
    input  logic signed [SHIFT_W-1:0] shift,
    input  logic                      round_even,
    input  logic signed [  OUT_W-1:0] lo,
    input  logic signed [  OUT_W-1:0] hi,
    output logic signed [  OUT_W-1:0] result,
    output logic                      saturated,
    output logic                      below,
    output logic                      above
);
  localparam int RW = IN_W + 2;
  localparam int LW = IN_W + OUT_W;
  localparam int MAX_RIGHT = IN_W + 1;
  localparam int MAX_LEFT = OUT_W;
  localparam int SW = $clog2(MAX_RIGHT + 1);

  if (OUT_W < 2 || OUT_W > IN_W) begin : g_bad_width
    $error("tg_requant_pipe: OUT_W (%0d) must lie in 2..IN_W (%0d)", OUT_W, IN_W);
  end

  // Stage 0: the shift's direction and clamped magnitudes, registered for the value that follows.
  logic [SHIFT_W-1:0] magnitude;
  logic lift0;
  logic [SW-1:0] s0, l0;
  assign magnitude = shift[SHIFT_W-1] ? -shift : shift;
  always_ff @(posedge clk) begin
    if (en) begin
      lift0 <= shift[SHIFT_W-1];
      s0 <= (32'(magnitude) > MAX_RIGHT) ? SW'(MAX_RIGHT) : SW'(magnitude);
      l0 <= (32'(magnitude) > MAX_LEFT) ? SW'(MAX_LEFT) : SW'(magnitude);
    end
  end

  // Stage 1: the bias, half - 1 + bit s (half-even) or half - sign (half-away): half
  // (bit s - 1) or the mask of the bits below it.
  function automatic logic signed [RW-1:0] bias_of(input logic signed [RW-1:0] wide, input logic [SW-1:0] s,
                                                   input logic even);
    logic use_half;
    use_half = even ? wide[s] : !wide[RW-1];
    for (int i = 0; i < RW; i++) bias_of[i] = use_half ? (32'(s) == i + 1) : (i + 1 < 32'(s));
  endfunction

  logic lift1;
  logic [SW-1:0] s1, l1;
  logic signed [RW-1:0] wide1, bias1;
  always_ff @(posedge clk) begin
    if (en) begin
      lift1 <= lift0;
      s1 <= s0;
      l1 <= l0;
      wide1 <= RW'(value);
      bias1 <= bias_of(RW'(value), s0, round_even);
    end
  end

  logic lift2, lift3;
  logic [SW-1:0] s2;
  logic signed [RW-1:0] sum2, rounded3;
  logic signed [LW-1:0] lifted2, lifted3;
  always_ff @(posedge clk) begin
    if (en) begin
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
  end

  // Stage 4: a value fits when all its bits from the OUT_W sign bit upwards agree.
  // {saturated, below, above, result} of one path's value.  Both paths' flags are
  // computed side by side and `lift` only picks between them, so that it is not in
  // front of the bound comparisons' carry chains.
  function automatic logic [OUT_W+2:0] saturate(input logic fits, input logic negative,
                                                input logic signed [OUT_W-1:0] low_bits,
                                                input logic signed [OUT_W-1:0] low, input logic signed [OUT_W-1:0] high);
    saturate = {!fits, fits ? low_bits < low : negative, fits ? low_bits > high : !negative,
                fits ? low_bits : {negative, {(OUT_W - 1) {!negative}}}};
  endfunction
  logic [OUT_W+2:0] of_lifted, of_rounded;
  assign of_lifted = saturate((lifted3[LW-1:OUT_W-1] == '0) || (lifted3[LW-1:OUT_W-1] == '1), lifted3[LW-1],
                              lifted3[OUT_W-1:0], lo, hi);
  assign of_rounded = saturate((rounded3[RW-1:OUT_W-1] == '0) || (rounded3[RW-1:OUT_W-1] == '1), rounded3[RW-1],
                               rounded3[OUT_W-1:0], lo, hi);
  always_ff @(posedge clk) begin
    if (en) {saturated, below, above, result} <= lift3 ? of_lifted : of_rounded;
  end
endmodule
