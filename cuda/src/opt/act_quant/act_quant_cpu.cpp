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
      if (t.type != NativeType::W8 && t.type != NativeType::W4) return false;
      static const bool vnni = cpu_has_vnni();  // the decode GEMV has no AVX2 twin
      return T >= kDequantMinT || vnni;
#else
      (void)t, (void)T;
      return false;
#endif
  }
  return false;
}

const char *act_quant_kernel_name(ActQuant mode, const NativeTensor &t, int64_t T) {
  switch (mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8: {
      if (T < kDequantMinT) {
        static const char *const gemv[2][3] = {
            {"cpu.gemv.w8g16.int8act.vnni", "cpu.gemv.w8g32.int8act.vnni", "cpu.gemv.w8g128.int8act.vnni"},
            {"cpu.gemv.w4g16.int8act.vnni", "cpu.gemv.w4g32.int8act.vnni", "cpu.gemv.w4g128.int8act.vnni"}};
        return gemv[t.type == NativeType::W4 ? 1 : 0][t.group == 16 ? 0 : t.group == 32 ? 1 : 2];
      }
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
                  Pool &pool, NativeType wtype) {
  qa.mode = mode;
  qa.layout = act_quant_layout(wtype, T);
  qa.G = G;
  qa.T = T;
  qa.K = K;
  qa.gpr = K / G;
  switch (mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8:
      if (T < kDequantMinT && cpu_has_vnni())
        quantize_gemv(qa, x, x_stride, qa.layout == ActLayout::GemvW4);  // decode sizes (the GEMV runs with VNNI only)
      else
        quantize_act_int8(qa, x, x_stride, pool);
      break;
  }
}

bool act_quant_shares(const QuantAct &qa, ActQuant mode, const NativeTensor &w, int64_t T) {
  return qa.mode == mode && qa.G == w.group && qa.layout == act_quant_layout(w.type, T);
}

void gemm_act_quant(const MatJob &job, const QuantAct &qa, const float *xsum, int64_t r0, int64_t r1) {
  switch (qa.mode) {
    case ActQuant::Off: break;
    case ActQuant::Int8: {
      static const bool vnni = cpu_has_vnni();
      if (qa.T < kDequantMinT)
        gemv_int8_avx512(job, qa, xsum, r0, r1);  // act_quant_runs() admitted it with VNNI only
      else
        (vnni ? gemm_int8_avx512 : gemm_int8_avx2)(job, qa, xsum, r0, r1);
      break;
    }
  }
}

}  // namespace cpu
}  // namespace qw
