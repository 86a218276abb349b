// gemv.cuh — decode GEMV (batch 1..16) over any native weight type, with fused prologues/epilogues.
//   y[b, r] = sum_k W[r, k] * a[b, k]
// Prologue: a = bf16 activations from global (PRO_BF16), or a = RMSNorm(x fp32) * norm_w computed
//           in the block (PRO_NORM: HF order, the normalised value rounded to bf16 before the weight).
// Epilogue: bf16 (+bias) | fp32 (+bias) | fp32 accumulate into out (residual add) |
//           SwiGLU over interleaved rows (row 2j = gate j, row 2j+1 = up j): out[j] = silu(g) * u.
#pragma once
#include "common.cuh"
#include "marlin_layout.hpp"

namespace qwc {

enum GemvPro : int32_t { GEMV_PRO_BF16 = 0, GEMV_PRO_NORM = 1 };
enum GemvEpi : int32_t {
  GEMV_EPI_BF16 = 0, GEMV_EPI_F32 = 1, GEMV_EPI_ADD_F32 = 2, GEMV_EPI_SWIGLU = 3,
  // q|k|v projection with bias + RoPE + KV-cache write in the epilogue (decode). The weight rows of q and k are
  // pair-interleaved per head (row h*d + 2i = dim i, row h*d + 2i + 1 = dim i + d/2; v rows unchanged), so a
  // warp holds both elements of each RoPE pair. bias stays in the original order.
  GEMV_EPI_QKV_ROPE = 4
};

// actQuant = int8's scratch (opt/act_quant/gemv_i8.cu): a call's activations quantized once by a pre pass, read by
// every block of the GEMV (instead of each block quantizing them itself). Codes q[b * K + k] (W4 nibble order), then
// per chunk (E = 32 W4 / 16 W8 columns; NC = K / E) d[b * NC + c] at dx and the chunk's fp32 sum of x at
// dx[(batch + b) * NC + c]. Null or too small for a call: the GEMV quantizes in each block.
struct I8Ws {
  int8_t *q = nullptr;
  float *dx = nullptr;
  int64_t q_bytes = 0, dx_floats = 0;
};
// The scratch a model needs: batch <= 16 rows of K <= kmax columns (W8's chunks: the smaller E).
inline int64_t i8ws_q_bytes(int64_t kmax) { return 16 * kmax; }
inline int64_t i8ws_dx_floats(int64_t kmax) { return 2 * 16 * (kmax / 16 + 1); }

// Extra arguments of GEMV_EPI_QKV_ROPE.
struct QkvRopeArgs {
  __nv_bfloat16 *q_out = nullptr;              // [batch, nH*d] roped q, original order
  __nv_bfloat16 *k_out = nullptr, *v_out = nullptr;  // optional [batch, nKV*d] copies (hooks)
  __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;  // this layer: [slots][nKV][max_ctx][d]
  const int32_t *pos = nullptr, *slot = nullptr;       // [batch]
  const float *inv_freq = nullptr;                     // [d/2]
  int32_t n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
};
// Row order of the pair-interleaved q|k|v matrix: returns the original row of permuted row p.
inline int64_t qkv_rope_orig_row(int64_t p, int32_t n_heads, int32_t n_kv, int32_t d) {
  const int64_t qk = (int64_t)(n_heads + n_kv) * d;
  if (p >= qk) return p;
  const int64_t head = p / d, w = p % d;
  return head * d + w / 2 + (w % 2) * (d / 2);
}

struct GemvArgs {
  // output
  int32_t epi = GEMV_EPI_BF16;
  void *out = nullptr;            // bf16 or fp32 [batch, out_ld]
  int64_t out_ld = 0;
  const float *bias = nullptr;    // [rows] or null (EPI_BF16 / EPI_F32)
  __nv_bfloat16 *aux = nullptr;   // EPI_SWIGLU: optional copy of the gate (bf16) [batch, aux_ld] (hook mlp.hook_pre)
  int64_t aux_ld = 0;
  QkvRopeArgs rope;               // EPI_QKV_ROPE
  // weight
  WMat w;
  // input
  int32_t batch = 1;              // 1..16
  int32_t pro = GEMV_PRO_BF16;
  const __nv_bfloat16 *act = nullptr;  // PRO_BF16: [batch, act_ld]
  int64_t act_ld = 0;
  const float *x = nullptr;       // PRO_NORM: fp32 [batch, x_ld]
  int64_t x_ld = 0;
  const float *norm_w = nullptr;  // PRO_NORM: fp32 [cols]
  float eps = 1e-6f;
  // gemv = marlin (opt/gemv/marlin.cuh): the same matrix as w, repacked, and the kernel's scratch. Null (the
  // default) or a shape the kernel does not cover: the simple kernels below run.
  const MarlinMat *mw = nullptr;
  MarlinWs mws;
  // gemv = marlin for bf16 weights: the tensor-core GEMV (gemv_mma.cu) at every batch size, so a sequence keeps its
  // bits alone or in a batch (its (MT, ks) depend on the shape only); matrices it does not cover keep the CUDA cores.
  bool tc = false;
  // toggle actQuant = int8 (opt/act_quant/gemv_i8.cu): W4 / W8 weights against int8-quantized activations (dp4a),
  // under either gemv value; other weights, and groups it does not cover, run the exact kernels.
  bool i8 = false;
  I8Ws i8ws;
};

// Launches the GEMV; picks the vectorized kernel when cols % 8 == 0 (and the leading dims allow it),
// the generic one otherwise. Returns the variant name (for op records).
const char *launch_gemv(const GemvArgs &a, cudaStream_t stream);

// actQuant = int8 (opt/act_quant/gemv_i8.cu): whether the int8 GEMV takes w (W4 / W8, group a power of two in
// [32 (W4) / 16 (W8), 256]), and its launch (nullptr unless a.i8 and covered: launch_gemv runs the exact kernels).
bool gemv_i8_covers(const WMat &w);
const char *launch_gemv_i8(const GemvArgs &a, cudaStream_t stream);
// The pre pass (a call's activations quantized once into a.i8ws): 0 / 1 forced off / on, -1 = QW_GEMV_I8_PRE or the
// rule (the lab's A/B).
void gemv_i8_force_pre(int on);
// The loop variant (one staging per block, row tiles walked in a loop; QW_GEMV_I8_LOOP): 0 / 1 forced, -1 = env.
void gemv_i8_force_loop(int on);
// The ring variant (the loop variant's weights bulk-copied into shared-memory stages, sm_90; QW_GEMV_I8_RING): 0 / 1
// forced, -1 = env.
void gemv_i8_force_ring(int on);
// The K split (warps per row group) the CUDA-core GEMVs use for a matrix of `rows` rows (gemv.cu pick_ks).
int gemv_ksplit(int64_t rows);

// Rows per block / tile choice exposed for the lab ("r2" / "r4" forced; 0 = auto).
void gemv_force_rows_per_warp(int r);
// K-split warps per row group (1, 2, 4, 8; 0 = auto, see gemv.cu). Applies to batch <= 4.
void gemv_force_ksplit(int ks);

// gemv = marlin (opt/gemv/marlin.cu): W4/W8 weights repacked (a.mw), tensor cores. Returns the variant name, or
// nullptr when the case is not covered (launch_gemv then runs the simple kernels).
const char *launch_gemv_marlin(const GemvArgs &a, cudaStream_t stream);

// Tensor-core GEMV (gemv_mma.cu): bf16 weights (cols % 32 == 0) when a.tc (gemv = marlin) or QW_GEMV_MMA=1; matrices
// with enough rows to fill the GPU, and smaller ones with K split over blocks where a.mws is given.
// Returns the variant name, or nullptr when the case is not covered (launch_gemv then runs the CUDA-core kernel).
const char *launch_gemv_mma(const GemvArgs &a, cudaStream_t stream);
// Whether launch_gemv tries the tensor-core path for bf16 (QW_GEMV_MMA=1 turns it on; the lab forces it with 0/1,
// -1 = env).
bool gemv_mma_enabled();
void gemv_force_mma(int on);
// Small bf16 matrices (too few rows for one tensor-core block per SM) on tensor cores with K split over blocks
// (default; QW_GEMV_MMA_SPLIT=0 keeps them on the CUDA cores; needs a.mws: gemv = marlin passes it). The scratch one matrix needs
// and its counters (*tiles; 0 bytes: no split for the shape, on this device's SM count); the lab forces it with 0/1,
// -1 = env.
size_t gemv_mma_split_bytes(int64_t rows, int64_t cols, int32_t *tiles);
void gemv_force_mma_split(int on);

}  // namespace qwc
