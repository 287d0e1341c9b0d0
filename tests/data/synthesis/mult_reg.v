module t(input clk, input [7:0] a, b, output reg [15:0] y);
  reg [7:0] ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; y <= ra * rb; end
endmodule
