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
          "Decode kernels of the quantized (W4/W8) projections. simple: the dequantizing CUDA-core GEMV (W4 / W8 "
          "weights read in 16-byte loads, codes converted without I2F: gemv_q16). marlin (CUDA): decode GEMV on "
          "mma.sync tensor cores over weights repacked at first use (opt/gemv/marlin_layout.hpp: cp.async ring per "
          "warp, register dequantization, exact scale/offset per group, split-K over all SMs, batch 1-16 streaming "
          "the weights once). Matrices the kernel does not cover (bf16, rows % 64, cols % 128, group not "
          "16/32/64/128) keep the simple kernels. Prefill is the same for both values: quantized and F16 weights "
          "are dequantized in L2-sized row chunks by a vectorized kernel before each GEMM.");
}

}  // namespace qw
