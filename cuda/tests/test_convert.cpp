// test_convert.cpp — GGUF -> native conversion is bit-exact with ggml's dequantize_row_* for every type,
// incl. the Q4_K/Q5_K j >= 4 scale path (random scale bytes set the high bits) and negative Q6_K scales.
#include <immintrin.h>

#include <cmath>
#include <vector>

#include "backend.hpp"
#include "convert.hpp"
#include "sampling.hpp"
#include "testlib.hpp"

__attribute__((target("f16c"))) static float f16c_to_float(uint16_t h) { return _cvtsh_ss(h); }

static bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

int main() {
  // fp16 -> fp32 for all 65536 inputs against the F16C instruction.
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = qw::half_to_float(uint16_t(h));
    const float b = f16c_to_float(uint16_t(h));
    if (!same_bits(a, b) && !(std::isnan(a) && std::isnan(b))) ++bad;
  }
  CHECK(bad == 0, "%d fp16 values convert differently from F16C", bad);
  CHECK(qw::float_to_bf16(1.00390625f) == 0x3F80, "bf16 ties to even");
  CHECK(qw::float_to_bf16(1.01171875f) == 0x3F82, "bf16 ties to even (odd)");

  const int32_t types[] = {QW_GGML_F32, QW_GGML_F16, QW_GGML_BF16, QW_GGML_Q8_0, QW_GGML_Q4_0,
                           QW_GGML_Q5_0, QW_GGML_Q4_K, QW_GGML_Q5_K, QW_GGML_Q6_K};
  Rng r(7);
  int neg_q6k_scales = 0, high_scale_bits = 0;
  for (int32_t t : types) {
    const int64_t rows = 5, cols = 512;
    std::vector<uint8_t> raw = random_ggml(r, t, rows * cols);
    CHECK(raw.size() == qw::ggml_nbytes("x", t, rows, cols), "nbytes of %s", qw::ggml_type_name(t));
    if (t == QW_GGML_Q6_K)
      for (size_t b = 0; b < raw.size(); b += 210)
        for (int k = 0; k < 16; ++k) neg_q6k_scales += int8_t(raw[b + 192 + size_t(k)]) < 0;
    if (t == QW_GGML_Q4_K || t == QW_GGML_Q5_K)
      for (size_t b = 0; b < raw.size(); b += size_t(ggml_type(t).block_bytes))
        for (int k = 0; k < 8; ++k) high_scale_bits += (raw[b + 4 + size_t(k)] >> 6) != 0;
    std::vector<float> ref(size_t(rows * cols)), mine(size_t(rows * cols)), direct(size_t(rows * cols));
    ref_dequant(ref.data(), t, raw.data(), rows * cols);
    qw::NativeTensor nt = qw::convert_tensor("x", t, rows, cols, raw.data(), false);
    qw::dequant_rows(mine.data(), nt, 0, rows);
    qw::dequant_ggml(direct.data(), t, raw.data(), rows * cols);
    int diff = 0, diff2 = 0;
    // Q4_0 may differ only in the sign of an exact zero (see convert.hpp); everything else is bitwise.
    auto eq = [&](float x, float y) { return same_bits(x, y) || (t == QW_GGML_Q4_0 && x == 0.0f && y == 0.0f); };
    for (size_t i = 0; i < ref.size(); ++i) {
      diff += !eq(ref[i], mine[i]);
      diff2 += !eq(ref[i], direct[i]);
    }
    CHECK(diff == 0, "%s: %d of %zu native values differ from dequantize_row (bitwise)", qw::ggml_type_name(t), diff,
          ref.size());
    CHECK(diff2 == 0, "%s: %d dequant_ggml values differ", qw::ggml_type_name(t), diff2);
    // partial row ranges
    std::vector<float> part(size_t(2 * cols));
    qw::dequant_rows(part.data(), nt, 2, 2);
    CHECK(std::memcmp(part.data(), &mine[size_t(2 * cols)], size_t(2 * cols) * 4) == 0, "%s row range", qw::ggml_type_name(t));
    // vector path (norm weights) gives the same values as F32
    qw::NativeTensor vt = qw::convert_tensor("v", t, 1, cols, raw.data(), true);
    CHECK(vt.type == qw::NativeType::F32 && std::memcmp(vt.data.data(), direct.data(), size_t(cols) * 4) == 0,
          "%s vector conversion", qw::ggml_type_name(t));
    // expected native layouts
    const char *want = "";
    switch (t) {
      case QW_GGML_F32: want = "f32"; break;
      case QW_GGML_F16: want = "f16"; break;
      case QW_GGML_BF16: want = "bf16"; break;
      case QW_GGML_Q8_0: case QW_GGML_Q5_0: case QW_GGML_Q5_K: case QW_GGML_Q6_K: want = "w8"; break;
      default: want = "w4";
    }
    CHECK(std::string(qw::native_type_name(nt.type)) == want, "%s native %s", qw::ggml_type_name(t),
          qw::native_type_name(nt.type));
    if (t == QW_GGML_Q6_K) CHECK(nt.group == 16, "q6_k group 16");
  }
  CHECK(neg_q6k_scales > 0, "test data has negative Q6_K scales");
  CHECK(high_scale_bits > 0, "test data exercises the j >= 4 scale bits");
  // bad sizes are errors, not crashes
  bool threw = false;
  try {
    qw::ggml_nbytes("t", QW_GGML_Q4_K, 2, 100);
  } catch (const qw::Error &e) {
    threw = e.status == QW_ERR_SHAPE;
  }
  CHECK(threw, "ne0 not a multiple of the block size");

  // sampler: greedy lowest id on ties; seeded draws deterministic and in range; top_k = 1 is greedy
  const float lg[6] = {1.0f, 3.0f, 3.0f, -1.0f, NAN, 2.0f};
  CHECK(qw::argmax_lowest(lg, 6) == 1, "argmax tie -> lowest id");
  {  // the vectorized argmax (vocab >= 32) against the sequential rule: first strict maximum, NaN skipped, all NaN -> 0
    auto seq = [](const std::vector<float> &v) {
      int32_t best = -1;
      for (int32_t i = 0; i < int32_t(v.size()); ++i)
        if (!std::isnan(v[size_t(i)]) && (best < 0 || v[size_t(i)] > v[size_t(best)])) best = i;
      return best < 0 ? 0 : best;
    };
    Rng ar(11);
    int checked = 0;
    for (int32_t n : {32, 33, 39, 40, 63, 64, 95, 257, 8256}) {
      for (int kase = 0; kase < 12; ++kase) {
        std::vector<float> v(static_cast<size_t>(n));
        for (auto &e : v) e = float(int32_t(ar.next() % 7)) - 3.0f;  // few distinct values: many ties
        if (kase == 1) for (auto &e : v) e = NAN;
        if (kase == 2) for (auto &e : v) e = -INFINITY;
        if (kase == 3) { for (auto &e : v) e = NAN; v[size_t(n - 1)] = -INFINITY; }
        if (kase == 4) { for (auto &e : v) e = (ar.next() & 1) ? 0.0f : -0.0f; }
        if (kase == 5) v[size_t(n - 1)] = 100.0f;  // the maximum in the scalar tail
        if (kase == 6) { v[0] = NAN; v[size_t(n / 2)] = NAN; }
        if (kase >= 7) v[size_t(ar.next() % uint64_t(n))] = NAN;
        CHECK(qw::argmax_lowest(v.data(), n) == seq(v), "argmax n=%d case %d: %d vs %d", n, kase,
              qw::argmax_lowest(v.data(), n), seq(v));
        ++checked;
      }
    }
    std::printf("argmax: %d vocabularies equal to the sequential rule\n", checked);
  }
  qw::SamplerScratch sc;
  qw::SamplingParams p{0.8f, 0, 0.9f, 42};
  const int32_t a = qw::sample_token(lg, 6, p, 10, sc), b = qw::sample_token(lg, 6, p, 10, sc);
  CHECK(a == b && a >= 0 && a < 6 && a != 4, "seeded draw deterministic (%d %d)", a, b);
  p.top_k = 1;
  CHECK(qw::sample_token(lg, 6, p, 11, sc) == 1, "top_k 1");
  float u0 = qw::sample_uniform(1, 0), u1 = qw::sample_uniform(1, 1);
  CHECK(u0 >= 0 && u0 < 1 && u1 >= 0 && u1 < 1 && u0 != u1, "uniform");
  // distribution check: temperature 1, two tokens with logits log(1), log(3) -> p = 0.25 / 0.75
  const float two[2] = {0.0f, std::log(3.0f)};
  int ones = 0;
  qw::SamplingParams p2{1.0f, 0, 1.0f, 9};
  for (int i = 0; i < 20000; ++i) ones += qw::sample_token(two, 2, p2, i, sc);
  CHECK(std::fabs(ones / 20000.0 - 0.75) < 0.015, "sampled frequency %.4f vs 0.75", ones / 20000.0);
  return finish("test_convert");
}
