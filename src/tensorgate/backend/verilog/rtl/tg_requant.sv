// Requantizer: result = saturate_OUT_W(value * 2**-shift, rounded), combinational.
//
// This is the golden model's requantize (tensorgate.fixedpoint.formats):
// `shift` is two's complement.  A positive shift divides with rounding to the
// nearest integer, ties resolved by `round_even`:
//   0: half away from zero  (-2.5 -> -3, 2.5 -> 3)
//   1: half to even         (-2.5 -> -2, 2.5 -> 2, 3.5 -> 4)
// as one add and one arithmetic shift, (value + bias) >>> shift, with
//   bias = half - [value < 0]   half-away
//   bias = half - 1 + q0        half-even, q0 = bit `shift` of value (the parity
//                               of floor(value / 2**shift))
// where half = 2**(shift-1).  Shifts beyond IN_W+1 round every input to zero,
// exactly as IN_W+1 does, so they are clamped to it.  A negative shift multiplies
// exactly; lifting a nonzero value by OUT_W bits or more saturates it, so the
// lift is clamped to OUT_W.  `saturated` is high when the result did not fit
// OUT_W bits and was replaced by the nearest representable value.
module tg_requant #(
    parameter int IN_W    = 32,
    parameter int OUT_W   = 8,
    parameter int SHIFT_W = 7
) (
    input  logic signed [   IN_W-1:0] value,
    input  logic signed [SHIFT_W-1:0] shift,
    input  logic                      round_even,
    output logic signed [  OUT_W-1:0] result,
    output logic                      saturated
);
  // Right path: two guard bits, one for the rounding carry, one so that half = 2**IN_W fits.
  localparam int RW = IN_W + 2;
  // Left path: room for the largest lift.
  localparam int LW = IN_W + OUT_W;
  localparam int MAX_RIGHT = IN_W + 1;
  localparam int MAX_LEFT = OUT_W;
  localparam int SW = $clog2(MAX_RIGHT + 1);

  if (OUT_W < 2 || OUT_W > IN_W) begin : g_bad_width
    $error("tg_requant: OUT_W (%0d) must lie in 2..IN_W (%0d)", OUT_W, IN_W);
  end

  logic                      lift;
  logic        [SHIFT_W-1:0] magnitude;
  logic        [     SW-1:0] s;
  logic        [     SW-1:0] l;
  logic signed [     RW-1:0] wide;
  logic signed [     RW-1:0] half;
  logic signed [     RW-1:0] bias;
  logic signed [     RW-1:0] rounded;
  logic signed [     LW-1:0] lifted;
  logic                      fits;
  logic                      negative;
  logic        [  OUT_W-1:0] low_bits;

  always_comb begin
    lift = shift[SHIFT_W-1];
    magnitude = lift ? -shift : shift;  // unsigned: the most negative shift has magnitude 2**(SHIFT_W-1)
    s = (32'(magnitude) > MAX_RIGHT) ? SW'(MAX_RIGHT) : SW'(magnitude);
    l = (32'(magnitude) > MAX_LEFT) ? SW'(MAX_LEFT) : SW'(magnitude);

    wide = RW'(value);
    half = '0;
    bias = '0;
    if (s != '0) begin
      half[s-SW'(1)] = 1'b1;
      if (round_even) bias = half - RW'(1) + RW'(wide[s]);
      else bias = half - RW'(wide[RW-1]);
    end
    rounded = (wide + bias) >>> s;
    lifted = LW'(value) <<< l;

    // A value fits when all its bits from the OUT_W sign bit upwards agree.
    if (lift) begin
      fits = (lifted[LW-1:OUT_W-1] == '0) || (lifted[LW-1:OUT_W-1] == '1);
      negative = lifted[LW-1];
      low_bits = lifted[OUT_W-1:0];
    end else begin
      fits = (rounded[RW-1:OUT_W-1] == '0) || (rounded[RW-1:OUT_W-1] == '1);
      negative = rounded[RW-1];
      low_bits = rounded[OUT_W-1:0];
    end
    saturated = !fits;
    result = fits ? low_bits : {negative, {(OUT_W - 1) {!negative}}};
  end
endmodule
