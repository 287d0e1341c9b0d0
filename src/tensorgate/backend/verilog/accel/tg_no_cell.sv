// The stand-in for a cell unit a build leaves out (tg_accel's LSTM_CELL / GRU_RNN_CELL = 0):
// the ports of tg_lstm_cell and tg_gru_rnn_cell, no reads, lookups or writes, and an
// instruction finished the cycle after its start, so a program the build was not made for
// cannot hang it.
module tg_no_cell #(
    parameter int S_AW = 13,
    parameter int T_AW = 12
) (
    input  logic                   clk,
    input  logic                   rst,
    input  logic                   start,
    output logic                   finished,
    output logic                   rd_en,
    output logic        [S_AW-1:0] rd_addr,
    output logic                   wr_en,
    output logic        [S_AW-1:0] wr_addr,
    output logic signed [    63:0] wr_data,
    output logic                   tbl_en,
    output logic        [T_AW-1:0] tbl_addr
);
  always_ff @(posedge clk) finished <= !rst && start;
  assign rd_en = 1'b0;
  assign rd_addr = '0;
  assign wr_en = 1'b0;
  assign wr_addr = '0;
  assign wr_data = '0;
  assign tbl_en = 1'b0;
  assign tbl_addr = '0;
endmodule
