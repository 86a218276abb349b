// rope.cu — RoPE + KV write (see rope.cuh). One block per row; elementwise, a few KB per row.
// HF: inv_freq fp32; freqs = pos * inv_freq (fp32); cos/sin in fp32 then cast to bf16;
// q' = q*cos + rotate_half(q)*sin in bf16 (each product and the sum rounded to bf16).
#include "rope.cuh"

namespace qwc {
namespace {
__global__ void rope_kv_kernel(const RopeKvArgs a) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  const int d = a.head_dim, half = d / 2;
  const int qdim = a.n_heads * d, kvdim = a.n_kv * d;
  const int pos = a.row_pos[r];
  const int64_t slot = a.row_slot[r];
  const float *src = a.qkv + r * a.qkv_ld;
  auto in = [&](int i) { return bf16r(src[i] + (a.bias ? a.bias[i] : 0.f)); };
  const int npairs = (a.n_heads + a.n_kv) * half;
  for (int i = threadIdx.x; i < npairs; i += blockDim.x) {
    const int head = i / half, j = i - head * half;
    float sn, cs;
    sincosf((float)pos * a.inv_freq[j], &sn, &cs);
    const float c = bf16r(cs), s = bf16r(sn);
    const int c1 = a.pair_interleaved ? head * d + 2 * j : head * d + j;
    const int c2 = a.pair_interleaved ? head * d + 2 * j + 1 : head * d + j + half;
    const float x1 = bf16r(src[c1] + (a.bias ? a.bias[head * d + j] : 0.f));
    const float x2 = bf16r(src[c2] + (a.bias ? a.bias[head * d + j + half] : 0.f));
    const __nv_bfloat16 o1 = __float2bfloat16(bf16r(x1 * c) + bf16r(-x2 * s));
    const __nv_bfloat16 o2 = __float2bfloat16(bf16r(x2 * c) + bf16r(x1 * s));
    if (head < a.n_heads) {
      a.q_out[r * qdim + head * d + j] = o1;
      a.q_out[r * qdim + head * d + j + half] = o2;
    } else {
      const int kh = head - a.n_heads;
      if (a.kcache) {  // null: a quantized cache (opt/kvcache) takes k_out instead
        __nv_bfloat16 *kc = a.kcache + ((slot * a.n_kv + kh) * a.max_ctx + pos) * d;
        kc[j] = o1;
        kc[j + half] = o2;
      }
      if (a.k_out) {
        a.k_out[r * kvdim + kh * d + j] = o1;
        a.k_out[r * kvdim + kh * d + j + half] = o2;
      }
    }
  }
  for (int i = threadIdx.x; i < kvdim; i += blockDim.x) {
    const int kh = i / d, j = i - kh * d;
    const __nv_bfloat16 v = __float2bfloat16(in(qdim + kvdim + i));
    if (a.vcache) a.vcache[((slot * a.n_kv + kh) * a.max_ctx + pos) * d + j] = v;
    if (a.v_out) a.v_out[r * kvdim + i] = v;
  }
}
}  // namespace

void launch_rope_kv(const RopeKvArgs &a, cudaStream_t s) {
  if (a.rows <= 0) return;
  launch(rope_kv_kernel, a.rows, 256, 0, s, a);
  QWC_LAUNCH_CHECK("launch_rope_kv");
}
}  // namespace qwc
