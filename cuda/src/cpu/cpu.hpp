// cpu.hpp — internal interfaces of the CPU backend (one op family per .cpp file).
// Activations are fp32 row-major [rows, width]; "rows" are the tokens of a step (backend.hpp Step).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "pool.hpp"
#include "sampling.hpp"

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
  bool act_int8 = false;  // toggle actQuant = int8: prefill of W8/W4 with int8 activations (gemm_int8_avx512.cpp)
};

// matmul.cpp — y = x W^T (+ bias) for every job, all sharing the input x [T, cols] (row stride x_stride).
// Row chunks of all jobs are shared out to the pool threads through a counter.
void matmul(const MatJob *jobs, int n_jobs, const float *x, int64_t T, int64_t x_stride, Pool &pool);
// e.g. "cpu.gemv.w8g32"; act_int8: the job asks for the int8-activation arm (named only where it runs).
const char *matmul_kernel_name(const NativeTensor &t, int64_t T, bool act_int8 = false);
// matmul_avx512.cpp — W8 decode rows [r0, r1) with AVX-512 (call only when cpu_has_avx512()).
void gemv_w8_avx512(const MatJob &job, const float *x, const float *xsum, int64_t r0, int64_t r1);
bool cpu_has_avx512();
// gemm_avx512.cpp — exact prefill GEMM over fp32 weight rows: out[t * out_stride + i] = w[i] . x[t] for
// rows i < n_rows (row stride ldw) and tokens t < T, K columns. Overwrites out; deterministic for any row split.
void gemm_f32_avx512(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t x_stride, int64_t T,
                     int64_t K, float *out, int64_t out_stride);
// gemm_int8_avx512.cpp — the int8-activation arm. Activations quantized per token and group of G columns
// (d = max|x| / 127; q stored as xq + 128), then W8/W4 rows [r0, r1) of job for all qa.T tokens with VNNI.
// xsum: per-token fp32 group sums of x when the weight has offsets, else nullptr.
struct QuantAct {
  int32_t G = 0;
  int64_t T = 0, K = 0, gpr = 0;
  std::vector<uint8_t> q;  // [T, K]
  std::vector<float> d;    // [T, gpr]
};
void quantize_act(QuantAct &qa, const float *x, int64_t T, int64_t x_stride, int64_t K, int32_t G, Pool &pool);
void gemm_int8_avx512(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1);
// gemm_int8_avx2.cpp — the same arm without VNNI (vpmaddubsw/vpmaddwd, sign trick): bitwise the same outputs.
void gemm_int8_avx2(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1);
bool cpu_has_vnni();  // AVX-512 (as cpu_has_avx512) and AVX-512 VNNI

// norm.cpp — out[t] = w * (x[t] * rsqrt(mean(x[t]^2) + eps)), [T, H].
void rmsnorm(float *out, const float *x, const float *w, int64_t T, int64_t H, float eps, Pool &pool);

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

// attention.cpp — KV cache of one session and causal GQA attention.
struct KvCache {
  bool bf16 = true;
  int32_t layers = 0, batch = 0, kv_heads = 0, ctx = 0, head_dim = 0;
  std::unique_ptr<float[]> kf, vf;     // f32: [layers][batch][kv_heads][ctx][head_dim]
  std::unique_ptr<uint16_t[]> kb, vb;  // bf16: same layout
  void configure(const std::string &dtype, int32_t layers, int32_t batch, int32_t kv_heads, int32_t ctx,
                 int32_t head_dim);
  int64_t offset(int32_t layer, int32_t seq, int32_t kvh, int32_t pos) const {
    return (((int64_t(layer) * batch + seq) * kv_heads + kvh) * ctx + pos) * head_dim;
  }
  double elem_bytes() const { return bf16 ? 2.0 : 4.0; }
};
struct AttnArgs {
  const Step *step;
  int32_t layer, n_heads, n_kv_heads, head_dim;
  const float *q;  // [R, n_heads * head_dim], after RoPE
  const float *k;  // [R, n_kv_heads * head_dim], after RoPE
  const float *v;  // [R, n_kv_heads * head_dim]
  float *z;        // [R, n_heads * head_dim] out
  bool broadcast;  // gqa = broadcast: materialize repeated KV heads first
  Pool *pool;
};
void attention(KvCache &kv, const AttnArgs &a);
void softmax_scaled(float *s, int32_t n_keys, float scale);  // s = softmax(scale * s) over n_keys
// attention_avx512.cpp — blocked prefill attention (steps of >= kBlockedMinRows rows, head_dim % 64 == 0,
// AVX-512); bk/bv: the gqa-broadcast copies [nH, len, d] per sequence (empty unless a.broadcast).
constexpr int64_t kBlockedMinRows = 8;
bool attention_blocked_ok(int32_t head_dim);
void attention_blocked_avx512(KvCache &kv, const AttnArgs &a, const std::vector<std::vector<float>> &bk,
                              const std::vector<std::vector<float>> &bv);

// The CPU model: native tensors by name, and the forward step (forward.cpp).
struct Layer {
  Weight q, k, v, o, gate, up, down;
  const float *attn_norm = nullptr, *ffn_norm = nullptr, *bq = nullptr, *bk = nullptr, *bv = nullptr;
};
struct Model {
  Config cfg;
  std::vector<std::unique_ptr<NativeTensor>> tensors;
  Weight embed, output;  // output = embed when tied
  const float *out_norm = nullptr;
  std::vector<Layer> layers;
  int threads = 1;  // pool size of each session
  const NativeTensor *find(const std::string &name) const;
};

class Session final : public BackendSession {
 public:
  Session(const Model &m, int32_t max_batch, int32_t max_context, int32_t max_prefill);
  void configure_kv(const std::string &kv_dtype) override;
  void forward(const Step &step, Sink &sink, int32_t *out_tokens) override;
  void reset(int32_t) override {}  // the front tracks lengths; stale KV rows are overwritten before use

 private:
  const Model &m_;
  int32_t max_batch_, max_context_, max_prefill_;
  KvCache kv_;
  std::unique_ptr<Pool> pool_;
  RopeTable rope_;
  // step buffers, grown on demand (fp32 [rows, width])
  std::vector<float> x_, h_, q_, k_, v_, z_, o_, g_, u_, a_, logits_, fin_;
  std::vector<int32_t> pos_;
  SamplerScratch sampler_;
};

}  // namespace cpu
}  // namespace qw
