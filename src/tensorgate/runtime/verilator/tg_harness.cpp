// tensorgate simulation harness: a C ABI over one Verilated top module.
//
// Built into a shared library together with the Verilated model (class Vtg) by
// tensorgate.runtime.verilator, which generates "tg_ports.inc" next to this file
// from the model's header.  That file defines TG_PORT_<name> (the port's index),
// tg_port_put/tg_port_get (indexed access to every port) and includes "Vtg.h".
//
// Port conventions the harness knows by name (each optional):
//   clk                  the clock; one cycle = drive clk low, eval, drive clk high, eval
//   rst                  active-high synchronous reset
//   start                pulsed for one edge by tg_run when asked to
//   done                 the design has finished (tg_run stops when it is high)
//   host_en, host_we, host_mem, host_addr, host_wdata, host_rdata
//                        the host memory port: while host_en is high, an edge with
//                        host_we writes host_wdata to word host_addr of memory host_mem;
//                        without host_we it reads, and host_rdata shows the word
//                        `latency` edges later.
//   in_valid, in_ready, in_data
//                        an input stream: words queued by tg_stream_push are offered
//                        on in_data (in_valid high) during tg_run, one taken on each
//                        edge where in_ready is high, in order.
// All values cross the ABI as little-endian arrays of 64-bit words (one word for
// ports up to 64 bits).  Functions that simulate return a status: 0, or
// TG_FAILED once Verilator reported a fatal error ($fatal, $stop, a runtime
// error), after which tg_error tells what happened and the instance refuses
// further work.  The library is compiled with VL_USER_FATAL so that such an
// error reaches the caller instead of exiting the process.

#include <cstdint>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>

#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

namespace {

constexpr int TG_FAILED = -3;

constexpr uint64_t low_mask(int bits) { return bits >= 64 ? ~uint64_t{0} : (uint64_t{1} << bits) - 1; }

template <typename T>
void put_port(T& port, const uint64_t* words, int width) {
    port = static_cast<T>(words[0] & low_mask(width));
}

template <std::size_t N>
void put_port(VlWide<N>& port, const uint64_t* words, int width) {
    for (std::size_t i = 0; i < N; ++i) {
        port[i] = static_cast<EData>(words[i / 2] >> (32 * (i % 2)));
    }
    const int top_bits = width - 32 * static_cast<int>(N - 1);
    if (top_bits < 32) port[N - 1] &= (EData{1} << top_bits) - 1;
}

template <typename T>
void get_port(const T& port, uint64_t* words, int width) {
    words[0] = static_cast<uint64_t>(port) & low_mask(width);
}

template <std::size_t N>
void get_port(const VlWide<N>& port, uint64_t* words, int /*width*/) {
    for (std::size_t i = 0; i < (N + 1) / 2; ++i) words[i] = 0;
    for (std::size_t i = 0; i < N; ++i) {
        words[i / 2] |= static_cast<uint64_t>(port[i]) << (32 * (i % 2));
    }
}

struct SimulationFatal : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

// Replaces Verilator's vl_fatal (which exits the process): unwind to the entry point.
void vl_fatal(const char* filename, int linenum, const char* /*hier*/, const char* msg) {
    Verilated::threadContextp()->gotError(true);
    Verilated::threadContextp()->gotFinish(true);
    const std::string path = filename;  // sources are built from a scratch copy: keep the name only
    const std::string where = path.substr(path.find_last_of('/') + 1) + ":" + std::to_string(linenum);
    throw SimulationFatal(path.empty() ? std::string(msg) : where + ": " + msg);
}

#include "tg_ports.inc"

namespace {

struct Sim {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<Vtg> model;
#if VM_TRACE
    std::unique_ptr<VerilatedVcdC> trace;
#endif
    uint64_t cycles = 0;
    std::string error;
    std::deque<uint64_t> stream;  // words still to offer on the input stream
    bool streaming = false;       // in_valid is driven by the queue

    // Offer the queue's next word (or withdraw in_valid once the queue has drained).
    void offer() {
#if defined(TG_PORT_in_valid) && defined(TG_PORT_in_data)
        if (!stream.empty()) {
            set(TG_PORT_in_valid, 1);
            set(TG_PORT_in_data, stream.front());
        } else if (streaming) {
            set(TG_PORT_in_valid, 0);
            streaming = false;
        }
#endif
    }

