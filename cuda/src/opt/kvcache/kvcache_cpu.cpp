// kvcache_cpu.cpp — the CPU KV cache of toggle kvCache (see kvcache_cpu.hpp).
#include "kvcache_cpu.hpp"

#include <string>

#include "backend.hpp"
#include "registry.hpp"

namespace qw {
namespace cpu {

void KvStore::configure(KvCache type, int32_t L, int32_t B, int32_t nkv, int32_t T, int32_t d) {
  if (type != KvCache::Bf16 && type != KvCache::F32)
    throw Error(QW_ERR_UNSUPPORTED,
                "kvCache = " + value_name(type) + " is not implemented by the CPU backend (bf16, f32)");
  // Checked in double first: a product of five config/session sizes can overflow int64.
  const double nd = double(L) * B * nkv * T * d;
  if (nd > double(int64_t(1) << 38))
    throw Error(QW_ERR_OUT_OF_MEMORY, "KV cache of " + std::to_string(nd * (type == KvCache::Bf16 ? 4 : 8) / 1e9) +
                                          " GB requested: reduce max_batch or max_context");
  const int64_t n = int64_t(L) * B * nkv * T * d;
  kf.reset();
  vf.reset();
  kb.reset();
  vb.reset();
  bf16 = type == KvCache::Bf16;
  layers = L;
  batch = B;
  kv_heads = nkv;
  ctx = T;
  head_dim = d;
  // Uninitialised on purpose: pages are only touched as sequences grow (a 4096 x 16 cache is mostly unused).
  if (bf16) {
    kb.reset(new uint16_t[size_t(n)]);
    vb.reset(new uint16_t[size_t(n)]);
  } else {
    kf.reset(new float[size_t(n)]);
    vf.reset(new float[size_t(n)]);
  }
}

}  // namespace cpu
}  // namespace qw
