// kvcache_cpu.cpp — the CPU KV cache of toggle kvCache (see kvcache_cpu.hpp).
#include "kvcache_cpu.hpp"

#include <string>

#include "backend.hpp"
#include "registry.hpp"

namespace qw {
namespace cpu {

void KvStore::configure(KvCache type, int32_t L, int32_t B, int32_t nkv, int32_t T, int32_t d) {
  if (type != KvCache::Bf16 && type != KvCache::F32) {
    auto q = std::make_unique<KvQuant>();
    kvq_configure(*q, kv_type_of(type), L, B, nkv, T, d);  // may throw: the old cache stays
    kf.reset();
    vf.reset();
    kb.reset();
    vb.reset();
    quant = std::move(q);
    this->type = type;
    bf16 = false;
    layers = L;
    batch = B;
    kv_heads = nkv;
    ctx = T;
    head_dim = d;
    return;
  }
  // Checked in double first: a product of five config/session sizes can overflow int64.
  const double nd = double(L) * B * nkv * T * d;
  if (nd > double(int64_t(1) << 38))
    throw Error(QW_ERR_OUT_OF_MEMORY, "KV cache of " + std::to_string(nd * (type == KvCache::Bf16 ? 4 : 8) / 1e9) +
                                          " GB requested: reduce max_batch or max_context");
  const int64_t n = int64_t(L) * B * nkv * T * d;
  quant.reset();
  kf.reset();
  vf.reset();
  kb.reset();
  vb.reset();
  this->type = type;
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

KvInfo KvStore::info() const {
  KvInfo r;
  const double streams = double(layers) * kv_heads;
  if (quant) {
    r.type = kvq::kv_type_name(quant->lay.type);
    r.bytes_per_token = streams * quant->lay.bytes_per_token_stream();
    r.bytes = quant->allocated_bytes();
    if (kvq::is_kivi(quant->lay.type)) {
      r.residual_tokens = kvq::kKiviResidual;
      r.max_rollback = kvq::kKiviMaxRollback;
    }
  } else {
    r.type = bf16 ? "bf16" : "f32";
    r.bytes_per_token = streams * 2.0 * head_dim * elem_bytes();
    r.bytes = uint64_t(r.bytes_per_token * double(batch) * ctx);
  }
  return r;
}

}  // namespace cpu
}  // namespace qw
