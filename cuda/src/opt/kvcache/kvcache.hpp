// kvcache.hpp — the values of toggle "kvCache" (KV-cache type) as a type, and what the type decides outside the
// kernels: how far a sequence can be truncated exactly, and what a cached element costs (the attention op's
// `kv` bytes in front/cost.hpp). Its entry: kvcache.cpp. Enumerator i is value i of the entry
// (docs/ARCHITECTURE.md §Adding an optimization, §Measurement).
#pragma once

#include "kv_format.hpp"
#include "toggles.hpp"

namespace qw {

enum class KvCache : uint8_t { Bf16, F32, Q8, Kivi4, Kivi2 };

// The storage format of a kvCache value (kv_format.hpp).
kvq::KvType kv_type_of(KvCache type);

// The shortest length a sequence that reached `peak` tokens since its last reset can be truncated to and go on
// exactly as if it had never held the dropped tokens: 0 for every type but kivi, whose bf16 residual window
// must still be in the ring (kv_format.hpp). qw_session_truncate refuses a cut below it.
int32_t kv_cache_min_truncate(KvCache type, int32_t peak);

// Tokens below its peak that a sequence can always be cut back by exactly (kvMaxRollback); -1 = any.
int32_t kv_cache_max_rollback(KvCache type);

// Mean bytes of one cached K or V element once its token is in its steady (quantized) form, codes and scales
// included, for head size head_dim: the `kv` of the attention op's cost model (front/cost.hpp).
double kv_cache_elem_bytes(KvCache type, int32_t head_dim);

}  // namespace qw
