// test_two_level.cpp — two_level.hpp on the CPU (the kernels' side, group_so in common.cuh, runs on a GPU: the lab's
// `two-level` rows compare its outputs with the fp32-scale path's bit for bit).
//  1. Through the real converter (front/convert.cpp convert_tensor) on random GGUF blocks: Q4_K and Q5_K (codes in
//     both halves of the 12-byte scale field) and Q6_K (negative int8 scales) give a two-level form whose rebuilt
//     scale and offset equal the converter's fp32 arrays bit for bit, for every group.
//  2. Forms that have none are refused, whole: random fp32 scales (our q4 / q8 requantization), Q8_0 and Q4_0
//     (one fp16 d a group, no common factor in a block), a single bad group in an otherwise good matrix.
//  3. Shapes: cols not a multiple of 256, groups of 512 (wider than a block) and 4 (64 a block) refused; 128, 64 and
//     8 (2, 4, 32 a block) taken.
//  4. Zero blocks (all scales and offsets +0 or -0): found, the signs kept.
#include <cstring>
#include <vector>

#include "convert.hpp"
#include "testlib.hpp"
#include "two_level.hpp"

using namespace qwc;

namespace {

int64_t rebuild_mismatches(const qw::NativeTensor &t, const TwoLevel &tl) {
  int64_t bad = 0;
  for (size_t g = 0; g < t.scale.size(); ++g) {
    const uint16_t c = tl.codes[g];
    const size_t b = g >> tl.shift;
    bad += !tl_same_bits(two_level_scale(tl.dm[2 * b], c), t.scale[g]);
    bad += !tl_same_bits(two_level_offset(tl.dm[2 * b + 1], c), t.offset[g]);
  }
  return bad;
}

void check_converted(Rng &r, int32_t type, int64_t rows, int64_t cols, bool expect) {
  const std::vector<uint8_t> raw = random_ggml(r, type, rows * cols);
  const qw::NativeTensor t = qw::convert_tensor("x", type, rows, cols, raw.data(), false);
  TwoLevel tl;
  const bool ok = make_two_level(t.scale.data(), t.offset.data(), t.rows, t.cols, t.group, &tl);
  CHECK(ok == expect, "%s %lldx%lld (group %d): two-level %s, expected %s", qw::ggml_type_name(type), (long long)rows,
        (long long)cols, t.group, ok ? "found" : "refused", expect ? "found" : "refused");
  if (!ok) {
    CHECK(tl.codes.empty() && tl.dm.empty(), "a refusal leaves the output empty");
    return;
  }
  CHECK(tl.codes.size() == t.scale.size() && tl.dm.size() == size_t(2 * rows * cols / 256), "sizes");
  CHECK((1 << tl.shift) == 256 / t.group, "shift %d for group %d", tl.shift, t.group);
  const int64_t bad = rebuild_mismatches(t, tl);
  CHECK(bad == 0, "%s: %lld rebuilt scales / offsets differ from the converter's bits", qw::ggml_type_name(type),
        (long long)bad);
}

}  // namespace

int main() {
  Rng r(23);
  // 1. the K-quants through the converter: found, bitwise
  for (int32_t t : {QW_GGML_Q4_K, QW_GGML_Q5_K, QW_GGML_Q6_K})
    for (int64_t cols : {256, 3584}) check_converted(r, t, 7, cols, true);
  // 2. no common factor: refused
  check_converted(r, QW_GGML_Q8_0, 6, 512, false);
  check_converted(r, QW_GGML_Q4_0, 6, 512, false);
  {
    const int64_t rows = 4, cols = 512, group = 32, ng = rows * cols / group;
    std::vector<float> s(ng), o(ng);
    for (int64_t g = 0; g < ng; ++g) s[g] = 0.01f + 0.001f * r.normal(), o[g] = -8.f * s[g];  // a q4 requant: s, -8 s
    TwoLevel tl;
    CHECK(!make_two_level(s.data(), o.data(), rows, cols, (int32_t)group, &tl), "random fp32 scales are refused");
  }
  {
    // one bad group among K-quant ones: the whole matrix is refused (the kernels read one form per matrix)
    const std::vector<uint8_t> raw = random_ggml(r, QW_GGML_Q4_K, 3 * 512);
    qw::NativeTensor t = qw::convert_tensor("x", QW_GGML_Q4_K, 3, 512, raw.data(), false);
    TwoLevel tl;
    CHECK(make_two_level(t.scale.data(), t.offset.data(), 3, 512, t.group, &tl), "the clean matrix is found");
    t.scale[37] = std::nextafter(t.scale[37], 1.f);
    CHECK(!make_two_level(t.scale.data(), t.offset.data(), 3, 512, t.group, &tl), "one scale off by an ulp: refused");
    CHECK(tl.codes.empty(), "and left empty");
  }
  // 3. shapes
  {
    std::vector<float> s(64, 0.5f), o(64, -0.f);
    TwoLevel tl;
    CHECK(!make_two_level(s.data(), o.data(), 2, 1024 - 32, 32, &tl), "cols not a multiple of 256");
    CHECK(!make_two_level(s.data(), o.data(), 1, 512, 512, &tl), "a group wider than a block");
    CHECK(make_two_level(s.data(), o.data(), 2, 512, 128, &tl) && tl.shift == 1, "groups of 128: 2 a block");
    CHECK(make_two_level(s.data(), o.data(), 1, 1024, 64, &tl) && tl.shift == 2, "groups of 64: 4 a block");
    CHECK(make_two_level(s.data(), o.data(), 1, 512, 8, &tl) && tl.shift == 5, "groups of 8: 32 a block, the most");
    std::vector<float> s4(128, 0.5f), o4(128, -0.f);
    CHECK(!make_two_level(s4.data(), o4.data(), 1, 512, 4, &tl), "groups of 4: 64 a block, too many");
  }
  // 4. zero blocks: a block's zeros keep their sign (+0 scales in one block, -0 in the other; -0 offsets, as the
  // converter's -(dmin * 0)); a block mixing +0 and -0 has no form (F * 0 has F's sign), which no converter block makes
  {
    const int64_t rows = 2, cols = 256, group = 16, ng = rows * cols / group;
    std::vector<float> s(ng, 0.f), o(ng, -0.f);
    for (int64_t g = ng / 2; g < ng; ++g) s[g] = -0.f;
    TwoLevel tl;
    const bool ok = make_two_level(s.data(), o.data(), rows, cols, (int32_t)group, &tl);
    CHECK(ok, "zero blocks are found");
    if (ok)
      for (int64_t g = 0; g < ng; ++g)
        CHECK(tl_same_bits(two_level_scale(tl.dm[2 * (g >> tl.shift)], tl.codes[g]), s[g]) &&
                  tl_same_bits(two_level_offset(tl.dm[2 * (g >> tl.shift) + 1], tl.codes[g]), o[g]),
              "zero block group %lld", (long long)g);
    s[3] = -0.f;
    CHECK(!make_two_level(s.data(), o.data(), rows, cols, (int32_t)group, &tl), "+0 and -0 in one block: refused");
  }
  return finish("test_two_level");
}
