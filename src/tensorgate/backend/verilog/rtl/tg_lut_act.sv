// Table-lookup activation: y = table[clamp((x >>> shift) + offset, idx_lo, idx_hi)].
//
// `>>>` is an arithmetic shift (floor division by 2**shift).  shift, offset and
// the clamp bounds are run-time inputs, so one table memory can hold several
// functions (sigma in one region, tanh in another) and the program picks the
// region per instruction.  The table is a tg_ram_dp: port A serves lookups, port B
// (tbl_*) loads or reads back entries.  Latency is one cycle: y and out_valid
// follow x and in_valid by one edge.
module tg_lut_act #(
    parameter int IN_W     = 16,
    parameter int OUT_W    = 16,
    parameter int DEPTH    = 512,
    parameter int SHIFT_W  = 5,
    parameter int OFFSET_W = 16,
    parameter INIT_FILE = "",
    localparam int IDX_W = $clog2(DEPTH)
) (
    input  logic                       clk,
    input  logic                       rst,
    input  logic                       in_valid,
    input  logic signed [    IN_W-1:0] x,
    input  logic        [ SHIFT_W-1:0] shift,
    input  logic signed [OFFSET_W-1:0] offset,
    input  logic        [   IDX_W-1:0] idx_lo,
    input  logic        [   IDX_W-1:0] idx_hi,
    output logic                       out_valid,
    output logic signed [   OUT_W-1:0] y,
    input  logic                       tbl_en,
    input  logic                       tbl_we,
    input  logic        [   IDX_W-1:0] tbl_addr,
    input  logic        [   OUT_W-1:0] tbl_wdata,
    output logic        [   OUT_W-1:0] tbl_rdata
);
  // Wide enough for the shifted input plus the offset, and to compare with any index.
  localparam int MAX_IN = (IN_W > OFFSET_W) ? IN_W : OFFSET_W;
  localparam int W = ((MAX_IN > IDX_W) ? MAX_IN : IDX_W) + 1;

  logic signed [W-1:0] position;
  logic signed [W-1:0] lo;
  logic signed [W-1:0] hi;
  logic [IDX_W-1:0] index;
  logic [OUT_W-1:0] entry;

  always_comb begin
    position = W'(x >>> shift) + W'(offset);
    lo = W'({1'b0, idx_lo});
    hi = W'({1'b0, idx_hi});
    if (position < lo) index = idx_lo;
    else if (position > hi) index = idx_hi;
    else index = position[IDX_W-1:0];
  end

  tg_ram_dp #(
      .WIDTH    (OUT_W),
      .DEPTH    (DEPTH),
      .INIT_FILE(INIT_FILE)
  ) table_ram (
      .clk    (clk),
      .a_en   (in_valid),
      .a_we   (1'b0),
      .a_addr (index),
      .a_wdata('0),
      .a_rdata(entry),
      .b_en   (tbl_en),
      .b_we   (tbl_we),
      .b_addr (tbl_addr),
      .b_wdata(tbl_wdata),
      .b_rdata(tbl_rdata)
  );

  assign y = entry;

  always_ff @(posedge clk) begin
    if (rst) out_valid <= 1'b0;
    else out_valid <= in_valid;
  end
endmodule
