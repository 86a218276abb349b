// kvcache_cpu.hpp — the CPU side of toggle kvCache: the KV cache of one session in the element type the toggle
// picks (bf16 or f32 on the CPU). attention.cpp writes the step's rows and reads them back through offset().
#pragma once

#include <cstdint>
#include <memory>

#include "backend.hpp"
#include "kv_quant_cpu.hpp"
#include "kvcache.hpp"

namespace qw {
namespace cpu {

struct KvStore {
  KvCache type = KvCache::Bf16;
  bool bf16 = true;
  int32_t layers = 0, batch = 0, kv_heads = 0, ctx = 0, head_dim = 0;
  std::unique_ptr<float[]> kf, vf;     // f32: [layers][batch][kv_heads][ctx][head_dim]
  std::unique_ptr<uint16_t[]> kb, vb;  // bf16: same layout
  std::unique_ptr<KvQuant> quant;      // q8 | kivi4 | kivi2 (kv_quant_cpu.hpp); then kf..vb are empty
  void configure(KvCache type, int32_t layers, int32_t batch, int32_t kv_heads, int32_t ctx,
                 int32_t head_dim);
  int64_t offset(int32_t layer, int32_t seq, int32_t kvh, int32_t pos) const {
    return (((int64_t(layer) * batch + seq) * kv_heads + kvh) * ctx + pos) * head_dim;
  }
  double elem_bytes() const { return kv_cache_elem_bytes(type, head_dim); }  // the cost model's kv
  KvInfo info() const;
};

}  // namespace cpu
}  // namespace qw
