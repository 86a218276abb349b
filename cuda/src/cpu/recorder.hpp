// recorder.hpp — the op records of a CPU step (profiling modes events / kernels: the CPU runs both alike), shared by
// the tp1 forward (forward.cpp) and the tensor-parallel emulation (opt/parallel/tp_cpu.cpp, one Recorder per rank).
//
// Invariant: a Recorder's records tile its step. The time between two ops (and before the first / after the last)
// becomes a QW_OP_GAP record, so per-op time + gaps = the step, from the Recorder's creation to finish()
// (README.md, "Profiling modes and what they cost"). A gap is named "cpu.gap", or what the owner set gap_kernel
// to for the next gap (the emulation: "cpu.gap.other_ranks", the time the CPU spent on other ranks' ops).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <type_traits>

#include "cost.hpp"
#include "cpu.hpp"

namespace qw {
namespace cpu {

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Times an op and emits its record when profiling; otherwise just runs it.
struct Recorder {
  static constexpr const char *kGap = "cpu.gap";
  const Step &st;
  Sink &sink;
  int32_t rows;
  int32_t rank = 0;                // qw_op_record.rank: 0 at tp1, the emulated rank at parallel = tpN
  int64_t last_end = now_ns();     // the step's start, then the end of the latest record
  const char *gap_kernel = kGap;   // the next gap's kernel name (reset to kGap once that gap is recorded)
  void emit(int32_t layer, int32_t op, const char *kernel, const OpCost &cost, int32_t n_tokens, int64_t t0, int64_t t1) {
    qw_op_record r{};
    r.step = st.step_index;
    r.phase = st.phase;
    r.layer = layer;
    r.op = op;
    r.kernel = sink.kernel_id(kernel);
    r.t_start_ns = t0;
    r.t_end_ns = t1;
    r.flops = cost.flops;
    r.bytes = cost.bytes;
    r.n_tokens = n_tokens;
    r.rank = rank;
    sink.record(r);
  }
  void gap_until(int64_t t, int32_t layer) {
    if (t > last_end) emit(layer, QW_OP_GAP, gap_kernel, OpCost{}, 0, last_end, t);
    gap_kernel = kGap;
    last_end = std::max(last_end, t);
  }
  // `cost` is read after fn has run: an op whose cost depends on what it did (sparse prefill) sets it inside fn.
  // `kernel`: a name, or a callable that returns one, called only when profiling (a fused kernel's name is composed
  // under a lock and a map lookup: ~17 of them per decode step are a measurable share of a small model's step).
  template <class K, class F>
  void op(int32_t layer, int32_t op, const K &kernel, const OpCost &cost, int32_t n_tokens, F &&fn) {
    if (!st.profiling) {
      fn();
      return;
    }
    const int64_t t0 = now_ns();
    fn();
    const int64_t t1 = now_ns();
    timed(layer, op, kernel, cost, n_tokens, t0, t1);  // the gap before t0, then the op
  }
  // The record of an op timed by the caller over [t0, t1] (t0 >= the latest record's end), after the gap before it.
  // The emulation records an op that all ranks share this way: once per rank, over the same interval.
  template <class K>
  void timed(int32_t layer, int32_t op, const K &kernel, const OpCost &cost, int32_t n_tokens, int64_t t0, int64_t t1) {
    gap_until(t0, layer);
    const char *name;
    if constexpr (std::is_invocable_v<const K &>) name = kernel();
    else name = kernel;
    emit(layer, op, name, cost, n_tokens, t0, t1);
    last_end = t1;
  }
  // The pool's workers may be asleep after an idle pause: waking them is its own record, not a cost hidden
  // in the step's first op (layer 0's qkv used to carry it).
  void wake(Pool &pool) { op(-1, QW_OP_POOL_WAKE, "cpu.pool_wake", OpCost{}, 0, [&] { pool.wake(); }); }
  void finish(int64_t t = now_ns()) {
    if (st.profiling) gap_until(t, -1);
  }
};

// Costs and kernel names that the tp1 forward and each emulated rank record alike (forward.cpp). A rank passes its
// own widths (Qd, KVd: its heads; F: its intermediate slice), so that the ranks' matmul FLOPs sum to tp1's.
// qkv: the three projections (with their biases) as one op; x is read once for all three.
OpCost cost_qkv(const Layer &ly, int64_t R, int64_t H, int64_t Qd, int64_t KVd, double act);
// gate | up as one op (x read once), before any fused SwiGLU / norm of the ffn arm.
OpCost cost_gate_up(const Layer &ly, int64_t R, int64_t H, int64_t F, double act);
// The attention kernel a layer runs (KV cache type, then toggles attention and gqa), without DCA / sparse prefill.
const char *attention_kernel(const KvStore &kv, const LayerToggles &lt);

}  // namespace cpu
}  // namespace qw
