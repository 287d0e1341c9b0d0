// Address generator for DIMS nested loops, one address per cycle.
//
// Walks   for i[DIMS-1] ... for i[1]  for i[0]:   addr = base + sum_d i[d] * strides[d]
// with loop 0 innermost and i[d] counting 0 .. counts[d]-1 (a count of 0 acts as 1,
// so unused loops need no special value).  Strides are two's complement and the
// address arithmetic wraps modulo 2**ADDR_W, so negative strides walk backwards.
// A reshape or transpose between contraction steps is just another set of strides.
//
// `start` samples base, counts and strides and makes the first address valid on the
// next cycle; it restarts a walk in progress.  While `valid` is high, `addr` is the
// current address and `last` marks the final one; an edge with `ready` high consumes
// it.  No multiplier: each loop level keeps the address its current iteration
// started at, and the innermost level is the output.  Whether a loop is in its final
// iteration is a register, updated from the index it steps from (registered carries), so
// the path from one address to the next holds one add and the choice of loop, not the
// loops' count comparisons.
module tg_addr_gen #(
    parameter int DIMS    = 6,
    parameter int ADDR_W  = 16,
    parameter int COUNT_W = 16
) (
    input  logic                           clk,
    input  logic                           rst,
    input  logic                           start,
    input  logic                           ready,
    input  logic [ ADDR_W-1:0]             base,
    input  logic [   DIMS-1:0][COUNT_W-1:0] counts,
    input  logic [   DIMS-1:0][ ADDR_W-1:0] strides,
    output logic [ ADDR_W-1:0]             addr,
    output logic                           valid,
    output logic                           last
);
  logic [DIMS-1:0][ ADDR_W-1:0] stride_q;
  logic [DIMS-1:0][COUNT_W-1:0] index;
  // level_addr[d]: the address at which the current iteration of loop d started.
  logic [DIMS-1:0][ ADDR_W-1:0] level_addr;

  logic [DIMS-1:0] at_end;  // loop d is in its final iteration (a register)
  logic [DIMS-1:0] single;  // loop d has one iteration: it starts, and restarts, at its end
  logic [DIMS-1:0][COUNT_W:0] count_m2;  // counts[d] - 2: a step from index count - 2 reaches the end
  logic [DIMS-1:0] inner_done;  // every loop inside loop d is in its final iteration
  logic all_done;
  logic [ADDR_W-1:0] next_addr;

  // Each loop's "every inner loop is at its end" is its own AND of the at_end registers (not
  // a chain through the loops), and the advancing loop's address is picked by an AND-OR of
  // one-hot selects (not a priority chain): the step's enables and next address stay a few
  // gates deep at any DIMS.
  logic [DIMS-1:0] advances;  // the one loop that steps: inner loops at their end, itself not
  always_comb begin
    next_addr = '0;
    for (int d = 0; d < DIMS; d++) begin
      inner_done[d] = &(at_end | ~DIMS'((1 << d) - 1));
      advances[d] = inner_done[d] && !at_end[d];
      next_addr = next_addr | ({ADDR_W{advances[d]}} & (level_addr[d] + stride_q[d]));
    end
    all_done = &at_end;
  end

  assign addr = level_addr[0];
  assign last = all_done;

  always_ff @(posedge clk) begin
    if (rst) begin
      valid <= 1'b0;
    end else if (start) begin
      valid <= 1'b1;
    end else if (valid && ready && last) begin
      valid <= 1'b0;
    end
  end

  always_ff @(posedge clk) begin
    if (start) begin
      stride_q   <= strides;
      index      <= '0;
      level_addr <= {DIMS{base}};
      for (int d = 0; d < DIMS; d++) begin
        single[d]   <= counts[d] <= COUNT_W'(1);
        at_end[d]   <= counts[d] <= COUNT_W'(1);
        count_m2[d] <= (COUNT_W + 1)'(counts[d]) - (COUNT_W + 1)'(2);
      end
    end else if (valid && ready && !last) begin
      // The advancing loop steps; every loop inside it restarts from the new address.
      for (int d = 0; d < DIMS; d++) begin
        if (inner_done[d]) begin
          index[d]      <= at_end[d] ? '0 : index[d] + 1'b1;
          at_end[d]     <= at_end[d] ? single[d] : $signed({1'b0, index[d]}) >= $signed(count_m2[d]);
          level_addr[d] <= next_addr;
        end
      end
    end
  end
endmodule
