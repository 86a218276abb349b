// test_gemm.cpp — the CPU matmul kernels (src/cpu/matmul*.cpp, gemm*_avx512.cpp, linked in from the CPU
// objects) against an fp64 reference, at every tile edge: T = 1 (GEMV), 2..7 (batched tiles), 8+ (the GEMM
// kernels: 6-token tiles, so 13 and 67 leave tails), rows that are not multiples of the 4-row quads or the
// 32-row int8 panels, K with 16-lane tails and several K blocks (2100 > 2 x 1024), every native weight type
// (F32, F16, BF16, W8 g32 / g16, W4 with and without offsets, W8 / W4 g128 from the weights option).
//
// Checks per case:
//  - exact arm: |y - y64| <= 1e-5 * sum_k |w_k x_k| (+1e-30) for every output, y64 the fp64 dot of the exactly
//    dequantized weights;
//  - int8-activation arm (actQuant = int8; AVX-512 VNNI or AVX2): |y - y64| <= sum_k |w_k| d_g / 2
//    (the activation rounding bound, d_g = max|x in group| / 127) + 1e-5 * sum_k |w_k x_k|;
//  - 1 thread vs 2 threads: bitwise equal (both arms);
//  - row-split independence: a job over rows [a, b) of the same weight gives bitwise the rows of the full job
//    (what a different chunking between threads would do);
//  - token independence (GEMM sizes): token t of a T = 67 call equals token t of a T = 13 call bitwise; at decode
//    sizes (T = 2..7) every token equals a T = 1 call on it bitwise (both arms);
//  - the AVX2 int8 kernel (vpmaddubsw, sign trick) equals the VNNI one bitwise (where the CPU has VNNI), for
//    groups of 16, 32 and 128, codes including -128 (the sign trick's edge), with and without offsets;
//  - the int8 arm at decode sizes (T < 8, VNNI only: opt/act_quant/gemv_int8_avx512.cpp) is checked by the same
//    fp64 bounds (K = 32 and 96 leave partial 64-column spans, rows leave 4-row tails), and against the GEMM kernel
//    on the same quantized activations within fp32 reordering (1e-5 of the sum of |terms|), for W8 codes that
//    include -128 and W4, groups of 16, 32 and 128, with and without offsets.
#include <algorithm>
#include <cmath>
#include <utility>

#include "convert.hpp"
#include "../src/cpu/cpu.hpp"
#include "act_quant_cpu.hpp"
#include "requant.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

struct Case {
  int32_t ggml;
  int64_t rows, cols;
  int requant = 0;  // 8 / 4: requantized to q8 / q4 group 128 (the weights model option)
};

NativeTensor make_weight(Rng &r, const Case &c) {
  const std::vector<uint8_t> raw = random_ggml(r, c.ggml, c.rows * c.cols);
  const NativeTensor t = convert_tensor("w", c.ggml, c.rows, c.cols, raw.data(), false);
  return c.requant == 8 ? requant_q8(t) : c.requant == 4 ? requant_q4(t) : t;
}

Weight as_weight(const NativeTensor &t) {
  Weight w;
  w.t = &t;
  for (float o : t.offset) w.has_offset = w.has_offset || o != 0.0f;
  return w;
}

std::vector<float> run(const NativeTensor &t, const std::vector<float> &x, int64_t T, int threads, bool i8,
                       const float *bias) {
  Pool pool(threads);
  std::vector<float> y(size_t(T * t.rows), NAN);
  MatJob job{as_weight(t), bias, y.data(), t.rows, i8 ? ActQuant::Int8 : ActQuant::Off};
  matmul(&job, 1, x.data(), T, t.cols, pool);
  return y;
}

// A copy of rows [a, b) of t (same native layout, so the same codes and scales).
NativeTensor slice_rows(const NativeTensor &t, int64_t a, int64_t b) {
  NativeTensor s = t;
  s.rows = b - a;
  const size_t bpr = t.data.size() / size_t(t.rows);
  s.data.assign(t.data.begin() + long(a * int64_t(bpr)), t.data.begin() + long(b * int64_t(bpr)));
  if (!t.scale.empty()) {
    const int64_t gpr = t.cols / t.group;
    s.scale.assign(t.scale.begin() + a * gpr, t.scale.begin() + b * gpr);
    s.offset.assign(t.offset.begin() + a * gpr, t.offset.begin() + b * gpr);
  }
  return s;
}

