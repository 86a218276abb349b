// eagle_cpu.hpp — the CPU side of speculative = eagle: the EAGLE head's input rows and the KV compaction of an
// accepted tree path. The head itself is a 1-layer Qwen2 model (Config::eagle_head) run by cpu/forward.cpp with
// the ordinary layer and attention code; only what differs from a Qwen2 layer stack lives here.
#pragma once

#include <cstdint>
#include <vector>

#include "cpu.hpp"

namespace qw {
namespace cpu {

// The head's input (SafeAILab EAGLE cnets Model.forward): x[r] = fc.weight . [x[r] ; features[r]] + fc.bias,
// where x holds the token embeddings on entry (embedding first, then the feature, as their torch.cat).
// cat: scratch [R, 2H].
void eagle_input(float *x, const float *features, const Weight &fc, const float *fc_bias, int64_t R, int64_t H,
                 std::vector<float> &cat, Pool &pool);

// Moves the K/V rows of sequence seq at positions base + keep[i] to base + i, every layer and KV head
// (keep ascending with keep[i] >= i: a row is read before anything overwrites it). f32 and bf16 caches; a
// quantized cache (q8 / kivi: per-block scales and rings) throws Error(QW_ERR_UNSUPPORTED).
void eagle_kv_compact(KvStore &kv, int32_t seq, int32_t base, const int32_t *keep, int32_t n);

// Throws Error(QW_ERR_UNSUPPORTED) when a tree step meets a toggle arm that cannot honour the tree's
// ancestor keys and positions (quantized KV cache, Sage attention, Dual Chunk Attention).
void eagle_check_tree_step(const Step &st, const KvStore &kv, int32_t num_layers);

}  // namespace cpu
}  // namespace qw
