// Test top for the Verilator harness: two memories behind the host port and a
// small kernel between them.
//
// Memory 0 holds 16-bit signed words, memory 1 32-bit words.  After `start` the
// kernel reads memory 0 in the order of a tg_addr_gen walk over a rows x cols
// matrix stored column-major (so memory 1 receives the row-major transpose of
// what it reads), sign-extends each word and writes memory 1 sequentially.
// `done` rises with the last write: rows * cols + 2 edges after start, counting
// the start edge.
module tb_host_copy #(
    parameter int DEPTH = 256,
    localparam int ADDR_W = $clog2(DEPTH)
) (
    input  logic              clk,
    input  logic              rst,
    input  logic              start,
    input  logic [ADDR_W-1:0] rows,
    input  logic [ADDR_W-1:0] cols,
    output logic              done,
    input  logic              host_en,
    input  logic              host_we,
    input  logic [       7:0] host_mem,
    input  logic [ADDR_W-1:0] host_addr,
    input  logic [      31:0] host_wdata,
    output logic [      31:0] host_rdata
);
  localparam int DIMS = 2;

  logic [ADDR_W-1:0] read_addr;
  logic read_valid;
  logic read_last;
  logic write_valid;
  logic write_last;
  logic [ADDR_W-1:0] write_addr;
  logic [15:0] a_rdata;
  logic [15:0] b0_rdata;
  logic [31:0] b1_rdata;
  logic [31:0] unused_read;
  logic [7:0] read_mem;

  tg_addr_gen #(
      .DIMS   (DIMS),
      .ADDR_W (ADDR_W),
      .COUNT_W(ADDR_W)
  ) walk (
      .clk    (clk),
      .rst    (rst),
      .start  (start),
      .ready  (1'b1),
      .base   ('0),
      // element (r, c) of a column-major matrix lives at r + c * rows; c varies fastest
      .counts ({rows, cols}),
      .strides({ADDR_W'(1), rows}),
      .addr   (read_addr),
      .valid  (read_valid),
      .last   (read_last)
  );

  tg_ram_dp #(
      .WIDTH(16),
      .DEPTH(DEPTH)
  ) source (
      .clk    (clk),
      .a_en   (read_valid),
      .a_we   (1'b0),
      .a_addr (read_addr),
      .a_wdata('0),
      .a_rdata(a_rdata),
      .b_en   (host_en && host_mem == 8'd0),
      .b_we   (host_we),
      .b_addr (host_addr),
      .b_wdata(host_wdata[15:0]),
      .b_rdata(b0_rdata)
  );

  tg_ram_dp #(
      .WIDTH(32),
      .DEPTH(DEPTH)
  ) target (
      .clk    (clk),
      .a_en   (write_valid),
      .a_we   (1'b1),
      .a_addr (write_addr),
      .a_wdata({{16{a_rdata[15]}}, a_rdata}),
      .a_rdata(unused_read),
      .b_en   (host_en && host_mem == 8'd1),
      .b_we   (host_we),
      .b_addr (host_addr),
      .b_wdata(host_wdata),
      .b_rdata(b1_rdata)
  );

  always_ff @(posedge clk) begin
    if (rst || start) begin
      write_valid <= 1'b0;
      write_last  <= 1'b0;
      write_addr  <= '0;
      done        <= 1'b0;
    end else begin
      write_valid <= read_valid;
      write_last  <= read_valid && read_last;
      if (write_valid) write_addr <= write_addr + 1'b1;
      if (write_valid && write_last) done <= 1'b1;
    end
  end

  // host_rdata shows the memory selected by the request one edge earlier.
  always_ff @(posedge clk) begin
    if (host_en) read_mem <= host_mem;
  end
  assign host_rdata = (read_mem == 8'd0) ? {16'b0, b0_rdata} : b1_rdata;
endmodule
