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
      .cpu({KvCache::Bf16, KvCache::F32, KvCache::Q8, KvCache::Kivi4, KvCache::Kivi2})
      .cuda({KvCache::Bf16, KvCache::Q8, KvCache::Kivi4, KvCache::Kivi2})
      .spec("QWEN-007")
      .describe(
          "KV cache element type. q8: int8 per 32 elements of a row with an fp16 scale (llama.cpp q8_0); kivi4 / "
          "kivi2: KIVI 4- / 2-bit, keys per channel (groups of 32 tokens), values per token (groups of 32), "
          "asymmetric, the newest 128+ tokens kept in bf16. Decode reads the codes directly (kv_format.hpp). "
          "Changing it clears every sequence of the session.");
}

}  // namespace qw
