// kvcache.cpp — the registry entry of toggle "kvCache": its values (in KvCache enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "kvcache.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(kv_cache) {
  return OptDef<KvCache>("kvCache", "KV-cache type")
      .value(KvCache::Bf16, "bf16")
      .value(KvCache::F32, "f32")
      .value(KvCache::Q8, "q8")
      .value(KvCache::Kivi4, "kivi4")
      .value(KvCache::Kivi2, "kivi2")
      .by_default(KvCache::Bf16)
      .needs_reset()
      .cpu({KvCache::Bf16, KvCache::F32})
      .cuda({KvCache::Bf16})
      .spec("QWEN-007")
      .describe(
          "KV cache element type. Changing it clears every sequence of the session.");
}

}  // namespace qw
