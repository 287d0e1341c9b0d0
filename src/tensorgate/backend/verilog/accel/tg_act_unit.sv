// σ / tanh unit: exactly the golden model's integer ActivationUnit (fixedpoint.activations).
//
//   u = clip(q, lo, lo + span - 1) - lo ;  j = u >> index_shift
//   lut: y = table[base + j]
//   pwl: r = u & (2^index_shift - 1)
//        offset_drop > 0: t = ((r >> offset_drop) << 1) | 1, m = index_shift - offset_drop + 1
//        else:            t = r,                               m = index_shift
//        y = clamp(round((value << m) + slope * t, m + guard_bits), out_lo, out_hi)
//
// A table word holds the entry (lut) or intercept (pwl) in bits [31:0] and the pwl slope in
// bits [63:32].  Two phases: on an edge with `lookup`, q is sampled (u registered, with the
// configuration the output needs: pwl, index_shift, offset_drop, guard_bits) while the table
// read of entry j is under way (`table_addr` is combinational from q); the cycle after, `y` is
// valid (combinational from those registers and the table word).  A lookup of another
// configuration may therefore be issued in the cycle `y` of the previous one is taken.
module tg_act_unit #(
    parameter int ADDR_W = 12
) (
    input  logic                     clk,
    input  logic                     lookup,
    input  logic signed [      63:0] q,
    input  logic                     pwl,
    input  logic signed [      63:0] lo,
    input  logic        [      31:0] span_m1,
    input  logic        [       5:0] index_shift,
    input  logic        [       5:0] offset_drop,
    input  logic        [       5:0] guard_bits,
    input  logic        [ADDR_W-1:0] base,
    input  logic signed [      63:0] out_lo,
    input  logic signed [      63:0] out_hi,
    input  logic                     round_even,
    output logic        [ADDR_W-1:0] table_addr,
    input  logic        [      63:0] table_word,
    output logic signed [      63:0] y
);
  logic signed [63:0] hi;
  logic signed [63:0] clipped;
  logic        [63:0] u_now;
  logic        [63:0] u;
  logic        [63:0] r;
  logic        [63:0] t;
  logic        [ 5:0] m;
  logic signed [63:0] value;
  logic signed [63:0] slope;
  logic signed [63:0] line;
  logic signed [63:0] rounded;
  logic               unused_saturated;
  logic        [63:0] unused_table_index;

  always_comb begin
    hi = lo + 64'(span_m1);
    clipped = (q < lo) ? lo : ((q > hi) ? hi : q);
    u_now = 64'(clipped - lo);
    unused_table_index = u_now >> index_shift;
    table_addr = base + unused_table_index[ADDR_W-1:0];
  end

  logic       pwl_q;
  logic [5:0] index_shift_q;
  logic [5:0] offset_drop_q;
  logic [5:0] guard_bits_q;
  always_ff @(posedge clk) begin
    if (lookup) begin
      u <= u_now;
      pwl_q <= pwl;
      index_shift_q <= index_shift;
      offset_drop_q <= offset_drop;
      guard_bits_q <= guard_bits;
    end
  end

  always_comb begin
    value = 64'(signed'(table_word[31:0]));
    slope = 64'(signed'(table_word[63:32]));
    r = u & ((64'd1 << index_shift_q) - 64'd1);
    if (offset_drop_q != '0) begin
      t = ((r >> offset_drop_q) << 1) | 64'd1;
      m = index_shift_q - offset_drop_q + 6'd1;
    end else begin
      t = r;
      m = index_shift_q;
    end
    line = (value <<< m) + slope * signed'(t);
  end

  tg_requant #(
      .IN_W   (64),
      .OUT_W  (64),
      .SHIFT_W(8)
  ) narrow (
      .value     (line),
      .shift     (8'(m + guard_bits_q)),
      .round_even(round_even),
      .result    (rounded),
      .saturated (unused_saturated)
  );

  always_comb begin
    if (!pwl_q) y = value;
    else if (rounded < out_lo) y = out_lo;
    else if (rounded > out_hi) y = out_hi;
    else y = rounded;
  end
endmodule
