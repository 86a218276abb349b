// attention.cpp — the registry entry of toggle "attention": its values (in Attention enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "attention.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(attention) {
  return OptDef<Attention>("attention", "Attention kernel")
      .value(Attention::FlashBf16, "flash-bf16")
      .value(Attention::SageInt8, "sage-int8")
      .value(Attention::SageFp8, "sage-fp8")
      .by_default(Attention::FlashBf16)
      .cpu({Attention::FlashBf16, Attention::SageInt8, Attention::SageFp8})
      .cuda({Attention::FlashBf16})
      .spec("QWEN-001")
      .describe(
          "Attention kernel. flash-bf16 is exact softmax attention (the CPU computes it in fp32); sage-int8 "
          "quantizes Q and K to INT8 with smooth-K (P*V in bf16); sage-fp8 adds FP8 e4m3 P*V with per-channel V scales "
          "and two-level fp32 accumulation. The CPU's Sage arms are the exact references (sage_cpu.hpp).")
      .cost({"attention"},
            "sage-int8 / sage-fp8: the same bytes (K and V are read from the cache once; the int8 / fp8 copies are "
            "scratch) and FLOPs; Q.K runs on the int8 roof, P.V on bf16 (sage-int8) or fp8 (sage-fp8)");
}

}  // namespace qw
