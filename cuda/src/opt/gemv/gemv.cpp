// gemv.cpp — the registry entry of toggle "gemv": its values (in Gemv enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "gemv.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(gemv) {
  return OptDef<Gemv>("gemv", "Decode GEMV kernel")
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
          "the weights once); bf16 weights on mma.sync tensor cores too (gemv_mma.cu, every batch size: batch 16 "
          "streams the weights once, batch 1 is slower than simple's CUDA-core kernel; H100 7B: b16 1229 against "
          "496 tok/s, b1 142 against 186; bf16 matrices too small for one block per SM split K over blocks: 0.5B "
          "b16 5860 against 2856 tok/s, b1 796 against 1085). Matrices the kernels do not cover (rows % 64, cols % "
          "128, group not 16/32/64/128) keep the simple kernels. Prefill of quantized "
          "weights: with marlin on sm_90 a wgmma GEMM dequantizes the packed units in registers; otherwise both "
          "values dequantize L2-sized row chunks before the bf16 GEMM.");
}

}  // namespace qw
