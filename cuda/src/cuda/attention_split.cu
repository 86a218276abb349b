// attention_split.cu — a tree verification step's flash attention split over its keys, and the merge of the splits.
// A verify pass has few rows (16–64 tree tokens) but a whole context of keys: one CTA per query head walking every
// key tile left 104 of 132 SMs idle (7B, 1k context: 88 us a layer against 15 for a decode step's split-KV
// attention). Here the tiles of the one query tile are cut into about 2 x SMs / n_heads splits (the mma.sync kernel
// of attention.cu with SPLIT, blockIdx.z = split), each leaving its unnormalized o and its m, l in a workspace, and
// prefill_attn_combine merges them: out = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s with M = max_s m_s, the same
// online-softmax algebra that runs inside a CTA across its tiles (other rounding than one CTA: fp32 partial sums).
#include "attention.cuh"

#include <algorithm>

namespace qwc {

namespace {
constexpr int kTile = 64;             // key / query tile of the mma.sync prefill kernel (attention.cu kBQ, kBK)
constexpr int kMaxTreeSplit = 64;     // bounds the workspace (64 x 64 rows x nH x (d + 2) floats)
constexpr float kNegBig = -1e30f;     // a split with no visible key for a row: m stays here, l = 0

// grid (n, nH), blockDim = D: thread e merges dimension e of (row, head) over the splits.
__global__ void prefill_attn_combine_kernel(const PrefillAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.x, h = blockIdx.y, e = threadIdx.x, D = a.head_dim;
  const int64_t stride = D + 2, per_split = (int64_t)a.n * a.n_heads * stride;
  const float *w = a.split_ws + ((int64_t)row * a.n_heads + h) * stride;
  float mx = kNegBig;
  for (int s = 0; s < a.n_split; ++s) mx = fmaxf(mx, w[s * per_split + D]);
  float o = 0.f, l = 0.f;
  for (int s = 0; s < a.n_split; ++s) {
    const float *ws = w + s * per_split;
    const float f = ws[D] <= kNegBig ? 0.f : exp2f(ws[D] - mx);
    o += f * ws[e];
    l += f * ws[D + 1];
  }
  a.out[(int64_t)row * a.n_heads * D + h * D + e] = __float2bfloat16(o / l);
}
}  // namespace

int32_t prefill_attn_tree_split(int32_t n, int32_t n_heads, int32_t kv_len, int32_t sms) {
  if (n <= 0 || n > kTile || n_heads <= 0 || kv_len <= 0) return 1;
  if (!env_switch_on("QW_TREE_SPLIT", "one CTA per head walks every key tile", "split the keys of a tree step"))
    return 1;
  const int tiles = (kv_len + kTile - 1) / kTile;
  const int want = std::max(1, std::min({(2 * sms + n_heads - 1) / n_heads, tiles, kMaxTreeSplit}));
  const int per = (tiles + want - 1) / want;  // tiles per split; then the count that leaves none empty
  return (tiles + per - 1) / per;
}

size_t prefill_attn_split_ws_floats(int32_t n, int32_t n_heads, int32_t head_dim, int32_t n_split) {
  return (size_t)n_split * n * n_heads * (head_dim + 2);
}

void launch_prefill_attn_combine(const PrefillAttnArgs &a, cudaStream_t s) {
  launch(prefill_attn_combine_kernel, dim3(a.n, a.n_heads), dim3(a.head_dim), 0, s, a);
  QWC_LAUNCH_CHECK("launch_prefill_attn_combine");
}

}  // namespace qwc
