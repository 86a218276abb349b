// act_quant.cpp — the registry entry of toggle "actQuant": its values (in ActQuant enumerator order), default, which
// values each backend implements, spec and description. Its scope is on its line in opt/list.hpp.
#include "act_quant.hpp"
#include "registry.hpp"

namespace qw {

QW_OPTIMIZATION(act_quant) {
  return OptDef<ActQuant>("actQuant", "Int8 activations (GEMM and GEMV)")
      .value(ActQuant::Off, "off")
      .value(ActQuant::Int8, "int8")
      .by_default(ActQuant::Off)
      .cpu({ActQuant::Off, ActQuant::Int8})
      .cuda({ActQuant::Off, ActQuant::Int8})
      .spec("issue 15")
      .describe(
          "Activations of the matmuls with 8/4-bit weights. off: exact (fp32 on the CPU); int8: quantize the "
          "activations per token and weight group to int8 (d = max|x| / 127, as llama.cpp's q8_0) and use integer "
          "dot products: prefill GEMMs with AVX-512 VNNI, else AVX2 with bitwise the same outputs; decode GEMVs "
          "(under 8 tokens) with AVX-512 VNNI only, else exact. On CUDA: the decode GEMVs (batch 1-16, and verify "
          "steps of up to 16 rows) of W4 / W8 weights with group sizes 32 (W8: 16) to 256 (a power of two), with "
          "dp4a, under either gemv value (measured on an H100: 7B q4 decode 1.26x at batch 1, slower than exact at batch "
          "8-16, where each block quantizes every token again); prefill GEMMs and other weights run exact. Its op "
          "records name the kernel "
          "that ran. The lm_head runs the last layer's value.")
      .cost({"qkv", "o_proj", "gate_up", "down", "lm_head"},
            "int8: the same bytes (x read once in fp32, quantized on the fly) and FLOPs (an int8 multiply-add "
            "counts 2); the compute roof that applies is the int8 peak, not fp32");
}

}  // namespace qw
