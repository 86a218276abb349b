// act_quant_cpu.cpp — the CPU dispatch of toggle actQuant (see act_quant_cpu.hpp). A new value adds its case to
// each switch here and its kernel file beside this one.
#include "act_quant_cpu.hpp"

namespace qw {
namespace cpu {

bool act_quant_runs(ActQuant mode, const NativeTensor &t, int64_t T) {
  switch (mode) {
    case ActQuant::Off: return false;
    case ActQuant::Int8:
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)  // the AVX2 kernels of matmul.cpp (QW_CPU_AVX2)
      return T >= kDequantMinT && (t.type == NativeType::W8 || t.type == NativeType::W4);
#else
      (void)t, (void)T;
      return false;
#endif
  }
  return false;
}

const char *act_quant_kernel_name(ActQuant mode, const NativeTensor &t) {
  switch (mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8: {
      static const char *const names[2][3][2] = {
          {{"cpu.gemm.w8g16.int8act.vnni", "cpu.gemm.w8g16.int8act.avx2"},
           {"cpu.gemm.w8g32.int8act.vnni", "cpu.gemm.w8g32.int8act.avx2"},
           {"cpu.gemm.w8g128.int8act.vnni", "cpu.gemm.w8g128.int8act.avx2"}},
          {{"cpu.gemm.w4g16.int8act.vnni", "cpu.gemm.w4g16.int8act.avx2"},
           {"cpu.gemm.w4g32.int8act.vnni", "cpu.gemm.w4g32.int8act.avx2"},
           {"cpu.gemm.w4g128.int8act.vnni", "cpu.gemm.w4g128.int8act.avx2"}}};
      static const bool vnni = cpu_has_vnni();
      const int g = t.group == 16 ? 0 : t.group == 32 ? 1 : 2;
      return names[t.type == NativeType::W4 ? 1 : 0][g][vnni ? 0 : 1];
    }
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
    case ActQuant::Int8: {
      static const bool vnni = cpu_has_vnni();
      (vnni ? gemm_int8_avx512 : gemm_int8_avx2)(job, qa, xsum, r0, r1);
      break;
    }
  }
}

}  // namespace cpu
}  // namespace qw
