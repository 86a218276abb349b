// dca.cuh — Dual Chunk Attention on the CUDA backend (toggle "dca" = on; positions in dca_positions.hpp, the same
// formulas as the CPU reference src/opt/dca/dca_cpu.cpp).
//   rope: like launch_rope_kv (bias, bf16 rounding order, pair-interleaved q|k rows), but queries are roped three
//         ways (intra-chunk into r.q_out, successive into q_succ, inter into q_inter) and keys at pos mod s; the
//         KV cache row is still the true position.
//   attention: one block per (query row, query head), any batch of rows (decode: one row per sequence; prefill:
//         the step's rows), each row attending to cache positions [0, pos] of its slot. The three key groups get
//         their own online-softmax partial (max, sum, weighted V), merged by log-sum-exp at the end. A simple
//         SIMT kernel: exact, not tuned (no tensor cores, K rows read by one thread each).
#pragma once
#include "common.cuh"
#include "rope.cuh"

namespace qwc {

// r as for launch_rope_kv (r.q_out receives the intra-chunk queries); q_succ / q_inter: [rows, nH*d].
void launch_dca_rope_kv(const RopeKvArgs &r, __nv_bfloat16 *q_succ, __nv_bfloat16 *q_inter, int32_t chunk, int32_t local,
                        cudaStream_t stream);

struct DcaAttnArgs {
  __nv_bfloat16 *out = nullptr;  // z: [rows, nH*d]
  const __nv_bfloat16 *q_intra = nullptr, *q_succ = nullptr, *q_inter = nullptr;  // [rows, nH*d]
  const __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;  // this layer: [slots][nKV][max_ctx][d]
  const int32_t *row_pos = nullptr;   // [rows] position of each query row (keys 0..pos are attended)
  const int32_t *row_slot = nullptr;  // [rows] cache slot of each row
  int32_t rows = 0, n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0, chunk = 0, local = 0;
};
// head_dim <= 128. Returns the kernel name for op records.
const char *launch_dca_attention(const DcaAttnArgs &a, cudaStream_t stream);

}  // namespace qwc
