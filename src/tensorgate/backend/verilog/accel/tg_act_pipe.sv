// Pipelined σ / tanh unit: exactly the golden model's integer ActivationUnit
// (fixedpoint.activations), one lookup per cycle, y LATENCY = 12 cycles after its q:
//
//   u = clip(q, lo, lo + span - 1) - lo ;  j = u >> index_shift
//   lut: y = table[base + j]
//   pwl: r = u & (2^index_shift - 1)
//        offset_drop > 0: t = ((r >> offset_drop) << 1) | 1, m = index_shift - offset_drop + 1
//        else:            t = r,                               m = index_shift
//        y = clamp(round((value << m) + slope * t, m + guard_bits), out_lo, out_hi)
//
// Three configurations (`unit` 0..2: the cell's σ, tanh and tanh_cell), static while an
// instruction runs; each lookup names its own.  A table word holds the entry (lut) or
// intercept (pwl) in bits [31:0] and the pwl slope in bits [63:32].  The compiler keeps
// segment offsets to T_W - 1 = 12 bits (fixedpoint.activations.MAX_OFFSET_BITS, checked by
// the lowering), so t has T_W bits, m at most T_W, and the line fits LINE_W = 48 bits: the
// slope multiply is 32 x 14 bits, not 64 x 64.  Cycles, for a lookup in cycle 0:
//   0 compare q with the clip bounds, q-lo 5 value << m, slope * t in two halves
//   1 clip: u                              6 the line's add (carry-save, one carry chain)
//   2 j, the table address                 7-10 tg_requant_pipe by m + guard_bits
//   3 the table read (tbl_en); r           11 clamp (pwl) or the entry (lut)
//   4 the table's output register; t, m    12 y
// The configuration is static for an instruction, and what follows from it alone (masks,
// shifts, the clip's upper bound, the output bounds) is registered once: it must be set an
// enabled edge before the first lookup (the cell units sample it at `start`, cycles ahead).
// `en` is a clock enable of every stage (tg_requant_pipe's): a cell unit holds its idle pipe
// instead of a simulation re-evaluating it on every edge; the cycles above count enabled edges.
module tg_act_pipe #(
    parameter int ADDR_W = 12
) (
    input  logic                         clk,
    input  logic                         en,
    input  logic                         lookup,
    input  logic signed [          63:0] q,
    input  logic        [           1:0] unit,
    input  logic        [           2:0] pwl,
    input  logic        [2:0][     63:0] lo,
    input  logic        [2:0][     31:0] span_m1,
    input  logic        [2:0][      5:0] index_shift,
    input  logic        [2:0][      5:0] offset_drop,
    input  logic        [2:0][      5:0] guard_bits,
    input  logic        [2:0][ADDR_W-1:0] base,
    input  logic signed [          63:0] out_lo,
    input  logic signed [          63:0] out_hi,
    input  logic                         round_even,
    output logic                         tbl_en,
    output logic        [    ADDR_W-1:0] table_addr,
    input  logic        [          63:0] table_word,
    output logic signed [          63:0] y
);
  localparam int T_W = 13;
  localparam int LINE_W = 48;
  localparam int REQUANT_LATENCY = 4;

  // What follows from the static configuration alone, once per instruction rather than per
  // lookup: the clip bounds' upper end, the offset mask 2^index_shift - 1, whether the
  // offset drops bits, the offset's weight m and the line's rounding shift m + guard_bits.
  logic [2:0][63:0] hi;
  logic [2:0][31:0] offset_mask;
  logic [2:0] drops;
  logic [2:0][5:0] weight_m, line_shift;
  always_ff @(posedge clk) begin
    if (en) begin
      for (int u = 0; u < 3; u++) begin
        hi[u] <= lo[u] + 64'(span_m1[u]);
        offset_mask[u] <= (32'd1 << index_shift[u]) - 32'd1;
        drops[u] <= offset_drop[u] != '0;
        weight_m[u] <= (offset_drop[u] != '0) ? index_shift[u] - offset_drop[u] + 6'd1 : index_shift[u];
        line_shift[u] <= ((offset_drop[u] != '0) ? index_shift[u] - offset_drop[u] + 6'd1 : index_shift[u])
            + guard_bits[u];
      end
    end
  end

  // 0: compare with the clip bounds, and q - lo beside it.
  logic valid1, below1, above1;
  logic [31:0] offset1, span1;
  logic [1:0] unit1;
  always_ff @(posedge clk) begin
    if (en) begin
      valid1 <= lookup;
      unit1 <= unit;
      below1 <= q < signed'(lo[unit]);
      above1 <= q > signed'(hi[unit]);
      offset1 <= q[31:0] - lo[unit][31:0];
      span1 <= span_m1[unit];
    end
  end

  // 1: u = clip(q) - lo (0 below, span - 1 above); u < span <= 2^32, so its low 32 bits are
  // all of it.  The unit's index shift and table base for the next stage.
  logic valid2;
  logic [31:0] u2;
  logic [1:0] unit2;
  logic [5:0] index_shift2;
  logic [ADDR_W-1:0] base2;
  always_ff @(posedge clk) begin
    if (en) begin
      valid2 <= valid1;
      unit2 <= unit1;
      u2 <= below1 ? '0 : (above1 ? span1 : offset1);
      index_shift2 <= index_shift[unit1];
      base2 <= base[unit1];
    end
  end

  // 2: the table address.
  logic valid3;
  logic [31:0] u3;
  logic [1:0] unit3;
  always_ff @(posedge clk) begin
    if (en) begin
      valid3 <= valid2;
      unit3 <= unit2;
      u3 <= u2;
      table_addr <= base2 + ADDR_W'(u2 >> index_shift2);
    end
  end
  assign tbl_en = valid3;

  // 3: the table read; the offset r within the segment.
  logic [31:0] r4;
  logic [1:0] unit4;
  logic drops4;
  logic [5:0] drop4;
  always_ff @(posedge clk) begin
    if (en) begin
      unit4 <= unit3;
      r4 <= u3 & offset_mask[unit3];
      drops4 <= drops[unit3];
      drop4 <= offset_drop[unit3];
    end
  end

  // 4: the word, and the offset t and its weight m.
  function automatic logic [T_W-1:0] offset_t(input logic [31:0] r, input logic drops_bits, input logic [5:0] drop);
    offset_t = drops_bits ? {(T_W - 1)'(r >> drop), 1'b1} : T_W'(r);
  endfunction
  logic [63:0] word5;
  logic [T_W-1:0] t5;
  logic [5:0] m5;
  logic [1:0] unit5;
  always_ff @(posedge clk) begin
    if (en) begin
      word5 <= table_word;
      t5 <= offset_t(r4, drops4, drop4);
      m5 <= weight_m[unit4];
      unit5 <= unit4;
    end
  end

  // 5: the slope product as two registered halves (each one DSP multiplier, no adder after
  // it), slope * t = (slope[31:16] * t << 16) + slope[15:0] * t, and the shifted intercept.
  logic signed [31:0] value5;
  logic signed [15:0] slope_high5;
  logic [15:0] slope_low5;
  assign value5 = signed'(word5[31:0]);
  assign slope_high5 = signed'(word5[63:48]);
  assign slope_low5 = word5[47:32];
  function automatic logic signed [16+T_W:0] high_product(input logic signed [15:0] slope, input logic [T_W-1:0] t);
    high_product = slope * signed'({1'b0, t});
  endfunction
  function automatic logic signed [17+T_W:0] low_product(input logic [15:0] slope, input logic [T_W-1:0] t);
    low_product = signed'({1'b0, slope}) * signed'({1'b0, t});
  endfunction
  logic signed [LINE_W-1:0] shifted6, high6, low6;
  logic signed [31:0] value6;
  logic [5:0] shift6;
  logic [1:0] unit6;
  always_ff @(posedge clk) begin
    if (en) begin
      high6 <= LINE_W'(high_product(slope_high5, t5)) <<< 16;
      low6 <= LINE_W'(low_product(slope_low5, t5));
      shifted6 <= LINE_W'(value5) <<< m5;
      value6 <= value5;
      shift6 <= line_shift[unit5];
      unit6 <= unit5;
    end
  end

  // 6: the line, shifted + high + low: one carry-save layer, then one carry chain.
  function automatic logic [LINE_W-1:0] line_of(input logic [LINE_W-1:0] a, input logic [LINE_W-1:0] b,
                                                 input logic [LINE_W-1:0] c);
    logic [LINE_W-1:0] save_sum, save_carry;
    save_sum = a ^ b ^ c;
    save_carry = ((a & b) | (a & c) | (b & c)) << 1;
    line_of = save_sum + save_carry;
  endfunction
  logic signed [LINE_W-1:0] line7;
  logic [REQUANT_LATENCY:0][31:0] value_d;
  logic [REQUANT_LATENCY:0][1:0] unit_d;
  always_ff @(posedge clk) begin
    if (en) begin
      line7 <= signed'(line_of(shifted6, high6, low6));
      value_d <= {value_d[REQUANT_LATENCY-1:0], value6};
      unit_d <= {unit_d[REQUANT_LATENCY-1:0], unit6};
    end
  end

  // 7-10: round (the shift goes in a cycle ahead of its line); 11: clamp (pwl) or the entry (lut), y from 12.
  // The output bounds (a code format's range, within LINE_W bits) saturated to LINE_W bits
  // for the requantizer's comparisons.
  localparam logic signed [63:0] LINE_MIN = -(64'sd1 <<< (LINE_W - 1)), LINE_MAX = (64'sd1 <<< (LINE_W - 1)) - 1;
  logic signed [LINE_W-1:0] line_lo, line_hi;
  always_ff @(posedge clk) begin
    if (en) begin
      line_lo <= LINE_W'(out_lo < LINE_MIN ? LINE_MIN : (out_lo > LINE_MAX ? LINE_MAX : out_lo));
      line_hi <= LINE_W'(out_hi < LINE_MIN ? LINE_MIN : (out_hi > LINE_MAX ? LINE_MAX : out_hi));
    end
  end
  logic signed [LINE_W-1:0] rounded;
  logic unused_saturated, below, above;
  tg_requant_pipe #(.IN_W(LINE_W), .OUT_W(LINE_W), .SHIFT_W(8)) narrow (
      .clk(clk), .en(en), .value(line7), .shift({2'b00, shift6}), .round_even(round_even), .lo(line_lo), .hi(line_hi),
      .result(rounded), .saturated(unused_saturated), .below(below), .above(above));

  logic signed [31:0] value11;
  logic [1:0] unit11;
  assign value11 = signed'(value_d[REQUANT_LATENCY]);
  assign unit11 = unit_d[REQUANT_LATENCY];
  always_ff @(posedge clk) begin
    if (en) begin
      if (!pwl[unit11]) y <= 64'(value11);
      else if (below) y <= out_lo;
      else if (above) y <= out_hi;
      else y <= 64'(rounded);
    end
  end
endmodule
