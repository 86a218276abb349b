// gemv.cpp — the registry entry of toggle "gemv": its values (in Gemv enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "gemv.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(gemv) {
  return OptDef<Gemv>("gemv", "Quantized GEMV kernel")
      .value(Gemv::Simple, "simple")
      .value(Gemv::Marlin, "marlin")
      .by_default(Gemv::Simple)
      .cpu({Gemv::Simple})
      .cuda({Gemv::Simple, Gemv::Marlin})
      .spec("QWEN-005")
      .describe(
          "Kernels of the quantized (W4/W8) projections. simple: the dequantizing CUDA-core GEMV in decode, and a "
          "generic dequantize-to-bf16 before the prefill GEMM. marlin (CUDA; written without a GPU, not yet measured): "
          "decode GEMV on mma.sync tensor cores over weights repacked at first use (opt/gemv/marlin_layout.hpp: "
          "cp.async ring per warp, register dequantization, exact scale/offset per group, split-K over all SMs, "
          "batch 1-16 streaming the weights once); prefill dequantizes in L2-sized row chunks with a vectorized "
          "kernel before each GEMM (also F16 weights). Matrices the kernel does not cover (bf16, rows % 64, cols % "
          "128, group not 16/32/64/128) keep the simple kernels.");
}

}  // namespace qw
