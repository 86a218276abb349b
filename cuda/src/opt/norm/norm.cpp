// norm.cpp — the registry entry of toggle "norm": its values (in Norm enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
// CPU arms: norm_cpu.hpp; CUDA arms: norm_unfused.cuh (src/cuda/decode.cu, layers.cu, prefill.cu).
#include "norm.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(norm) {
  return OptDef<Norm>("norm", "Residual and RMSNorm fusion")
      .value(Norm::Separate, "separate")
      .value(Norm::FusedResidualNorm, "fused-residual-norm")
      .by_default(Norm::FusedResidualNorm)
      .cpu({Norm::Separate, Norm::FusedResidualNorm})
      .cuda({Norm::Separate, Norm::FusedResidualNorm})
      .spec("QWEN-013")
      .describe(
          "The residual adds and the attention RMSNorm of a layer. separate: x += o_proj and x += down as kernels of "
          "their own, the RMSNorm before q|k|v as its own kernel; fused-residual-norm (default): each residual add in "
          "the o_proj / down projection's epilogue, the attention norm in the q|k|v projection's prologue. CPU: both "
          "phases, same bits. CUDA decode: GEMVs as described, same bits; CUDA prefill: the residual add in the GEMM "
          "epilogue or its own kernel, the RMSNorm its own kernel in both arms. The ffn norm belongs to toggle ffn; "
          "the final norm is fused into lm_head on CUDA and its own pass on the CPU in every arm.")
      .cost({"attn_norm", "qkv", "o_proj", "down", "residual"},
            "fused-residual-norm records no attn_norm / residual ops: qkv carries rmsnorm's base cost, o_proj and "
            "down carry the residual add's (sums, an upper bound on the bytes of the fused kernels)");
}

}  // namespace qw
