// ffn.cpp — the registry entry of toggle "ffn": its values (in Ffn enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
// CPU arms: ffn_cpu.hpp; CUDA arms: ffn.cuh (decode, src/cuda/decode.cu).
#include "ffn.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(ffn) {
  return OptDef<Ffn>("ffn", "MLP kernels")
      .value(Ffn::Separate, "separate")
      .value(Ffn::FusedSwiglu, "fused-swiglu")
      .value(Ffn::FusedNormGemvSwiglu, "fused-norm-gemv-swiglu")
      .by_default(Ffn::FusedNormGemvSwiglu)
      .cpu({Ffn::Separate, Ffn::FusedSwiglu, Ffn::FusedNormGemvSwiglu})
      .cuda({Ffn::Separate, Ffn::FusedSwiglu, Ffn::FusedNormGemvSwiglu})
      .spec("QWEN-003, QWEN-009")
      .describe(
          "The MLP's ffn RMSNorm -> gate/up projection -> SiLU(gate)*up. separate: three kernels (RMSNorm, the "
          "gate/up projection, SiLU*up); fused-swiglu: RMSNorm, then the projection with SiLU*up in its epilogue; "
          "fused-norm-gemv-swiglu (default): one kernel, the norm in the projection's prologue and SiLU*up in its "
          "epilogue. CPU: every arm in prefill and decode (separate passes vs one matmul pool job), same bits. CUDA "
          "decode: GEMVs as described, same bits (a model whose gate and up differ in weight type runs SiLU*up as its "
          "own kernel in every arm). CUDA prefill runs RMSNorm, GEMM and SiLU*up as three kernels in every arm.")
      .cost({"ffn_norm", "gate_up", "swiglu"},
            "a fused arm records one gate_up op carrying the sum of the base costs it fuses (rmsnorm, the gate/up "
            "matmul, swiglu): an upper bound on its bytes, since the fused kernel does not round-trip the normed "
            "input or gate/up through memory");
}

}  // namespace qw