int check_case(Rng &r, const Case &c, int64_t T, bool i8) {
  const NativeTensor w = make_weight(r, c);
  std::vector<float> wf(size_t(c.rows * c.cols));
  dequant_rows(wf.data(), w, 0, c.rows);
  std::vector<float> x(size_t(T * c.cols)), bias(size_t(c.rows));
  for (auto &v : x) v = r.normal();
  for (auto &v : bias) v = r.normal() * 0.1f;
  const bool grouped = w.type == NativeType::W8 || w.type == NativeType::W4;
  const bool int8_runs = i8 && grouped && (T >= 8 || cpu_has_vnni());  // GEMM: VNNI or AVX2; GEMV: VNNI
  const std::vector<float> y1 = run(w, x, T, 1, i8, bias.data()), y2 = run(w, x, T, 2, i8, bias.data());
  int bad = 0;
  double worst = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < c.rows; ++i) {
      const float *wr = &wf[size_t(i * c.cols)], *xr = &x[size_t(t * c.cols)];
      double ref = bias[size_t(i)], mag = std::fabs(bias[size_t(i)]), qbound = 0;
      for (int64_t k = 0; k < c.cols; ++k) {
        ref += double(wr[k]) * xr[k];
        mag += std::fabs(double(wr[k]) * xr[k]);
      }
      if (int8_runs) {
        for (int64_t g = 0; g < c.cols / w.group; ++g) {
          double amax = 0, wabs = 0;
          for (int64_t k = g * w.group; k < (g + 1) * w.group; ++k) {
            amax = std::max(amax, double(std::fabs(xr[k])));
            wabs += std::fabs(double(wr[k]));
          }
          qbound += wabs * amax / 127.0 / 2.0;
        }
      }
      const double err = std::fabs(y1[size_t(t * c.rows + i)] - ref), tol = 1e-5 * mag + qbound * 1.001 + 1e-30;
      worst = std::max(worst, err / tol);
      if (!(err <= tol)) ++bad;
    }
  CHECK(bad == 0, "type %d rows %ld cols %ld T %ld int8 %d: %d outputs out of bound (worst err/tol %.3g)", c.ggml,
        long(c.rows), long(c.cols), long(T), int(i8), bad, worst);
  CHECK(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0, "type %d rows %ld cols %ld T %ld int8 %d: 1 vs 2 threads",
        c.ggml, long(c.rows), long(c.cols), long(T), int(i8));
  // row split: rows [a, b) alone
  const int64_t a = c.rows / 3, b = c.rows - c.rows / 5;
  if (b > a) {
    const NativeTensor s = slice_rows(w, a, b);
    const std::vector<float> ys = run(s, x, T, 1, i8, bias.data() + a);
    bool same = true;
    for (int64_t t = 0; t < T; ++t)
      same = same && std::memcmp(&ys[size_t(t * (b - a))], &y1[size_t(t * c.rows + a)], size_t(b - a) * 4) == 0;
    CHECK(same, "type %d rows %ld cols %ld T %ld int8 %d: rows [%ld, %ld) alone differ", c.ggml, long(c.rows),
          long(c.cols), long(T), int(i8), long(a), long(b));
  }
  // decode sizes: a token's outputs do not depend on the other tokens of the call (batched decode and verify steps give
  // the single-token step's bits)
  if (T >= 2 && T < 8) {
    bool same = true;
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<float> x1(x.begin() + t * c.cols, x.begin() + (t + 1) * c.cols);
      const std::vector<float> y1t = run(w, x1, 1, 1, i8, bias.data());
      same = same && std::memcmp(y1t.data(), &y1[size_t(t * c.rows)], size_t(c.rows) * 4) == 0;
    }
    CHECK(same, "type %d rows %ld cols %ld T %ld int8 %d: a token alone differs from the same token in the call", c.ggml,
          long(c.rows), long(c.cols), long(T), int(i8));
  }
  // token independence within the GEMM sizes: the first 13 tokens alone
  if (T > 13) {
    const std::vector<float> x13(x.begin(), x.begin() + 13 * c.cols);
    const std::vector<float> y13 = run(w, x13, 13, 1, i8, bias.data());
    CHECK(std::memcmp(y13.data(), y1.data(), y13.size() * 4) == 0, "type %d rows %ld cols %ld int8 %d: T = 13 vs T = %ld",
          c.ggml, long(c.rows), long(c.cols), int(i8), long(T));
  }
  return bad;
}

