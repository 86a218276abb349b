// test_kv_unpack.cpp — the code unpacking and shared-memory placement of the CUDA attention v2 (kv_unpack.hpp,
// the same host/device functions kv_quant_attn2.cu runs), against kv_format.hpp on the CPU:
//  - unpack_word: every word of random q8 / kivi4 / kivi2 code rows gives the codes of its channels in channel
//    order (q8: the int8 code; kivi: kivi_get), exactly; every byte value of q8 and every code value of kivi;
//  - LaneCodes: lane L's E = d/32 codes in P.V are channels E*L .. E*L+E-1, for d 32 / 64 / 128;
//  - kunit_offset: within a staged chunk of 32 K rows the units of a row are a permutation of the row's bytes
//    (no overlap, nothing outside), and 8 lanes (rows 8i .. 8i+7) reading the same logical 16-byte unit touch 8
//    different 16-byte bank groups (conflict-free) when rows are >= 16 bytes.
#include <cstdio>
#include <set>
#include <vector>

#include "kv_unpack.hpp"
#include "testlib.hpp"

using namespace qw;

namespace {

uint32_t xorshift(uint32_t &s) {
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}

// The code of channel c of a packed row as kv_format.hpp defines it.
float ref_code(const uint8_t *row, int c, int bits) {
  if (bits == 8) return float(int8_t(row[c]));
  return float(kvq::kivi_get(row, c, bits));
}

template <int BITS>
void test_words_and_lanes(int d, uint32_t &seed) {
  const int cr = d * BITS / 8, epw = 32 / BITS, e_per_lane = d / 32;
  std::vector<uint8_t> row(static_cast<size_t>(cr));
  int bad_words = 0, bad_lanes = 0;
  for (int rep = 0; rep < 200; ++rep) {
    for (int i = 0; i < cr; ++i) row[size_t(i)] = uint8_t(rep < 2 ? (rep ? 0xFF : 0x00) : xorshift(seed));
    if (rep == 2)  // a counting pattern (q8 codes of both signs next to each other)
      for (int i = 0; i < cr; ++i) row[size_t(i)] = uint8_t(i * 37 + 11);
    for (int w = 0; w < cr / 4; ++w) {
      uint32_t word;
      std::memcpy(&word, &row[size_t(4 * w)], 4);
      float x[16];
      kvq::unpack_word<BITS>(word, x);
      for (int e = 0; e < epw; ++e) bad_words += x[e] != ref_code(row.data(), w * epw + e, BITS);
    }
    for (int lane = 0; lane < 32; ++lane) {
      const kvq::LaneCodes<BITS> lc(e_per_lane, lane);
      uint32_t word;
      std::memcpy(&word, &row[size_t(4 * lc.wi)], 4);
      for (int e = 0; e < e_per_lane; ++e) bad_lanes += lc.code(word, e) != ref_code(row.data(), e_per_lane * lane + e, BITS);
    }
  }
  CHECK(bad_words == 0, "unpack_word<%d> d %d: %d codes differ from kv_format.hpp", BITS, d, bad_words);
  CHECK(bad_lanes == 0, "LaneCodes<%d> d %d: %d codes differ from kv_format.hpp", BITS, d, bad_lanes);
}

void test_q8_all_bytes() {
  int bad = 0;
  for (int b = 0; b < 256; ++b) {
    const uint32_t word = uint32_t(b) * 0x01010101u;
    float x[4];
    kvq::unpack_word<8>(word, x);
    for (int e = 0; e < 4; ++e) bad += x[e] != float(int8_t(b));
  }
  CHECK(bad == 0, "unpack_word<8>: %d of the 256 byte values wrong", bad);
}

void test_kunit(int cr) {
  const int cu = cr < 16 ? cr : 16, upr = cr / cu;
  std::set<int> seen;
  int outside = 0;
  for (int row = 0; row < 32; ++row)
    for (int col = 0; col < upr; ++col) {
      const int o = kvq::kunit_offset(cr, row, col);
      outside += o < row * cr || o + cu > (row + 1) * cr || o % cu != 0;
      seen.insert(o);
    }
  CHECK(outside == 0 && int(seen.size()) == 32 * upr, "kunit_offset cr %d: %d units outside their row, %zu distinct of %d", cr,
        outside, seen.size(), 32 * upr);
  if (cr < 16) return;  // 8-byte units (kivi2 d 32): not swizzled
  int conflicts = 0;
  for (int col = 0; col < upr; ++col)
    for (int r0 = 0; r0 < 32; r0 += 8) {
      std::set<int> groups;  // 16-byte bank groups (offset mod 128 / 16) of the 8 lanes of a wavefront
      for (int row = r0; row < r0 + 8; ++row) groups.insert((kvq::kunit_offset(cr, row, col) % 128) / 16);
      conflicts += 8 - int(groups.size());
    }
  CHECK(conflicts == 0, "kunit_offset cr %d: %d bank-group collisions", cr, conflicts);
}

}  // namespace

int main() {
  uint32_t seed = 0x2545F491u;
  test_q8_all_bytes();
  for (int d : {32, 64, 128}) {
    test_words_and_lanes<8>(d, seed);
    test_words_and_lanes<4>(d, seed);
    test_words_and_lanes<2>(d, seed);
  }
  for (int cr : {8, 16, 32, 64, 128}) test_kunit(cr);
  if (g_failures) {
    std::printf("test_kv_unpack: %d failure(s)\n", g_failures);
    return 1;
  }
  std::printf("test_kv_unpack: all passed\n");
  return 0;
}
