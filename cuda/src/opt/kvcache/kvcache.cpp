// kvcache.cpp — the registry entry of toggle "kvCache": its values (in KvCache enumerator order), default, which
// values each backend implements, spec, description and cost; and the type's rules of kvcache.hpp (both libraries).
// Its scope is on its line in opt/list.hpp.
#include "kvcache.hpp"
#include "registry.hpp"

namespace qw {

kvq::KvType kv_type_of(KvCache type) {
  switch (type) {
    case KvCache::F32: return kvq::KvType::F32;
    case KvCache::Q8: return kvq::KvType::Q8;
    case KvCache::Kivi4: return kvq::KvType::KIVI4;
    case KvCache::Kivi2: return kvq::KvType::KIVI2;
    case KvCache::Bf16: break;
  }
  return kvq::KvType::BF16;
}

int32_t kv_cache_min_truncate(KvCache type, int32_t peak) {
  return kvq::is_kivi(kv_type_of(type)) ? int32_t(kvq::kivi_min_truncate(peak)) : 0;
}

int32_t kv_cache_max_rollback(KvCache type) { return kvq::is_kivi(kv_type_of(type)) ? kvq::kKiviMaxRollback : -1; }

double kv_cache_elem_bytes(KvCache type, int32_t head_dim) {
  const kvq::KvLayout lay = kvq::KvLayout::of(kv_type_of(type), 0, 0, 0, 0, head_dim);
  return lay.bytes_per_token_stream() / (2.0 * head_dim);  // K and V of one token of one stream
}

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
          "kivi: a sequence can be truncated exactly only within the bf16 window (at least 97 tokens below its "
          "longest length; deeper cuts are refused). Changing it clears every sequence of the session.")
      .cost({"attention"},
            "kv, the bytes of a cached K or V element read or written (kv_cache_elem_bytes): f32 4, bf16 2, q8 "
            "34/32 (int8 + an fp16 scale per 32), kivi b-bit b/8 + 1/8 (codes + fp16 scale and zero per group "
            "of 32); the bf16 window of the newest tokens is not counted");
}

}  // namespace qw
