// test_q16.cpp — gemv_q16's code conversion (q16_dequant.hpp) against the plain one, bit for bit: every W4 nibble and
// every W8 byte value in every position of a word, and random words with random scales and offsets.
#include <cmath>
#include <cstring>

#include "q16_dequant.hpp"
#include "testlib.hpp"

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

// the plain conversion: weight i of word x as the integer it stores, then fmaf(s, q, o)
float plain(int type, uint32_t x, int i, float s, float o) {
  const float q = type == qw::q16::kW4 ? (float)((x >> (4 * i)) & 0xF) : (float)(int8_t)((x >> (8 * i)) & 0xFF);
  return std::fma(s, q, o);
}

int check_word(int type, uint32_t x, float s, float o) {
  float f[8];
  const int n = type == qw::q16::kW4 ? 8 : 4;
  if (type == qw::q16::kW4) qw::q16::dequant_word<qw::q16::kW4>(x, s, o, f);
  else qw::q16::dequant_word<qw::q16::kW8>(x, s, o, f);
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += !same_bits(f[i], plain(type, x, i, s, o));
  return bad;
}

}  // namespace

int main() {
  Rng rng(16);
  int bad = 0;
  // every code value in every position (scale 1, offset 0: q itself), then with a scale and an offset
  bad = 0;
  for (int pos = 0; pos < 8; ++pos)
    for (uint32_t v = 0; v < 16; ++v) bad += check_word(qw::q16::kW4, v << (4 * pos), 1.f, 0.f) + check_word(qw::q16::kW4, v << (4 * pos), 0.0173f, -0.131f);
  for (int pos = 0; pos < 4; ++pos)
    for (uint32_t v = 0; v < 256; ++v) bad += check_word(qw::q16::kW8, v << (8 * pos), 1.f, 0.f) + check_word(qw::q16::kW8, v << (8 * pos), 0.0173f, 0.f);
  CHECK(bad == 0, "%d weights of single-code words differ from the plain conversion", bad);
  bad = 0;
  for (int t = 0; t < 20000; ++t) {
    const uint32_t x = (uint32_t)(rng.uniform() * 4294967296.0);
    const float s = (float)(rng.normal() * 0.05), o = (float)(rng.normal() * 0.2);
    bad += check_word(qw::q16::kW4, x, s, o) + check_word(qw::q16::kW8, x, s, t % 2 ? o : 0.f);
  }
  CHECK(bad == 0, "%d weights of random words differ from the plain conversion", bad);
  // QW_GEMV_Q16_FOLD: unpack_word(x, f, z) gives q - z exactly for every code in every position and every z; fold_zero_point
  // accepts exactly the (s, o) pairs with o == -s z (z in 0..15; W8: o == 0), and for those s (q - z) is the default's
  // weight fmaf(s, q, o) bit for bit (what makes the fold's chunk sum a re-association of the same weights)
  bad = 0;
  for (int pos = 0; pos < 8; ++pos)
    for (uint32_t v = 0; v < 16; ++v)
      for (int z = 0; z < 16; ++z) {
        float f[8];
        qw::kvq::unpack_word<qw::q16::kW4>(v << (4 * pos), f, (float)z);
        for (int i = 0; i < 8; ++i) bad += !same_bits(f[i], (float)((i == pos ? (int)v : 0) - z));
      }
  for (int pos = 0; pos < 4; ++pos)
    for (uint32_t v = 0; v < 256; ++v) {
      float f[4];
      qw::kvq::unpack_word<qw::q16::kW8>(v << (8 * pos), f, 0.f);
      for (int i = 0; i < 4; ++i) bad += !same_bits(f[i], i == pos ? (float)(int8_t)v : 0.f);
    }
  CHECK(bad == 0, "%d unpack_word values minus z differ from q - z", bad);
  int zp_bad = 0, zp_seen = 0;
  for (int t = 0; t < 20000; ++t) {
    // scales of 16 significant bits, as the requantizer makes them (requant.hpp up16): s z exact, o = -s z exact
    const float sc = (float)std::ldexp(std::round(std::ldexp(std::fabs(rng.normal()) * 0.05 + 1e-4, 20)), -20);
    const int zi = t % 16;
    const float o = t % 3 == 2 ? (float)(rng.normal() * 0.1) : -(sc * (float)zi);  // a third: arbitrary offsets
    float z = -1.f;
    const bool zp = qw::q16::fold_zero_point<qw::q16::kW4>(sc, o, &z);
    const bool exact = std::fma(sc, (float)std::lrint(-o / sc), o) == 0.f && -o / sc >= -0.5f && -o / sc <= 15.5f;
    zp_bad += zp != exact;
    if (!zp) continue;
    ++zp_seen;
    for (int q = 0; q < 16; ++q) zp_bad += !same_bits(sc * ((float)q - z), std::fma(sc, (float)q, o));
  }
  CHECK(zp_bad == 0 && zp_seen > 10000, "fold_zero_point: %d mismatches (%d zero points seen)", zp_bad, zp_seen);
  float zz = 1.f;
  CHECK(qw::q16::fold_zero_point<qw::q16::kW8>(0.02f, 0.f, &zz) && zz == 0.f &&
            !qw::q16::fold_zero_point<qw::q16::kW8>(0.02f, 0.001f, &zz) &&
            qw::q16::fold_zero_point<qw::q16::kW4>(0.f, 0.f, &zz) && !qw::q16::fold_zero_point<qw::q16::kW4>(0.f, 0.5f, &zz),
        "fold_zero_point edge cases");
  return finish("test_q16");
}
