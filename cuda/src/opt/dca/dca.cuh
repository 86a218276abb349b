// dca.cuh — Dual Chunk Attention on the CUDA backend (toggle "dca" = on; positions in dca_positions.hpp, the same
// formulas as the CPU reference src/opt/dca/dca_cpu.cpp).
//   rope: like launch_rope_kv (bias, bf16 rounding order, pair-interleaved q|k rows), but queries are roped three
//         ways (intra-chunk into r.q_out, successive into q_succ, inter into q_inter) and keys at pos mod s; the
//         KV cache row is still the true position.
//   attention: one block per (query row, query head) (and per key window in decode: n_split), any batch of rows
//         (decode: one row per sequence; prefill: the step's rows), each row attending to cache positions [0, pos]
//         of its slot. The three key groups get their own online-softmax partial (max, sum, weighted V), merged by
//         log-sum-exp at the end. Two kernels: the tile one (d = 32 / 64 / 128, the default: dense decode's layout,
//         a lane per key of a 32-key tile scoring it against its group's query, one online softmax for the three
//         groups; QW_DCA_WARP=0 turns it off) and the first, SIMT one (a thread per key reading its whole K row; the lab's reference). Prefill takes the tensor-core kernel
//         instead where it can (attention.cuh launch_prefill_attention_dca).
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
  // n_split > 1 (decode): a row's keys [0, pos] are cut into n_split windows of ceil((pos + 1) / n_split) keys, one
  // block each (grid z), whose three partials go to ws ([rows][nH][n_split][3][d + 2] floats: o, m, l); a second
  // kernel merges the 3 n_split partials. The windows come from the device-side position, so a captured graph
  // replays at any length; n_split depends on neither the batch nor the length (dca_decode_split).
  float *ws = nullptr;
  int32_t n_split = 1;
  bool force_simt = false;  // the SIMT kernel whatever QW_DCA_WARP says (the lab's reference arm)
};
// head_dim <= 128. Returns the kernel name for op records.
const char *launch_dca_attention(const DcaAttnArgs &a, cudaStream_t stream);
// Key windows per decode row: about two blocks per SM over the n_kv heads of one row, >= 512 keys of max_ctx each,
// at most 64 (QW_DCA_SPLIT=0: 1, the one-block-per-row kernel); and the workspace it needs for `rows` rows.
int32_t dca_decode_split(int32_t n_heads, int32_t n_kv, int32_t max_ctx, int32_t sms);
size_t dca_decode_ws_floats(int32_t rows, int32_t n_heads, int32_t head_dim, int32_t n_split);

}  // namespace qwc
