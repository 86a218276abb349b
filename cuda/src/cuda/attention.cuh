// attention.cuh — causal GQA attention over the bf16 KV cache (decode: attention.cu; prefill, a tree step's key
// splits included: attention_prefill.cu).
//   decode:  split-KV ("flash-decoding"), one block per (split, query head, sequence), or per (split, kv head,
//            sequence) serving all G = nH/nKV heads of the group once the batch fills the GPU (same bits); the
//            last block of a (sequence, head group) combines the splits (one launch; counters reset by the
//            combining block, so it replays inside a CUDA graph).
//   prefill: flash attention with mma.sync m16n8k16 bf16 (fp32 accumulators, online softmax), query rows at
//            positions pos0 .. pos0+n-1 of one sequence attending to cache positions [0, pos0+n).
//   broadcast (gqa=broadcast, src/opt/gqa/kv_broadcast.cuh): the naive GQA arm materializes repeated KV
//            heads into a scratch cache, then runs the same kernels with G = 1.
// Cache layout (per layer): [slots][nKV][max_ctx][d] bf16, K and V separate.
#pragma once
#include "common.cuh"
#include "dca_tiles.cuh"
#include "key_blocks.cuh"
#include "key_lines.cuh"
#include "tree_mask.cuh"

namespace qwc {

struct DecodeAttnArgs {
  __nv_bfloat16 *out = nullptr;        // z: [B, nH*d]
  const __nv_bfloat16 *q = nullptr;    // [B, nH*d] after RoPE
  const __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;
  const int32_t *slot = nullptr;       // [B] cache slot of each sequence
  const int32_t *kv_len = nullptr;     // [B] keys to attend (including the new token)
  int32_t batch = 1, n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
  int32_t n_split = 1;                 // fixed per captured graph; empty splits exit early
  float *ws = nullptr;                 // workspace floats: decode_attn_ws_floats()
  int32_t *counters = nullptr;         // [B * nH] zero-initialized once
  int32_t group_len = 0;               // set by the adaptive launcher (attention.cu), not by callers
};
size_t decode_attn_ws_floats(int32_t batch, int32_t n_heads, int32_t head_dim, int32_t n_split);
int32_t decode_attn_pick_split(int32_t n_heads, int32_t n_kv, int32_t max_ctx, int32_t sms);  // batch-independent (see .cu)
int32_t decode_attn_heads_per_block(int32_t batch, int32_t n_heads, int32_t n_kv);  // 1 or 8 (QW_ATTN_GM forces)
bool decode_attn_gm_forced();           // QW_ATTN_GM=1 or 8 is set
int32_t decode_attn_group_len();        // QW_ATTN_GROUP_LEN or the default; 0 = no adaptive launch
// One block per query head, one per kv head for sequences with kv_len >= group_len (G <= 8): the same bits as GM 1
// and GM 8 at the same n_split. launch_decode_attention takes it below the GM 8 batch when QW_ATTN_GROUP_LEN > 0.
const char *launch_decode_attention_adaptive(const DecodeAttnArgs &a, int32_t group_len, cudaStream_t stream);
const char *launch_decode_attention(const DecodeAttnArgs &a, cudaStream_t stream);
// gm = heads per block, 1 or 8: the same bits at the same n_split (the lab times both on one shape)
const char *launch_decode_attention_gm(const DecodeAttnArgs &a, int32_t gm, cudaStream_t stream);

struct PrefillAttnArgs {
  __nv_bfloat16 *out = nullptr;        // z: [n, nH*d]
  const __nv_bfloat16 *q = nullptr;    // [n, nH*d] after RoPE
  const __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;
  int32_t slot = 0, pos0 = 0, n = 0;   // one sequence
  int32_t n_heads = 0, n_kv = 0, head_dim = 0, max_ctx = 0;
  TreeMask tree;                       // a tree verification step (opt/speculative/tree_mask.cuh); else empty
  KeyBlocks blocks;                    // block-sparse prefill's selection (opt/sparse_prefill/key_blocks.cuh); else empty
  KeyLines lines;                      // vertical-slash prefill's selection (opt/sparse_prefill/key_lines.cuh); else empty
  // A tree step of n <= 64 rows split over its keys (attention_prefill.cu): split_ws holds
  // prefill_attn_split_ws_floats(n, n_heads, head_dim, n_split) floats; null or n_split 1: one CTA per head walks
  // every key tile. split_tiles is set by the launcher.
  float *split_ws = nullptr;
  int32_t n_split = 1, split_tiles = 0;
  DcaQueries dca;                      // dca = on (opt/dca/dca_tiles.cuh): launch_prefill_attention_dca only
};
// Key splits for a tree step of n rows over kv_len keys (pos0 + n): about two CTAs per SM over the n_heads CTAs of
// its one query tile, at least one 64-key tile each, every split non-empty; 1 where the step has more than one
// query tile (the grid already has n_heads x tiles CTAs) or QW_TREE_SPLIT=0.
int32_t prefill_attn_tree_split(int32_t n, int32_t n_heads, int32_t kv_len, int32_t sms);
size_t prefill_attn_split_ws_floats(int32_t n, int32_t n_heads, int32_t head_dim, int32_t n_split);
// dca = on, prefill of one sequence (a.dca set, the intra queries in a.q): the mma.sync kernel with the three parts'
// key ranges and query variants (opt/dca/dca_tiles.cuh). Where dca_prefill_mma_supported is false, or QW_DCA_MMA=0,
// the SIMT kernel of opt/dca runs instead (launch_dca_attention).
bool dca_prefill_mma_supported(int32_t head_dim, int32_t span);
// False when QW_DCA_MMA=0: DCA prefill on neither tensor-core kernel (mma.sync nor wgmma), the SIMT one instead.
bool dca_prefill_tensor_cores_requested();
const char *launch_prefill_attention_dca(const PrefillAttnArgs &a, cudaStream_t stream);
// head_dim 64 or 128 use the tensor-core kernel; other even head dims use a simple SIMT kernel. On sm_90 (unless
// QW_FLASH_WGMMA=0), the sm_90a wgmma kernel (opt/attention/fa3_prefill.cuh) where it supports the shape.
const char *launch_prefill_attention(const PrefillAttnArgs &a, cudaStream_t stream);
// The mma.sync kernel (sm_80+) whatever the environment: the lab's reference arm for the wgmma kernel. With
// a.blocks set (head_dim 64 / 128, no tree): its block-sparse variant, "attn_sparse_bs_mma" (opt/sparse_prefill);
// with a.lines set (vs_mma_supported): its vertical-slash variant, "attn_sparse_vs_mma".
const char *launch_prefill_attention_mma(const PrefillAttnArgs &a, cudaStream_t stream);
// Vertical-slash's mma attend runs the shape: head_dim 64 or 128, keys (pos0 + rows) within kVsMaxKeyBlocks blocks.
bool vs_mma_supported(int32_t head_dim, int32_t keys);
// The simple SIMT kernel (reference arm, any head_dim <= 256): exposed for the lab.
const char *launch_prefill_attention_simt(const PrefillAttnArgs &a, cudaStream_t stream);

}  // namespace qwc
