// Dual-port synchronous RAM: two independent read/write ports on one clock.
//
// Each port reads the word at `addr` on a clock edge where `en` is high; the word
// appears on `rdata` after that edge (one cycle latency) and holds until the next
// enabled edge.  Both ports writing one address on the same edge leaves the word
// undefined.  INIT_FILE, when not empty, names a $readmemh image loaded at time zero.
//
// A read of an address written on the same edge (through either port) returns an
// undefined word in synthesis (no_rw_check): block RAMs that do not promise the old
// word across ports, ECP5's among them, are then used as they are, instead of yosys
// doubling them and adding bypass logic (or, with two write ports, building the memory
// from flip-flops).  Simulation returns the old word (read-first).  The same holds for a
// port's own read of the word it writes (UltraRAM keeps its output then: no_change).  The accelerator
// does not depend on it: its programs never read a word on the edge they write it
// (checked over the bit-exact test suite), and its streams do only when a host arms the
// input and the output stream over the same words at once.
//
// STYLE is the yosys/Vivado ram_style the words are mapped with: "auto" (the tool picks),
// "block" (block RAM), "ultra" (UltraScale+ URAM288: one clock, both ports read/write,
// no initial image but zeros), "distributed" (LUT RAM).  The compiler picks it per memory
// (hardware.AccelConfig.memory_map); it does not change what the memory computes.
module tg_ram_dp #(
    parameter int WIDTH = 16,
    parameter int DEPTH = 1024,
    parameter INIT_FILE = "",
    /* verilator lint_off UNUSEDPARAM */
    parameter STYLE = "auto",  // read by synthesis only (ram_style)
    /* verilator lint_on UNUSEDPARAM */
    localparam int ADDR_W = $clog2(DEPTH)
) (
    input  logic              clk,
    input  logic              a_en,
    input  logic              a_we,
    input  logic [ADDR_W-1:0] a_addr,
    input  logic [ WIDTH-1:0] a_wdata,
    output logic [ WIDTH-1:0] a_rdata,
    input  logic              b_en,
    input  logic              b_we,
    input  logic [ADDR_W-1:0] b_addr,
    input  logic [ WIDTH-1:0] b_wdata,
    output logic [ WIDTH-1:0] b_rdata
);
  (* no_rw_check, ram_style = STYLE *) logic [WIDTH-1:0] words[DEPTH];

  initial begin
    if (INIT_FILE != "") $readmemh(INIT_FILE, words);
  end

  always_ff @(posedge clk) begin
    if (a_en) begin
      if (a_we) words[a_addr] <= a_wdata;
      a_rdata <= words[a_addr];
    end
  end

  always_ff @(posedge clk) begin
    if (b_en) begin
      if (b_we) words[b_addr] <= b_wdata;
      b_rdata <= words[b_addr];
    end
  end
endmodule
