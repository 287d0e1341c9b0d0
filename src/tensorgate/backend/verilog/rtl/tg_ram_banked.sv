// A memory of DEPTH words in BANKS interleaved banks (word w in bank w mod BANKS, at row
// w / BANKS), with RD read ports and WR write ports: each bank is a tg_ram_dp whose port A
// reads and port B writes, so a cycle's reads (and writes) that fall in distinct banks all
// happen at once.  Banking instead of copies: the memory holds every word once.
//
// A bank serves the lowest-numbered enabled port whose address falls in it.  Two reads of
// one bank in a cycle must be of one word (they then share it); two writes of one bank in
// a cycle are not allowed (the higher-numbered port's word is dropped): the compiler places
// values so that a cycle's parallel walks keep to this.  Read data appear on the edge
// after the request, as from tg_ram_dp, and hold until the port or another reads that bank.
//
// Writes are registered at the ports: a bank writes the word one edge after the request,
// so a long path into a port (a cell's result, a drain lane's) ends at a flip-flop and not
// at a bank's data pins.  A read on the edge the delayed write lands takes the written word
// from a forwarding register instead of the bank, so reads see exactly what they saw
// without the delay: a word written on the edge before, not one written on the same edge.
// STYLE is every bank's ram_style (tg_ram_dp): a bank's port A only reads and its port B
// only writes, which block RAM and UltraRAM both serve.
module tg_ram_banked #(
    parameter int WIDTH = 16,
    parameter int DEPTH = 1024,
    parameter int BANKS = 1,
    parameter int RD    = 1,
    parameter int WR    = 1,
    parameter STYLE     = "auto",
    localparam int ADDR_W = $clog2(DEPTH)
) (
    input  logic                       clk,
    input  logic                       rst,
    input  logic [RD-1:0]              rd_en,
    input  logic [RD-1:0][ADDR_W-1:0]  rd_addr,
    output logic [RD-1:0][ WIDTH-1:0]  rd_data,
    input  logic [WR-1:0]              wr_en,
    input  logic [WR-1:0][ADDR_W-1:0]  wr_addr,
    input  logic [WR-1:0][ WIDTH-1:0]  wr_data
);
  localparam int ROWS = (DEPTH + BANKS - 1) / BANKS < 2 ? 2 : (DEPTH + BANKS - 1) / BANKS;
  localparam int ROW_W = $clog2(ROWS);
  localparam int BANK_W = BANKS > 1 ? $clog2(BANKS) : 1;

  function automatic logic [BANK_W-1:0] bank_of(input logic [ADDR_W-1:0] addr);
    bank_of = BANK_W'(addr % ADDR_W'(BANKS));
  endfunction

  function automatic logic [ROW_W-1:0] row_of(input logic [ADDR_W-1:0] addr);
    row_of = ROW_W'(addr / ADDR_W'(BANKS));
  endfunction

  logic [WR-1:0] wr_en_q;
  logic [WR-1:0][ADDR_W-1:0] wr_addr_q;
  logic [WR-1:0][WIDTH-1:0] wr_data_q;
  always_ff @(posedge clk) begin
    wr_en_q <= rst ? '0 : wr_en;
    wr_addr_q <= wr_addr;
    wr_data_q <= wr_data;
  end

  // Each port's bank and row, worked out once a cycle rather than once for every bank the
  // port is matched against (a simulation otherwise repeats it RD x BANKS times).
  logic [BANK_W-1:0] rd_bank[RD], wr_bank[WR];
  logic [ROW_W-1:0] rd_row[RD], wr_row[WR];
  always_comb begin
    for (int p = 0; p < RD; p++) begin
      rd_bank[p] = bank_of(rd_addr[p]);
      rd_row[p] = row_of(rd_addr[p]);
    end
    for (int p = 0; p < WR; p++) begin
      wr_bank[p] = bank_of(wr_addr_q[p]);
      wr_row[p] = row_of(wr_addr_q[p]);
    end
  end

  logic [BANKS-1:0][WIDTH-1:0] bank_rdata, bank_word;
  for (genvar b = 0; b < BANKS; b++) begin : g_bank
    logic read, write;
    logic [ROW_W-1:0] read_row, write_row;
    logic [WIDTH-1:0] write_word, unused_rdata;
    always_comb begin
      read = 1'b0;
      read_row = '0;
      for (int p = RD - 1; p >= 0; p--) begin
        if (rd_en[p] && rd_bank[p] == BANK_W'(b)) begin
          read = 1'b1;
          read_row = rd_row[p];
        end
      end
      write = 1'b0;
      write_row = '0;
      write_word = '0;
      for (int p = WR - 1; p >= 0; p--) begin
        if (wr_en_q[p] && wr_bank[p] == BANK_W'(b)) begin
          write = 1'b1;
          write_row = wr_row[p];
          write_word = wr_data_q[p];
        end
      end
    end
    tg_ram_dp #(.WIDTH(WIDTH), .DEPTH(ROWS), .STYLE(STYLE)) bank (
        .clk(clk),
        .a_en(read), .a_we(1'b0), .a_addr(read_row), .a_wdata('0), .a_rdata(bank_rdata[b]),
        .b_en(write), .b_we(1'b1), .b_addr(write_row), .b_wdata(write_word), .b_rdata(unused_rdata));

    // The write landing on a read's edge, kept beside the read's row: compared after the
    // edge, so the comparison runs beside the bank's output and not after the read's
    // address.  Updated only by a read, so the word holds as the bank's output does.
    logic landed;
    logic [ROW_W-1:0] landed_row, read_row_q;
    logic [WIDTH-1:0] landed_word;
    always_ff @(posedge clk) begin
      if (read) begin
        landed <= write;
        landed_row <= write_row;
        landed_word <= write_word;
        read_row_q <= read_row;
      end
    end
    assign bank_word[b] = (landed && landed_row == read_row_q) ? landed_word : bank_rdata[b];
  end

  // The bank each port read last, so its word is taken from that bank's output.
  logic [RD-1:0][BANK_W-1:0] read_bank;
  always_ff @(posedge clk) begin
    for (int p = 0; p < RD; p++) if (rd_en[p]) read_bank[p] <= rd_bank[p];
  end
  always_comb begin
    for (int p = 0; p < RD; p++) rd_data[p] = bank_word[BANKS > 1 ? int'(read_bank[p]) : 0];
  end
endmodule
