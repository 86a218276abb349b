// attention.cpp — the registry entry of toggle "attention": its values (in Attention enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "attention.hpp"

#include <string>

#include "backend.hpp"
#include "dca.hpp"
#include "kvcache.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(attention) {
  return OptDef<Attention>("attention", "Attention kernel")
      .value(Attention::FlashBf16, "flash-bf16")
      .value(Attention::SageInt8, "sage-int8")
      .value(Attention::SageFp8, "sage-fp8")
      .by_default(Attention::FlashBf16)
      .cpu({Attention::FlashBf16, Attention::SageInt8, Attention::SageFp8})
      .cuda({Attention::FlashBf16, Attention::SageInt8, Attention::SageFp8})
      .spec("QWEN-001")
      .describe(
          "Attention kernel. flash-bf16 is exact softmax attention (the CPU computes it in fp32); sage-int8 "
          "quantizes Q and K to INT8 with smooth-K (P*V in bf16); sage-fp8 adds FP8 e4m3 P*V with per-channel V scales "
          "and two-level fp32 accumulation. The CPU's Sage arms are the exact references (sage_ref.hpp); CUDA runs "
          "them in prefill (INT8 / FP8 tensor cores, FP8 on sm_89+), decode keeps the bf16 split-KV kernel. A Sage "
          "arm needs kvCache = bf16 / f32 and dca = off on its layer.")
      .cost({"attention"},
            "sage-int8 / sage-fp8: the same bytes (K and V are read from the cache once; the int8 / fp8 copies are "
            "scratch) and FLOPs; Q.K runs on the int8 roof, P.V on bf16 (sage-int8) or fp8 (sage-fp8)");
}

void attention_check_step(const StepToggles &t) {
  const bool kv_quant = !(t.kv_cache == KvCache::Bf16 || t.kv_cache == KvCache::F32);
  for (size_t l = 0; l < t.layer.size(); ++l) {
    const LayerToggles &lt = t.layer[l];
    if (lt.attention == Attention::FlashBf16) continue;
    const std::string arm = "attention = " + value_name(lt.attention) + " on layer " + std::to_string(l);
    if (kv_quant)
      throw Error(QW_ERR_UNSUPPORTED, arm + " reads a bf16 or f32 KV cache, but kvCache = " + value_name(t.kv_cache) +
                                          " attends over its own codes: set attention to flash-bf16, or kvCache to "
                                          "bf16 (or f32 on the CPU)");
    if (lt.dca == Dca::On)
      throw Error(QW_ERR_UNSUPPORTED, arm + " cannot run with dca = on on that layer (Dual Chunk Attention has its own "
                                          "kernel): set attention to flash-bf16 or dca to off there");
  }
}

}  // namespace qw
