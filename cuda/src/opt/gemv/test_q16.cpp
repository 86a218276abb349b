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
  return finish("test_q16");
}
