// kv_quant_dev.cuh — device helpers the quantized-KV kernels share (kv_quant.cu: write, ring, attention v1;
// kv_quant_attn2.cu: attention v2). Internal to src/opt/kvcache.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kv_quant.cuh"

namespace qwc {

// bf16 row of position `pos` of the stream: from this step's rows when the step holds it (rows of a sequence
// are consecutive), else from the kivi ring.
__device__ __forceinline__ const uint16_t *kvq_res_row(const KvqDev &kv, const KvqStep &s, const __nv_bfloat16 *step_rows,
                                                       const uint16_t *ring, int64_t st, int r, int p, int slot, int h,
                                                       int64_t pos) {
  const int64_t rr = r - (p - pos);
  const int d = kv.lay.d;
  if (rr >= 0 && s.row_slot[rr] == slot && s.row_pos[rr] == pos)
    return reinterpret_cast<const uint16_t *>(step_rows) + rr * int64_t(kv.lay.kv_heads) * d + int64_t(h) * d;
  return ring + kv.lay.ring_off(st, pos);
}

// A block's merged state of (row r, query head hq) at channel ch, head_dim d: the output when the keys were not
// split, else split `split`'s workspace entry [M, L, A[d]] for the combine kernel.
__device__ __forceinline__ void kvq_store_merged(const KvqAttnArgs &a, int r, int hq, int split, int d, int ch, float M, float L,
                                                 float A) {
  if (a.n_split == 1) {
    a.out[(int64_t(r) * a.n_heads + hq) * d + ch] = __float2bfloat16(A / L);
    return;
  }
  float *ws = a.ws + ((int64_t(r) * a.n_heads + hq) * a.n_split + split) * (d + 2);
  if (ch == 0) {
    ws[0] = M;
    ws[1] = L;
  }
  ws[2 + ch] = A;
}

}  // namespace qwc