    // Whether the settled design takes the offered word on the coming edge.
    bool taking() {
#if defined(TG_PORT_in_valid) && defined(TG_PORT_in_ready)
        return !stream.empty() && get(TG_PORT_in_ready) != 0;
#else
        return false;
#endif
    }

    // One edge of tg_run: clock, consume the word taken, offer the next and settle.
    void run_edge() {
        const bool taken = taking();
        rising_edge();
        if (taken) stream.pop_front();
        offer();
        settle();
    }

    void eval() {
        model->eval();
#if VM_TRACE
        if (trace) trace->dump(context->time());
#endif
        context->timeInc(1);
    }

    // Settle the inputs set since the last edge with the clock low.
    void settle() {
#ifdef TG_PORT_clk
        model->clk = 0;
#endif
        eval();
    }

    void rising_edge() {
#ifdef TG_PORT_clk
        model->clk = 1;
#endif
        eval();
        ++cycles;
    }

    void cycle() {
        settle();
        rising_edge();
    }

    void set(int port, uint64_t value) { tg_port_put(model.get(), port, &value); }

    uint64_t get(int port) {
        uint64_t value = 0;
        tg_port_get(model.get(), port, &value);
        return value;
    }
};

// Run `body` unless the instance has failed before; turn a fatal error into TG_FAILED.
template <typename Body>
int guarded(void* handle, Body body) {
    auto* sim = static_cast<Sim*>(handle);
    if (!sim->error.empty()) return TG_FAILED;
    try {
        body(sim);
        return 0;
    } catch (const std::exception& failure) {
        sim->error = failure.what();
        return TG_FAILED;
    }
}

}  // namespace

extern "C" {

// A new instance; check tg_error: its initial blocks may already have failed.
void* tg_create(const char* vcd_path) {
    auto* sim = new Sim;
    sim->context = std::make_unique<VerilatedContext>();
    sim->context->randReset(0);
    sim->model = std::make_unique<Vtg>(sim->context.get(), "top");
    guarded(sim, [vcd_path](Sim* s) {
#if VM_TRACE
        if (vcd_path && *vcd_path) {
            s->context->traceEverOn(true);
            s->trace = std::make_unique<VerilatedVcdC>();
            s->model->trace(s->trace.get(), 99);
            s->trace->open(vcd_path);
            if (!s->trace->isOpen()) throw SimulationFatal(std::string("cannot write ") + vcd_path);
        }
#else
        (void)vcd_path;
#endif
        s->settle();
    });
    return sim;
}

const char* tg_error(void* handle) { return static_cast<Sim*>(handle)->error.c_str(); }

void tg_destroy(void* handle) {
    auto* sim = static_cast<Sim*>(handle);
    guarded(sim, [](Sim* s) { s->model->final(); });
#if VM_TRACE
    if (sim->trace) sim->trace->close();
#endif
    delete sim;
}

void tg_put(void* handle, int port, const uint64_t* words) {
    tg_port_put(static_cast<Sim*>(handle)->model.get(), port, words);
}

void tg_get(void* handle, int port, uint64_t* words) {
    tg_port_get(static_cast<Sim*>(handle)->model.get(), port, words);
}

uint64_t tg_cycles(void* handle) { return static_cast<Sim*>(handle)->cycles; }

int tg_eval(void* handle) {
    return guarded(handle, [](Sim* s) { s->settle(); });
}

int tg_step(void* handle, uint64_t n) {
    return guarded(handle, [n](Sim* s) {
        for (uint64_t i = 0; i < n; ++i) s->cycle();
        s->settle();
    });
}

// Hold rst high for `n` edges, then release it.  Without a rst port: plain cycles.
int tg_reset(void* handle, uint64_t n) {
    return guarded(handle, [n](Sim* s) {
#ifdef TG_PORT_rst
        s->model->rst = 1;
#endif
        for (uint64_t i = 0; i < n; ++i) s->cycle();
#ifdef TG_PORT_rst
        s->model->rst = 0;
#endif
        s->settle();
    });
}

// Clock until `done` is high (checked before each edge), the design calls
// $finish, or `max_cycles` edges have passed; returns the number of edges.  With
// `pulse_start`, `start` is high for the first edge (that edge counts).  -1 when
// the design lacks a done port, -2 when it lacks the start port asked for.
int64_t tg_run(void* handle, uint64_t max_cycles, int pulse_start) {
#ifdef TG_PORT_done
#ifndef TG_PORT_start
    if (pulse_start) return -2;
#endif
    uint64_t n = 0;
    const int status = guarded(handle, [&n, max_cycles, pulse_start](Sim* s) {
        s->offer();
        s->settle();
#ifdef TG_PORT_start
        if (pulse_start && max_cycles > 0) {
            s->model->start = 1;
            s->settle();
            s->run_edge();
            s->model->start = 0;
            s->settle();
            ++n;
        }
#endif
        while (n < max_cycles && !s->model->done && !s->context->gotFinish()) {
            s->run_edge();
            ++n;
        }
    });
    return status == 0 ? static_cast<int64_t>(n) : status;
#else
    (void)handle;
    (void)max_cycles;
    (void)pulse_start;
    return -1;
#endif
}

// Queue `n` words for the input stream (offered during tg_run); the words still queued.
uint64_t tg_stream_push(void* handle, uint64_t n, const uint64_t* words) {
    auto* sim = static_cast<Sim*>(handle);
    sim->stream.insert(sim->stream.end(), words, words + n);
    sim->streaming = sim->streaming || n > 0;
    return sim->stream.size();
}

// Vector mode: for each of `n` cycles set the inputs from row t of `in_values`
// (n x n_in), settle, record the outputs into row t of `out_values` (n x n_out),
// then clock.  Outputs therefore show the state after t edges together with
// whatever combinational paths the inputs of cycle t drive.
int tg_drive(void* handle, uint64_t n, int n_in, const int* in_ports, const uint64_t* in_values,
             int n_out, const int* out_ports, uint64_t* out_values) {
    return guarded(handle, [=](Sim* s) {
        for (uint64_t t = 0; t < n; ++t) {
            for (int i = 0; i < n_in; ++i) s->set(in_ports[i], in_values[t * n_in + i]);
            s->settle();
            for (int o = 0; o < n_out; ++o) out_values[t * n_out + o] = s->get(out_ports[o]);
            s->rising_edge();
        }
        s->settle();
    });
}

#if defined(TG_PORT_host_en) && defined(TG_PORT_host_we) && defined(TG_PORT_host_mem) && \
    defined(TG_PORT_host_addr) && defined(TG_PORT_host_wdata) && defined(TG_PORT_host_rdata)

// Write n words to memory `mem` from word `addr` on: one edge per word.
int tg_mem_write(void* handle, uint64_t mem, uint64_t addr, uint64_t n, const uint64_t* data) {
    return guarded(handle, [=](Sim* s) {
        s->set(TG_PORT_host_en, 1);
        s->set(TG_PORT_host_we, 1);
        s->set(TG_PORT_host_mem, mem);
        for (uint64_t i = 0; i < n; ++i) {
            s->set(TG_PORT_host_addr, addr + i);
            s->set(TG_PORT_host_wdata, data[i]);
            s->cycle();
        }
        s->set(TG_PORT_host_en, 0);
        s->set(TG_PORT_host_we, 0);
        s->settle();
    });
}

// Read n words of memory `mem` from word `addr` on, pipelined: one edge per word
// plus `latency` - 1 edges to drain.
int tg_mem_read(void* handle, uint64_t mem, uint64_t addr, uint64_t n, uint64_t latency,
                uint64_t* data) {
    return guarded(handle, [=](Sim* s) {
        s->set(TG_PORT_host_we, 0);
        s->set(TG_PORT_host_mem, mem);
        for (uint64_t edge = 0; edge < n + latency - 1; ++edge) {
            s->set(TG_PORT_host_en, edge < n ? 1 : 0);
            if (edge < n) s->set(TG_PORT_host_addr, addr + edge);
            s->cycle();
            if (edge + 1 >= latency) data[edge + 1 - latency] = s->get(TG_PORT_host_rdata);
        }
        s->set(TG_PORT_host_en, 0);
        s->settle();
    });
}

#else

int tg_mem_write(void*, uint64_t, uint64_t, uint64_t, const uint64_t*) { return -1; }
int tg_mem_read(void*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t*) { return -1; }

#endif

}  // extern "C"
