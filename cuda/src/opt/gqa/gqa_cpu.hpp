// gqa_cpu.hpp — the CPU side of toggle gqa: which KV heads attention reads at a layer. attention.cpp calls
// gqa_prepare() after the step's K/V rows are in the cache; the attention loops then read g.k / g.v when the arm
// materialized per-query-head copies, else kv head h / (nH / nKV) straight from the cache.
#pragma once

#include <vector>

#include "cpu.hpp"
#include "gqa.hpp"

namespace qw {
namespace cpu {

struct GqaKv {
  bool per_query_head = false;            // k, v hold one fp32 copy per query head
  std::vector<std::vector<float>> k, v;  // per sequence of the step: [nH, len, d] (len = pos0 + n_new)
};

// Native: nothing to prepare. Broadcast: the repeated copies (HF's repeat_kv), widened exactly to fp32; the same
// loaders and loop order then give results bit-identical to native, at the cost of the copy.
void gqa_prepare(const KvStore &kv, const AttnArgs &a, GqaKv &g);
// The attention kernel name of the layer's arm, e.g. "cpu.attention.broadcast.kv_bf16".
const char *gqa_attention_kernel_name(Gqa mode, bool kv_bf16);

}  // namespace cpu
}  // namespace qw
