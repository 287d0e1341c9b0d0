// LANES multiply-accumulate lanes under one control, each with a requantizing output register.
//
// The lanes share their controls (acc_en, clear, emit, shift, round_even): an accelerator's
// lanes all take the same ones, so the control and its pipeline registers are built once
// and each lane keeps only its data path (operands, product, accumulator, output register);
// a simulation then evaluates the control once a cycle instead of once per lane.  Lane l's
// data are element l of the packed data ports (a[l], b[l], acc_init[l], acc[l], out[l],
// out_saturated[l]); with LANES = 1 the ports are those of a single lane.
//
// Accumulator of lane l, per clock edge:
//   acc[l] <= (clear ? acc_init[l] : acc[l]) + (acc_en ? a[l] * b[l] : 0)
// so `clear` together with `acc_en` starts a new sum with its first product and
// no idle cycle; acc_init carries a bias or a partial sum (zero for a plain sum, and
// with INIT = 0 every sum starts from zero and acc_init is not read).
// The accumulator wraps modulo 2**ACC_W; the compiler sizes ACC_W so that it
// never does (ACC_W >= A_W + B_W + ceil(log2 K)).
//
// Output register, on an edge where `emit` is high:
//   out[l] <= saturate_OUT_W(round(acc[l] * 2**-shift))   (tg_requant; shift is signed)
// It reads the accumulator before that edge, so `emit` may coincide with the
// `clear` that starts the next sum: the output register is the second buffer of
// a double-buffered accumulator.  out_valid follows `emit` by one cycle.  With
// REQUANT = 0 the output register takes the sum as it is (OUT_W = ACC_W; `shift` and
// `round_even` unused): what tg_requant gives for shift 0, without evaluating it on
// every edge of a simulation.
//
// MUL_STAGES (0, 1 or 2) registers the multiply: 1 the product (a DSP's pipeline register),
// 2 the operands too (the block RAM's or DSP's input register).  Every input then takes
// effect MUL_STAGES edges later, as if it had been given MUL_STAGES cycles later (`rst`
// acts at once); a multiplier of A_W x B_W bits and an accumulator of ACC_W bits (at most
// 48, a DSP slice's, for the compiler's formats and depths) are all a lane needs.
module tg_mac_lane #(
    parameter int A_W        = 8,
    parameter int B_W        = 8,
    parameter int ACC_W      = 32,
    parameter int OUT_W      = 8,
    parameter int SHIFT_W    = 7,
    parameter int MUL_STAGES = 0,
    parameter bit REQUANT    = 1,
    parameter bit INIT       = 1,
    parameter int LANES      = 1
) (
    input  logic                                clk,
    input  logic                                rst,
    input  logic                                acc_en,
    input  logic                                clear,
    input  logic [LANES-1:0][ACC_W-1:0]         acc_init,
    input  logic [LANES-1:0][  A_W-1:0]         a,
    input  logic [LANES-1:0][  B_W-1:0]         b,
    input  logic                                emit,
    input  logic signed     [SHIFT_W-1:0]       shift,
    input  logic                                round_even,
    output logic [LANES-1:0][ACC_W-1:0]         acc,
    output logic [LANES-1:0][OUT_W-1:0]         out,
    output logic                                out_valid,
    output logic [LANES-1:0]                    out_saturated
);
  if (ACC_W < A_W + B_W) begin : g_bad_width
    $error("tg_mac_lane: ACC_W (%0d) must hold a full product (A_W + B_W = %0d)", ACC_W, A_W + B_W);
  end
  if (!REQUANT && OUT_W != ACC_W) begin : g_bad_whole_sum
    $error("tg_mac_lane: without REQUANT, OUT_W (%0d) must equal ACC_W (%0d)", OUT_W, ACC_W);
  end
  if (MUL_STAGES < 0 || MUL_STAGES > 2) begin : g_bad_stages
    $error("tg_mac_lane: MUL_STAGES (%0d) must be 0, 1 or 2", MUL_STAGES);
  end

  // The shared controls as they reach the accumulators, MUL_STAGES edges after they were given.
  logic                      acc_en_d, clear_d, emit_d, round_even_d;
  logic signed [SHIFT_W-1:0] shift_d;
  if (MUL_STAGES == 0) begin : g_direct_control
    assign {acc_en_d, clear_d, emit_d, round_even_d, shift_d} = {acc_en, clear, emit, round_even, shift};
  end else begin : g_piped_control
    logic [MUL_STAGES-1:0] acc_en_q, clear_q, emit_q, round_even_q;
    logic signed [SHIFT_W-1:0] shift_q[MUL_STAGES];
    always_ff @(posedge clk) begin
      if (rst) begin
        acc_en_q <= '0;
        emit_q <= '0;
      end else begin
        acc_en_q <= MUL_STAGES'({acc_en_q, acc_en});
        emit_q <= MUL_STAGES'({emit_q, emit});
      end
      clear_q <= MUL_STAGES'({clear_q, clear});
      round_even_q <= MUL_STAGES'({round_even_q, round_even});
      shift_q[0] <= shift;
      for (int i = 1; i < MUL_STAGES; i++) shift_q[i] <= shift_q[i-1];
    end
    assign acc_en_d = acc_en_q[MUL_STAGES-1];
    assign clear_d = clear_q[MUL_STAGES-1];
    assign emit_d = emit_q[MUL_STAGES-1];
    assign round_even_d = round_even_q[MUL_STAGES-1];
    assign shift_d = shift_q[MUL_STAGES-1];
  end

  always_ff @(posedge clk) begin
    if (rst) out_valid <= 1'b0;
    else out_valid <= emit_d;
  end

  if (!REQUANT) begin : g_unused_requant_controls
    /* verilator lint_off UNUSEDSIGNAL */
    logic unused;
    assign unused = ^{shift_d, round_even_d};
    /* verilator lint_on UNUSEDSIGNAL */
  end
  if (!INIT) begin : g_unused_init
    /* verilator lint_off UNUSEDSIGNAL */
    logic unused;
    assign unused = ^acc_init;
    /* verilator lint_on UNUSEDSIGNAL */
  end

  for (genvar l = 0; l < LANES; l++) begin : g_lane
    logic signed [A_W+B_W-1:0] product;
    logic signed [  ACC_W-1:0] init_d;
    logic signed [  ACC_W-1:0] sum;
    logic signed [  OUT_W-1:0] requantized;
    logic                      requant_saturated;

    if (!INIT) begin : g_zero_init
      assign init_d = '0;
    end else if (MUL_STAGES == 0) begin : g_direct_init
      assign init_d = acc_init[l];
    end else begin : g_piped_init
      logic signed [ACC_W-1:0] init_q[MUL_STAGES];
      always_ff @(posedge clk) begin
        init_q[0] <= acc_init[l];
        for (int i = 1; i < MUL_STAGES; i++) init_q[i] <= init_q[i-1];
      end
      assign init_d = init_q[MUL_STAGES-1];
    end

    if (MUL_STAGES == 0) begin : g_direct
      assign product = signed'(a[l]) * signed'(b[l]);
    end else if (MUL_STAGES == 1) begin : g_product_reg
      always_ff @(posedge clk) product <= signed'(a[l]) * signed'(b[l]);
    end else begin : g_operand_regs
      logic signed [A_W-1:0] a_q;
      logic signed [B_W-1:0] b_q;
      always_ff @(posedge clk) begin
        a_q <= a[l];
        b_q <= b[l];
        product <= a_q * b_q;
      end
    end

    if (REQUANT) begin : g_requant
      tg_requant #(
          .IN_W   (ACC_W),
          .OUT_W  (OUT_W),
          .SHIFT_W(SHIFT_W)
      ) requant (
          .value     (sum),
          .shift     (shift_d),
          .round_even(round_even_d),
          .result    (requantized),
          .saturated (requant_saturated)
      );
    end else begin : g_whole_sum
      assign requantized = sum;
      assign requant_saturated = 1'b0;
    end

    always_ff @(posedge clk) begin
      if (rst) sum <= '0;
      else sum <= (clear_d ? init_d : sum) + (acc_en_d ? ACC_W'(product) : '0);
    end
    assign acc[l] = sum;

    always_ff @(posedge clk) begin
      if (emit_d) begin
        out[l]           <= requantized;
        out_saturated[l] <= requant_saturated;
      end
    end
  end
endmodule
