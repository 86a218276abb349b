// cpu.hpp — internal interfaces of the CPU backend (one op family per .cpp file).
// Activations are fp32 row-major [rows, width]; "rows" are the tokens of a step (backend.hpp Step).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "kvcache_cpu.hpp"
#include "pool.hpp"
#include "sampling.hpp"
#include "tile_cpu.hpp"

namespace qw {
namespace cpu {

// A weight matrix plus what its kernels need precomputed.
struct Weight {
  const NativeTensor *t = nullptr;
  bool has_offset = false;  // W8/W4 with some nonzero group offset (Q4_0, Q4_K, Q5_K); else offsets are ±0
};

// One output of a (possibly fused) matmul: out[t * out_stride + r] = x[t] . W[r] + bias[r].
struct MatJob {
  Weight w;
  const float *bias = nullptr;  // [rows] or nullptr
  float *out = nullptr;
  int64_t out_stride = 0;
  ActQuant act_quant{};   // toggle actQuant of the layer: which activation arm (opt/act_quant/act_quant_cpu.hpp)
};

// The offset term of a grouped weight's row (Q4_0 / Q4_K / Q5_K: w = s * q + o): sum_g o[g] * xsum[g], the groups in
// order. Every kernel adds it the same way, so the exact and int8 arms' kernels agree on it bit for bit.
inline float offset_dot(const float *of, const float *xsum, int64_t gpr) {
  float s = 0;
  for (int64_t g = 0; g < gpr; ++g) s += of[g] * xsum[g];
  return s;
}

// From this many tokens on a matmul is a GEMM: dequantize-then-f32-GEMM wins, and the GEMM kernels run.
constexpr int64_t kDequantMinT = 8;

// matmul.cpp — y = x W^T (+ bias) for every job, all sharing the input x [T, cols] (row stride x_stride).
// Row chunks of all jobs are shared out to the pool threads through a counter.
void matmul(const MatJob *jobs, int n_jobs, const float *x, int64_t T, int64_t x_stride, Pool &pool);
// What a fused matmul does around its rows (the CPU side of toggles ffn and norm: opt/ffn/ffn_cpu.hpp,
// opt/norm/norm_cpu.hpp).
struct MatFusion {
  // Prologue: x (the call's input, [T, cols], row stride x_stride) = RMSNorm(norm_src [T, cols]) * norm_w, row by
  // row inside the matmul's own pool job before any weight row. norm_src == nullptr: no prologue.
  const float *norm_src = nullptr;
  const float *norm_w = nullptr;
  float eps = 0;
  // jobs[0] and jobs[1] have the same rows and one work item runs the same rows of both (gate and up: SwiGLU).
  bool paired = false;
  // Runs on rows [r0, r1) of job j right after the thread computed them, while they are in its cache
  // (paired: after both jobs' rows, j = 0).
  std::function<void(int j, int64_t r0, int64_t r1)> epilogue;
};
// matmul with a fusion. Returns false when the norm prologue could not run inside the job: a job reads a summary of
// its input (group sums for weights with offsets, int8 codes for actQuant) before its first row, so the norm ran as
// a pass of its own first (same values; the caller names the kernel accordingly).
bool matmul_fused(const MatJob *jobs, int n_jobs, float *x, int64_t T, int64_t x_stride, Pool &pool,
                  const MatFusion &f);
// Whether matmul_fused runs a norm prologue inside its pool job for these jobs (see above).
bool matmul_prologue_in_job(const MatJob *jobs, int n_jobs, int64_t T);
// pre + kernel + post (string literals), e.g. "cpu.rmsnorm+" "cpu.gemv.bf16" "+swiglu"; interned, lives for the process.
const char *fused_kernel_name(const char *pre, const char *kernel, const char *post);
// e.g. "cpu.gemv.w8g32"; act_quant: the job's activation arm (its kernel is named only where it runs).
const char *matmul_kernel_name(const NativeTensor &t, int64_t T, ActQuant act_quant = ActQuant{});
// matmul_avx512.cpp — W8 / W4 / BF16 / F16 rows [r0, r1) for T < kDequantMinT tokens (x: [T, cols], row stride x_stride) with
// AVX-512 (call only when cpu_has_avx512()); a token's outputs do not depend on T. rb: row streams for single tokens
// (1, 2, 4 or 8; toggle tile, opt/tile/tile_cpu.hpp), 4 when fixed.
void gemv_grouped_avx512(const MatJob &job, const float *x, int64_t x_stride, int64_t T, const float *xsum, int64_t r0,
                         int64_t r1, int rb = 4);  // W8 or W4
void gemv_half_avx512(const MatJob &job, const float *x, int64_t x_stride, int64_t T, int64_t r0, int64_t r1,
                      int rb = 4);  // BF16 or F16
bool cpu_has_avx512();
std::string cpu_name();  // /proc/cpuinfo "model name" (backend_cpu.cpp)
// gemm_avx512.cpp — exact prefill GEMM over fp32 weight rows: out[t * out_stride + i] = w[i] . x[t] for
// rows i < n_rows (row stride ldw) and tokens t < T, K columns. Overwrites out; deterministic for any row split.
// kc: the largest K block (toggle tile; 1024 fixed); another kc changes the summation order only.
void gemm_f32_avx512(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t x_stride, int64_t T,
                     int64_t K, float *out, int64_t out_stride, int64_t kc_max = 1024);
// norm.cpp — out[t] = w * (x[t] * rsqrt(mean(x[t]^2) + eps)), [T, H].
void rmsnorm(float *out, const float *x, const float *w, int64_t T, int64_t H, float eps, Pool &pool);
void rmsnorm_row(float *out, const float *x, const float *w, int64_t H, float eps);  // one row of it

// rope.cpp — NeoX RoPE tables and application.
struct RopeTable {
  int32_t half = 0;        // head_dim / 2
  std::vector<float> cos;  // [max_pos, half]
  std::vector<float> sin;  // [max_pos, half]
};
RopeTable rope_table(int32_t max_pos, int32_t head_dim, float theta);
// Rotates n_heads heads of width head_dim in x [T, row_stride] in place; row t has position pos[t].
void rope_apply(float *x, int64_t T, int64_t row_stride, int32_t n_heads, int32_t head_dim, const int32_t *pos,
                const RopeTable &tab);

// elementwise.cpp
void residual_add(float *x, const float *y, int64_t n, Pool &pool);                   // x += y
void swiglu(float *out, const float *gate, const float *up, int64_t n, Pool &pool);  // silu(gate) * up
// silu(gate) * up over one span, serial; an element's value does not depend on where the span starts or ends
// (SwiGLU fused into the gate/up matmul applies it per row chunk and gives the same bits).
void swiglu_span(float *out, const float *gate, const float *up, int64_t n);

// attention.cpp — causal GQA attention over the session's KV cache (KvStore: opt/kvcache/kvcache_cpu.hpp).
struct AttnArgs {
  const Step *step;
  int32_t layer, n_heads, n_kv_heads, head_dim;
  const float *q;  // [R, n_heads * head_dim], after RoPE
  const float *k;  // [R, n_kv_heads * head_dim], after RoPE
  const float *v;  // [R, n_kv_heads * head_dim]
  float *z;        // [R, n_heads * head_dim] out
  Gqa gqa;         // toggle gqa of the layer: which KV heads attention reads (opt/gqa/gqa_cpu.hpp)
  Pool *pool;
  Attention attention{};  // toggle attention of the layer (default flash-bf16), or a Sage arm (opt/attention/sage_cpu.hpp)
};
struct GqaKv;
void attention(KvStore &kv, const AttnArgs &a);
void kv_append(KvStore &kv, const AttnArgs &a);  // writes the step's K/V rows at their positions (attention's step 1)
void softmax_scaled(float *s, int32_t n_keys, float scale);  // s = softmax(scale * s) over n_keys
// The query rows of an attention step, as every attention kernel splits its work into (row, head) tasks: the
// sequence (index into step.seq) of each row and the keys the row attends (causal: up to its own position).
struct StepRows {
  explicit StepRows(const Step &st);
  int64_t count() const { return int64_t(seq.size()); }
  int32_t n_keys(const Step &st, int64_t row) const {
    const size_t s = size_t(seq[size_t(row)]);
    return st.pos0[s] + int32_t(row - st.row_offset[s]) + 1;
  }
  std::vector<int32_t> seq;  // [rows] -> index into step.seq
};
// Threads for an attention step of `tasks` independent tasks: one when the step is small (a decode step of a
// small model is a few microseconds of attention: not worth waking a second thread), else up to the pool size.
int attention_threads(const Step &st, int32_t n_heads, int32_t head_dim, int64_t tasks, const Pool &pool);
// attention_avx512.cpp — blocked prefill attention (steps of >= kBlockedMinRows rows, head_dim % 64 == 0,
// AVX-512); g: the KV heads the gqa arm of the layer prepared (opt/gqa/gqa_cpu.hpp).
constexpr int64_t kBlockedMinRows = 8;
bool attention_blocked_ok(int32_t head_dim);
void attention_blocked_avx512(KvStore &kv, const AttnArgs &a, const GqaKv &g);

// The CPU model: native tensors by name, and the forward step (forward.cpp).
struct Layer {
  Weight q, k, v, o, gate, up, down;
  const float *attn_norm = nullptr /* null: no input norm (EAGLE head layer 0) */, *ffn_norm = nullptr, *bq = nullptr, *bk = nullptr, *bv = nullptr;
};
struct Model {
  Config cfg;
  std::vector<std::unique_ptr<NativeTensor>> tensors;
  Weight embed, output;  // output = embed when tied
  const float *out_norm = nullptr;  // null for an EAGLE head (no final norm)
  Weight eagle_fc;                  // EAGLE head only (cfg.eagle_head): fc [H, 2H] and its bias
  const float *eagle_fc_bias = nullptr;
  std::vector<Layer> layers;
  int threads = 1;  // pool size of each session
  const NativeTensor *find(const std::string &name) const;
};

// Links a model's layers to its tensors by name (missing ones: QW_ERR_NOT_FOUND); backend_cpu.cpp. The tensor-
// parallel emulation (opt/parallel/tp_cpu.cpp) links each rank's model of shards with it too.
void link_model(Model &m);

// The end of a step, shared by the forward and the tensor-parallel emulation (forward.cpp): which rows get logits,
// handing them (and hook_logits) to the sink, and sampling each sequence's last row.
struct LogitRows {
  bool all_rows = false;      // every row of the step (all-position logits or hook_logits), else the last per sequence
  std::vector<int64_t> sel;   // the step rows, in logits order
  int64_t last_row(const Step &st, size_t s) const {  // the logits row of sequence s's last position
    return all_rows ? st.row_offset[s] + st.n_new[s] - 1 : int64_t(s);
  }
};
LogitRows logit_rows(const Step &st, const Sink &sink);
// Logits rows left in the session's buffer (valid until its next step) for the front to copy when they are read
// (Sink::logits_deferred); the host offers no faster argmax than the front's own.
struct HostLogits final : LogitsReader {
  const float *p = nullptr;
  size_t n = 0;
  void fetch(float *host) override { std::copy(p, p + n, host); }
  bool argmax(int32_t *) override { return false; }
};
// lg: [sel, V], in a buffer that lives until the next step (kept hands it to the front without a copy)
void hand_out_logits(const Step &st, Sink &sink, const LogitRows &lr, const float *lg, int32_t V, HostLogits &kept);
void sample_step(const Step &st, const LogitRows &lr, const float *lg, int32_t V, SamplerScratch &scratch,
                 int32_t *out_tokens);

class Session final : public BackendSession {
 public:
  Session(const Model &m, int32_t max_batch, int32_t max_context, int32_t max_prefill);
  void configure(const StepToggles &t) override;
  void forward(const Step &step, Sink &sink, int32_t *out_tokens) override;
  void reset(int32_t) override {}  // the front tracks lengths; stale KV rows are overwritten before use
  KvInfo kv_info() const override { return kv_.info(); }
  const SparseStats *sparse_stats() const override { return &sparse_stats_; }
  bool supports_tree() const override { return true; }
  void kv_compact(int32_t seq, int32_t base, const int32_t *keep, int32_t n) override;
  std::string tile_info_json() const override { return cpu::tile_info_json(m_.threads, tiles_.size()); }
  std::string tile_tune_json(const TileTuneRequest &r) override { return cpu::tile_tune_json(m_, *pool_, r); }
  void set_tile_table(const TileTable &t) override { tiles_.set(t, m_.threads); }

 private:
  const Model &m_;
  int32_t max_batch_, max_context_, max_prefill_;
  KvStore kv_;
  std::unique_ptr<Pool> pool_;
  RopeTable rope_;
  // step buffers, grown on demand (fp32 [rows, width])
  std::vector<float> x_, h_, q_, k_, v_, z_, o_, g_, u_, a_, logits_, fin_;
  HostLogits kept_logits_;  // the front's view of logits_ until the next step
  std::vector<int32_t> pos_;
  SamplerScratch sampler_;
  std::vector<float> fnorm_;      // ln_final.hook_normalized capture: every row's final-normed state
  std::vector<float> eagle_cat_;  // EAGLE head: [embedding ; feature] rows (opt/speculative/eagle_cpu.hpp)
  std::vector<float> q_succ_, q_inter_;  // Dual Chunk Attention (src/opt/dca/): successive-/inter-chunk queries
  SparseStats sparse_stats_;              // sparse prefill (src/opt/sparse_prefill/): the latest prompt's measurements
  CpuTileTable tiles_;                    // toggle tile = auto: shape key -> blocking (src/opt/tile/tile_cpu.hpp)
};

}  // namespace cpu
}  // namespace qw
