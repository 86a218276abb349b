// rope.cu — RoPE + KV write (see rope.cuh; the per-row pieces are there, shared with opt/dca/dca_kernels.cu). One block
// per row; elementwise, a few KB per row.
// HF: inv_freq fp32; freqs = pos * inv_freq (fp32); cos/sin in fp32 then cast to bf16;
// q' = q*cos + rotate_half(q)*sin in bf16 (each product and the sum rounded to bf16).
#include "rope.cuh"

namespace qwc {
namespace {
__global__ void rope_kv_kernel(const RopeKvArgs a) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  const int d = a.head_dim, half = d / 2, qdim = a.n_heads * d;
  const int pos = a.row_pos[r];
  const int kvpos = a.row_kvpos ? a.row_kvpos[r] : pos;
  const int64_t slot = a.row_slot[r];
  const float *src = a.qkv + r * a.qkv_ld;
  const int npairs = (a.n_heads + a.n_kv) * half;
  for (int i = threadIdx.x; i < npairs; i += blockDim.x) {
    const int head = i / half, j = i - head * half;
    __nv_bfloat16 o1, o2;
    rope_rotate(rope_pair_in(a, src, head, j), a.inv_freq[j], pos, &o1, &o2);
    if (head < a.n_heads) {
      a.q_out[r * qdim + head * d + j] = o1;
      a.q_out[r * qdim + head * d + j + half] = o2;
    } else {
      rope_store_k(a, r, slot, kvpos, head - a.n_heads, j, o1, o2);
    }
  }
  rope_copy_v(a, r, slot, kvpos, src);
}
}  // namespace

void launch_rope_kv(const RopeKvArgs &a, cudaStream_t s) {
  if (a.rows <= 0) return;
  launch(rope_kv_kernel, a.rows, 256, 0, s, a);
  QWC_LAUNCH_CHECK("launch_rope_kv");
}
}  // namespace qwc
