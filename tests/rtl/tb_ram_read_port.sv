// Test top for synthesis: a tg_ram_dp as the accelerator instantiates its memories, port A
// read-only (the engine's reads) and port B reading and writing (the host port).  With both
// ports writing, yosys needs old data on a cross-port collision, which ECP5 block RAM does
// not promise, and falls back to flip-flops; the accelerator never writes through port A.
// STYLE: the memory's ram_style (tg_ram_dp).
module tb_ram_read_port #(
    parameter int WIDTH = 16,
    parameter int DEPTH = 1024,
    parameter STYLE = "auto",
    localparam int ADDR_W = $clog2(DEPTH)
) (
    input  logic              clk,
    input  logic              a_en,
    input  logic [ADDR_W-1:0] a_addr,
    output logic [ WIDTH-1:0] a_rdata,
    input  logic              b_en,
    input  logic              b_we,
    input  logic [ADDR_W-1:0] b_addr,
    input  logic [ WIDTH-1:0] b_wdata,
    output logic [ WIDTH-1:0] b_rdata
);
  tg_ram_dp #(.WIDTH(WIDTH), .DEPTH(DEPTH), .STYLE(STYLE)) ram (
      .clk(clk),
      .a_en(a_en), .a_we(1'b0), .a_addr(a_addr), .a_wdata('0), .a_rdata(a_rdata),
      .b_en(b_en), .b_we(b_we), .b_addr(b_addr), .b_wdata(b_wdata), .b_rdata(b_rdata));
endmodule