// W8 or W4 weights with groups of G built directly in the native layout (G = 128 is what requantization at load
// makes); W8 codes cover the whole int8 range, -128 included.
NativeTensor make_grouped(Rng &r, NativeType type, int64_t rows, int64_t cols, int32_t G, bool offsets) {
  NativeTensor t;
  t.name = "w";
  t.type = type;
  t.rows = rows;
  t.cols = cols;
  t.group = G;
  t.data.resize(size_t(type == NativeType::W8 ? rows * cols : rows * cols / 2));
  for (auto &b : t.data) b = uint8_t(r.next() & 0xFF);
  t.scale.resize(size_t(rows * cols / G));
  t.offset.assign(size_t(rows * cols / G), 0.0f);
  for (auto &v : t.scale) v = 0.01f + 0.02f * std::fabs(r.normal());
  if (offsets)
    for (auto &v : t.offset) v = -0.1f * std::fabs(r.normal());
  return t;
}

// A grouped weight with T random inputs, a bias and the inputs' fp32 group sums (the offset term's other factor).
struct GroupedCase {
  NativeTensor w;
  std::vector<float> x, bias, xsum;
};
GroupedCase make_grouped_case(Rng &r, NativeType type, int64_t rows, int64_t cols, int32_t G, int64_t T, bool offsets) {
  GroupedCase k{make_grouped(r, type, rows, cols, G, offsets), std::vector<float>(size_t(T * cols)),
                std::vector<float>(static_cast<size_t>(rows)), std::vector<float>(size_t(T * (cols / G)))};
  for (auto &v : k.x) v = r.normal();
  for (auto &v : k.bias) v = r.normal() * 0.1f;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g = 0; g < cols / G; ++g) {
      float s = 0;
      for (int64_t e = 0; e < G; ++e) s += k.x[size_t(t * cols + g * G + e)];
      k.xsum[size_t(t * (cols / G) + g)] = s;
    }
  return k;
}

// The outputs of two int8-arm kernels over all rows of a case, on the same quantized input (with the offset term
// where the case has offsets).
using Int8Kernel = void (*)(const MatJob &, const QuantAct &, const float *, int64_t, int64_t);
std::pair<std::vector<float>, std::vector<float>> run_int8_pair(const GroupedCase &k, const QuantAct &qa, bool offsets,
                                                                Int8Kernel a, Int8Kernel b) {
  const int64_t rows = k.w.rows;
  std::vector<float> ya(size_t(qa.T * rows), NAN), yb(size_t(qa.T * rows), NAN);
  const MatJob ja{as_weight(k.w), k.bias.data(), ya.data(), rows, ActQuant::Int8},
      jb{as_weight(k.w), k.bias.data(), yb.data(), rows, ActQuant::Int8};
  const float *xs = offsets ? k.xsum.data() : nullptr;
  a(ja, qa, xs, 0, rows);
  b(jb, qa, xs, 0, rows);
  return {std::move(ya), std::move(yb)};
}

void check_int8_isas(Rng &r, NativeType type, int64_t rows, int64_t cols, int32_t G, int64_t T, bool offsets) {
  const GroupedCase k = make_grouped_case(r, type, rows, cols, G, T, offsets);
  Pool pool(1);
  QuantAct qa;
  quantize_act(qa, ActQuant::Int8, k.x.data(), T, cols, cols, G, pool);
  const auto [ya, yb] = run_int8_pair(k, qa, offsets, gemm_int8_avx2, gemm_int8_avx512);
  CHECK(std::memcmp(ya.data(), yb.data(), ya.size() * 4) == 0, "int8 avx2 vs vnni: type %d rows %ld cols %ld G %d T %ld offsets %d",
        int(type), long(rows), long(cols), G, long(T), int(offsets));
  bool finite = true;
  for (float v : ya) finite = finite && std::isfinite(v);
  CHECK(finite, "int8 avx2: non-finite output (type %d G %d)", int(type), G);
}

