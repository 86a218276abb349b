// gqa_attention.cuh — the CUDA side of toggle gqa (entry: gqa.cpp; the CPU side: gqa_cpu.hpp): which KV heads the
// attention kernels (src/cuda/attention.cuh) read at a layer. docs/ARCHITECTURE.md §Adding an optimization.
//   native     the layer's cache as it is: query head h reads kv head h / (nH / nKV) in place
//   broadcast  the kv heads of the call's sequences first repeated into a scratch cache with nH heads
//              (kv_broadcast.cuh), which the kernels then read with one query head per kv head: the naive arm of
//              the ablation, same result
// The decode (src/cuda/decode.cu) and prefill (src/cuda/prefill.cu) attention ask gqa_kv for the cache to read.
#pragma once
#include "common.cuh"
#include "gqa.hpp"

namespace qwc {

// The cache an attention kernel reads under an arm.
struct GqaKv {
  const __nv_bfloat16 *k = nullptr, *v = nullptr;
  int32_t n_kv = 0;      // its kv heads
  bool scratch = false;  // broadcast: sequence i of the call sits in slot i of the scratch cache
};

struct GqaKvArgs {
  __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;        // the layer's cache [slots][nKV][max_ctx][d]
  __nv_bfloat16 *scratch_k = nullptr, *scratch_v = nullptr;  // broadcast: [rows][nH][max_ctx][d]
  const int32_t *slot = nullptr, *len = nullptr;             // device [rows]: cache slot and length of each sequence
  int32_t rows = 0, n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
  int32_t max_len = 0;  // bound on len (sizes the broadcast grid)
};

// Native: the layer's cache. Broadcast: launches the copy of positions [0, len) of every sequence into the
// scratch and returns it (nH kv heads).
GqaKv gqa_kv(qw::Gqa arm, const GqaKvArgs &a, cudaStream_t stream);

}  // namespace qwc
