// attn_decode_dev.cuh — kernel-lab variant of the split-KV decode attention (not linked into the engine yet).
//
// Variant of attention.cu's decode_attn_kernel, waiting for its first measurement on the H200 (NOTES.md §9):
//  * GM query heads per block: 1 (grid.y = n_kv * G: the shortest per-warp chain; the G blocks of a kv head read
//    the same K/V, from L2 after the first) or 8 (one block per kv head, the engine's layout);
//  * q rows staged with 16-byte loads in one round trip, issued together with the length and slot loads;
//  * the first 16 V rows of a tile loaded with its K row (before the softmax).
// Per head the arithmetic equals the engine kernel's at the same n_split (bit-identical outputs).
// Counters: [B * nH] (one per block group). When it wins, it replaces decode_attn_kernel in attention.cu.
#pragma once
#include "attention.cuh"

namespace qwc {
// heads_per_block: 1 or 8. n_split from decode_attn_dev_pick_split (about 2 blocks per SM over one sequence's blocks).
const char *launch_decode_attention_dev(const DecodeAttnArgs &a, int heads_per_block, cudaStream_t s);
int32_t decode_attn_dev_pick_split(int32_t n_heads, int32_t n_kv, int heads_per_block, int32_t max_ctx, int32_t sms);
}  // namespace qwc