// The decode GEMV of the int8 arm against the GEMM kernel on the same quantized activations: the same integer
// sums and scales, summed in another fp32 order, so within 1e-5 of the sum of the terms' magnitudes.
void check_int8_gemv(Rng &r, NativeType type, int64_t rows, int64_t cols, int32_t G, int64_t T, bool offsets) {
  const GroupedCase k = make_grouped_case(r, type, rows, cols, G, T, offsets);
  const NativeTensor &w = k.w;
  const std::vector<float> &x = k.x, &bias = k.bias;
  Pool pool(1);
  QuantAct qv;  // codes and scales (what the GEMM reads) and the GEMV's operands, from one quantization
  quantize_act(qv, ActQuant::Int8, x.data(), T, cols, cols, G, pool, type);
  const int64_t gpr = cols / G;
  const auto [ya, yb] = run_int8_pair(k, qv, offsets, gemm_int8_avx512, gemv_int8_avx512);
  int bad = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < rows; ++i) {
      double mag = std::fabs(bias[size_t(i)]);
      for (int64_t k = 0; k < cols; ++k) {
        const int32_t q = type == NativeType::W8 ? int32_t(int8_t(w.data[size_t(i * cols + k)]))
                                                 : int32_t((w.data[size_t((i * cols + k) / 2)] >> (4 * (k % 2))) & 0xF);
        const int64_t g = k / G;
        mag += std::fabs(double(w.scale[size_t(i * gpr + g)]) * q * qv.d[size_t(t * gpr + g)] *
                         (int32_t(qv.q[size_t(t * cols + k)]) - 128));
        if (offsets) mag += std::fabs(double(w.offset[size_t(i * gpr + g)]) * x[size_t(t * cols + k)]);
      }
      const double err = std::fabs(double(ya[size_t(t * rows + i)]) - yb[size_t(t * rows + i)]);
      if (!(err <= 1e-5 * mag + 1e-30)) ++bad;
    }
  CHECK(bad == 0, "int8 gemv vs gemm: type %d rows %ld cols %ld G %d T %ld offsets %d: %d outputs differ", int(type),
        long(rows), long(cols), G, long(T), int(offsets), bad);
}

}  // namespace

int main() {
  Rng r(15);
  std::printf("avx512 %d, vnni %d\n", int(cpu_has_avx512()), int(cpu_has_vnni()));
  const int32_t F32 = QW_GGML_F32, F16 = QW_GGML_F16, BF16 = QW_GGML_BF16, Q8 = QW_GGML_Q8_0, Q4_0 = QW_GGML_Q4_0,
                Q4K = QW_GGML_Q4_K, Q5K = QW_GGML_Q5_K, Q6K = QW_GGML_Q6_K;
  const std::vector<Case> cases = {
      {F32, 5, 17},   {F32, 33, 100},  {F32, 67, 2100}, {F16, 31, 48},   {F16, 9, 1030},  {BF16, 13, 96},
      {Q8, 1, 32},    {Q8, 33, 96},    {Q8, 70, 2112},  {Q4_0, 37, 64},  {Q4K, 35, 256},  {Q5K, 66, 512},
      {Q6K, 41, 256}, {Q6K, 3, 2304},
      {F32, 37, 384, 8}, {BF16, 66, 1024, 8}, {F32, 35, 256, 4}, {BF16, 33, 1152, 4},  // group 128
  };
  for (const Case &c : cases)
    for (int64_t T : {1, 2, 7, 8, 13, 67})
      for (bool i8 : {false, true}) {
        if (i8 && T < 8 && !cpu_has_vnni()) continue;
        check_case(r, c, T, i8);
      }
  if (cpu_has_vnni()) {
    for (int32_t G : {16, 32, 128})
      for (NativeType type : {NativeType::W8, NativeType::W4})
        for (bool off : {false, true}) {
          check_int8_isas(r, type, 37, 512, G, 13, off);
          for (int64_t T : {1, 3, 6}) check_int8_gemv(r, type, 37, G == 128 ? 1152 : 480, G, T, off);
        }
  } else {
    std::printf("int8 avx2 vs vnni: skipped (VNNI absent or turned off by QW_CPU_NO_AVX512; the fp64 bounds above cover the AVX2 kernel)\n");
  }
  return finish("test_gemm");
}
