// act_quant_cpu.cpp — the CPU dispatch of toggle actQuant (see act_quant_cpu.hpp). A new value adds its case to
// each switch here and its kernel file beside this one.
#include "act_quant_cpu.hpp"

namespace qw {
namespace cpu {

bool act_quant_runs(ActQuant mode, const NativeTensor &t, int64_t T) {
  switch (mode) {
    case ActQuant::Off: return false;
    case ActQuant::Int8: {
      static const bool vnni = cpu_has_vnni();
      return vnni && T >= kDequantMinT && (t.type == NativeType::W8 || t.type == NativeType::W4);
    }
  }
  return false;
}

const char *act_quant_kernel_name(ActQuant mode, const NativeTensor &t) {
  switch (mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8:
      return t.type == NativeType::W4 ? "cpu.gemm.w4g32.int8act.vnni"
                                      : t.group == 16 ? "cpu.gemm.w8g16.int8act.vnni" : "cpu.gemm.w8g32.int8act.vnni";
  }
  return "cpu.gemm";
}

void quantize_act(QuantAct &qa, ActQuant mode, const float *x, int64_t T, int64_t x_stride, int64_t K, int32_t G,
                  Pool &pool) {
  qa.mode = mode;
  qa.G = G;
  qa.T = T;
  qa.K = K;
  qa.gpr = K / G;
  switch (mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8: quantize_act_int8(qa, x, x_stride, pool); break;
  }
}

void gemm_act_quant(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1) {
  switch (qa.mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8: gemm_int8_avx512(job, qa, xsum, r0, r1); break;
  }
}

}  // namespace cpu
}  // namespace qw
