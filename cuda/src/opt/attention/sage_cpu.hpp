// sage_cpu.hpp — the CPU backend's layer call of toggle attention = sage-int8 | sage-fp8; the reference math
// (every step and rounding) is in sage_ref.hpp.
#pragma once

#include <cstdint>

#include "attention.hpp"
#include "sage_ref.hpp"

namespace qw {
namespace cpu {

// The layer's attention with a Sage arm, after the step's K/V rows are in the cache: one prepared SageKv per
// (sequence, kv head), then one task per (sequence, query head, query block) on the pool. Query head h reads kv
// head h / (nH / nKV) in place (gqa = broadcast would only copy the same fp32 rows: same result).
struct KvStore;
struct AttnArgs;
void attention_sage(const KvStore &kv, const AttnArgs &a, bool fp8);

// The attention kernel name of a Sage arm, e.g. "cpu.attention.sage-int8.kv_bf16".
const char *sage_kernel_name(bool fp8, bool kv_bf16);

}  // namespace cpu
}  // namespace qw
