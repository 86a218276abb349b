// test_act_quant.cpp — the CPU dispatch of toggle actQuant (act_quant_cpu.cpp): which jobs run the int8 arm and
// what their records call the kernel (VNNI or AVX2); quantize_act's codes and scales. (The GEMM results of both
// arms against an fp64 reference, and AVX2 == VNNI bitwise: tests/test_gemm.)
#include <cmath>

#include "act_quant_cpu.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;

int main() {
  NativeTensor w8, w4, f32, bf16;
  w8.type = NativeType::W8;
  w8.group = 16;
  w4.type = NativeType::W4;
  w4.group = 32;
  f32.type = NativeType::F32;
  bf16.type = NativeType::BF16;
  const bool vnni = cpu_has_vnni();
  std::printf("vnni %d\n", int(vnni));
  for (const NativeTensor *t : {&w8, &w4, &f32, &bf16})
    for (int64_t T : {int64_t(1), int64_t(7), kDequantMinT, int64_t(100)}) {
      CHECK(!act_quant_runs(ActQuant::Off, *t, T), "off never runs (T %ld)", long(T));
      const bool want = (T >= kDequantMinT || vnni) && (t->type == NativeType::W8 || t->type == NativeType::W4);
      CHECK(act_quant_runs(ActQuant::Int8, *t, T) == want, "int8 runs: type %d T %ld", int(t->type), long(T));
    }
  const std::string isa = vnni ? "vnni" : "avx2";
  CHECK(act_quant_kernel_name(ActQuant::Int8, w8, kDequantMinT) == "cpu.gemm.w8g16.int8act." + isa &&
            act_quant_kernel_name(ActQuant::Int8, w4, 100) == "cpu.gemm.w4g32.int8act." + isa,
        "kernel names");
  // Decode sizes: the VNNI GEMV where it runs, else the exact GEMV's own name.
  w8.rows = 4;
  w8.cols = 64;
  CHECK(std::string(matmul_kernel_name(w8, 1, ActQuant::Int8)) ==
            (vnni ? "cpu.gemv.w8g16.int8act.vnni" : std::string(matmul_kernel_name(w8, 1, ActQuant::Off))),
        "decode kernel name (vnni %d): %s", int(vnni), matmul_kernel_name(w8, 1, ActQuant::Int8));
  // The exact arm names the matmul's own kernel, whatever the toggle asks, where the int8 arm does not run.
  f32.rows = 4;
  f32.cols = 32;
  CHECK(std::string(matmul_kernel_name(f32, 1, ActQuant::Int8)) == matmul_kernel_name(f32, 1, ActQuant::Off),
        "f32 weights keep the exact kernel");

  {  // quantize_act: per token and group, d = max|x| / 127, q = round(x / d) + 128
    Rng r(3);
    const int64_t T = 3, K = 64;
    const int32_t G = 32;
    std::vector<float> x(size_t(T * K));
    for (auto &v : x) v = r.normal();
    Pool pool(2);
    QuantAct qa;
    quantize_act(qa, ActQuant::Int8, x.data(), T, K, K, G, pool);
    CHECK(qa.mode == ActQuant::Int8 && qa.gpr == 2 && qa.q.size() == size_t(T * K), "shape");
    int bad = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t g = 0; g < 2; ++g) {
        float amax = 0;
        for (int32_t e = 0; e < G; ++e) amax = std::max(amax, std::fabs(x[size_t(t * K + g * G + e)]));
        const float dq = qa.d[size_t(t * 2 + g)];
        bad += dq != amax / 127.0f;
        for (int32_t e = 0; e < G; ++e) {
          const float xe = x[size_t(t * K + g * G + e)];
          bad += std::fabs(xe - dq * (int32_t(qa.q[size_t(t * K + g * G + e)]) - 128)) > dq * 0.5f * 1.0001f;
        }
      }
    CHECK(bad == 0, "codes within d/2 of x: %d bad", bad);
  }
  if (vnni) {  // the decode quantizer (vectorized, with the GEMV's operands) gives quantize_act_int8's codes bit for bit
    Rng r(5);
    for (int32_t G : {16, 32, 128})
      for (int64_t K : {int64_t(G), int64_t(3 * G), int64_t(896), int64_t(4864)}) {
        if (K % G) continue;
        const int64_t T = 3;
        std::vector<float> x(size_t(T * K));
        for (auto &v : x) v = r.normal() * 3.0f;
        for (int64_t i = 0; i < K && i < 8; ++i) x[size_t(i)] = i == 0 ? 127.0f : float(i) - 0.5f;  // ties at d = 1
        for (int64_t i = 0; i < G; ++i) x[size_t(K + i)] = 0.0f;  // an all-zero group: d = 0
        Pool pool(1);
        QuantAct a, b;
        a.mode = b.mode = ActQuant::Int8;
        a.G = b.G = G;
        a.T = b.T = T;
        a.K = b.K = K;
        a.gpr = b.gpr = K / G;
        quantize_act_int8(a, x.data(), K, pool);
        for (bool w4 : {false, true}) {
          quantize_gemv(b, x.data(), K, w4);
          CHECK(a.q == b.q && a.d == b.d, "quantize_gemv vs quantize_act_int8: G %d K %ld w4 %d", G, long(K), int(w4));
          // the operands: lane (p, j) holds the four codes of its columns, their -128 * sum, and d of their group
          int bad = 0;
          const int64_t L = b.gv.spans * 16;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t l = 0; l < L; ++l) {
              const int64_t p = l / 16, j = l % 16, c = p * 64 + (w4 ? 8 * (j % 8) + (j >= 8) : 4 * j);
              int32_t sum = 0;
              for (int e = 0; e < 4; ++e) {
                const int64_t ce = c + (w4 ? 2 * e : e);
                const int8_t want = ce < K ? int8_t(int32_t(a.q[size_t(t * K + ce)]) - 128) : int8_t(0);
                bad += b.gv.xs[size_t(t * L * 4 + 4 * l + e)] != want;
                sum += want;
              }
              bad += b.gv.corr[size_t(t * L + l)] != -128 * sum;
              bad += c < K && b.gv.dl[size_t(t * L + l)] != a.d[size_t(t * a.gpr + c / G)];
            }
          CHECK(bad == 0, "gemv operands: G %d K %ld w4 %d: %d wrong", G, long(K), int(w4), bad);
        }
      }
  }
  return finish("test_act_quant");
}
