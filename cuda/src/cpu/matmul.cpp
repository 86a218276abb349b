// matmul.cpp — y[T, rows] = x[T, cols] W^T (+ bias) for F32 / F16 / BF16 / W8 / W4 weights.
//
// Work split: the rows of every job of a call (q, k and v are one call) are cut into chunks that the pool
// threads take from a shared counter (see matmul()), so no barrier is needed between jobs.
//
// Register tiling (AVX2 + FMA, 16 ymm registers): a micro-kernel computes RB rows x NT tokens of dot
// products at once (see rows() for the row order). Decode (T == 1) uses 4 rows x 1 token: four
// independent FMA chains hide the FMA latency and one x load feeds 4 rows. Prefill and batched decode use
// 2 rows x 2 tokens, so every weight vector loaded (and converted from f16/bf16/int8/int4) feeds two
// tokens and every x vector two rows; tokens pass in tiles of kTokenTile over blocks of kBlock rows that
// stay in L1/L2 meanwhile. That reuse is why prefill is several times faster per token than decode.
//
// With AVX-512 (run-time check; QW_CPU_NO_AVX512=1 turns it off), T >= kDequantMinT goes to the packed
// prefill kernels instead: gemm_avx512.cpp (exact fp32 arm: weight rows dequantized exactly in L2-sized
// blocks, 4 rows x 6 tokens of zmm accumulators) or, for W8/W4 with toggle actQuant = int8 on a VNNI CPU,
// the actQuant arm (opt/act_quant/: activations quantized per group, vpdpbusd). Row chunks are then multiples of 32.
//
// Grouped weights (W8/W4, w = scale * q + offset per group of G columns): the dot is folded as
//   sum_g (scale_g * sum_{c in g} q_c x_c) + sum_g offset_g * (sum_{c in g} x_c)
// i.e. integer codes are converted to float and accumulated per group, multiplied by the group scale
// once per group, and the offset term uses per-token group sums of x computed once per call (skipped
// when every offset is ±0, as for Q8_0, Q5_0 and Q6_K). This is an fp32 dot product of the exact weights,
// only summed in a different order than dequantize-then-dot.
//
// Vectorization evidence: the loops are AVX2 intrinsics, so they do not depend on the auto-vectorizer.
// `objdump -d build/cpu/matmul.o | grep -c 'vfmadd...ps.*ymm'` gives 152 (5 weight types x the tile shapes,
// group-scale FMAs, the dequantize-then-fp32 prefill blocks; 12 vpmovsxbd, 16 vcvtph2ps), matmul_avx512.o
// has 20 zmm FMAs, attention.o 69 ymm FMAs. The W8 decode loop body is vpmovsxbd (load) / vcvtdq2ps /
// vfmadd231ps per 8 (or 16) weights (read in the asm). rope.cpp, residual_add and the RMSNorm output loop
// auto-vectorize (g++ -fopt-info-vec-optimized: "loop vectorized using 32 byte vectors").
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QW_CPU_AVX2 1
#endif

#include "act_quant_cpu.hpp"
#include "convert.hpp"
#include "cpu.hpp"
#include "half.hpp"
#include "tile_cpu.hpp"

namespace qw {
namespace cpu {

namespace {

constexpr int64_t kTokenTile = 32;  // tokens per pass over a chunk's weight rows

struct Ctx {
  const MatJob *job;
  const float *x;
  int64_t T, x_stride, cols;
  int32_t G;                 // group size (grouped types) or cols
  int64_t gpr;               // groups per row
  const float *xsum;         // [T, gpr] group sums of x, or nullptr when offsets are all zero
  const QuantAct *qa;        // int8-activation arm: x quantized per group of G, else nullptr
  const CpuTile *tile;       // blocking of the call (toggle tile, opt/tile/tile_cpu.hpp): rb, kc, l2k here
};

#ifdef QW_CPU_AVX2

// Software prefetch distance for quantized rows (bytes ahead in each row stream). Quantized rows need
// more arithmetic per byte, so the hardware prefetcher alone left L3-resident weights (a small model)
// latency-bound; fetching ~1 KiB ahead in each of the 4 row streams keeps the lines arriving in time.
constexpr int kPrefetch = 1024;

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Four hsum at once, bit for bit: the same adds (128-bit halves, lanes {2,3} onto {0,1}, lane 1 onto lane 0) on four
// rows packed into two vectors, 8 shuffles/adds instead of 4 x 6 (a + b == b + a exactly: only the pairing matters).
// Decode rows of a small model are short (256 columns: 32 FMAs), so the reduction was a visible share of a row.
// test_tile checks rb 4/8 == rb 1 bitwise.
inline void hsum4(const __m256 *a, float *y) {
  const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a[0], a[1], 0x20), _mm256_permute2f128_ps(a[0], a[1], 0x31));
  const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(a[2], a[3], 0x20), _mm256_permute2f128_ps(a[2], a[3], 0x31));
  // per 128-bit lane: [a0 a1 c0 c1] + [a2 a3 c2 c3] (low lane), the same for b and d (high lane)
  const __m256 w = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));
  const __m256 z = _mm256_add_ps(w, _mm256_movehdup_ps(w));  // lane 0 + lane 1 in lanes 0, 2, 4, 6
  alignas(32) float l[8];
  _mm256_store_ps(l, z);
  constexpr int lane[4] = {0, 4, 2, 6};  // rows a, b, c, d
  for (int k = 0; k < 4; ++k) y[k] = l[lane[k]];
}

// Loaders: 8 consecutive weights of row r starting at column c, as fp32 (exact for every type).
struct LF32 {
  void prefetch(int64_t, int64_t) const {}  // the hardware prefetcher keeps up with float rows
  const float *p;
  int64_t cols;
  __m256 load(int64_t r, int64_t c) const { return _mm256_loadu_ps(p + r * cols + c); }
};
struct LF16 {
  void prefetch(int64_t, int64_t) const {}  // the hardware prefetcher keeps up with float rows
  const uint16_t *p;
  int64_t cols;
  __m256 load(int64_t r, int64_t c) const {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + r * cols + c)));
  }
};
struct LBF16 {
  void prefetch(int64_t, int64_t) const {}  // the hardware prefetcher keeps up with float rows
  const uint16_t *p;
  int64_t cols;
  __m256 load(int64_t r, int64_t c) const {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + r * cols + c)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
};
struct LW8 {
  const int8_t *p;
  int64_t cols;
  void prefetch(int64_t r, int64_t c) const { _mm_prefetch(reinterpret_cast<const char *>(p + r * cols + c) + kPrefetch, _MM_HINT_T0); }
  __m256 load(int64_t r, int64_t c) const {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(p + r * cols + c));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  }
};
struct LW4 {
  const uint8_t *p;
  int64_t cols;
  void prefetch(int64_t r, int64_t c) const { _mm_prefetch(reinterpret_cast<const char *>(p + (r * cols + c) / 2) + kPrefetch, _MM_HINT_T0); }
  __m256 load(int64_t r, int64_t c) const {
    int32_t b;
    std::memcpy(&b, p + (r * cols + c) / 2, 4);  // 8 codes, low nibble = even column
    const __m128i v = _mm_cvtsi32_si128(b), m = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
  }
};

// Columns past the last multiple of 8 (only F32/F16/BF16 rows can have them), added to y. Out of line and
// cold: it allocates.
template <int RB, int NT>
__attribute__((noinline, cold)) void tail_dots(const Ctx &cx, int64_t r, int64_t rs, const float *const *xr,
                                               float (*y)[NT]) {
  const int64_t cols = cx.cols, c8 = cols & ~int64_t(7);
  std::vector<float> wrow(static_cast<size_t>(cols));
  for (int i = 0; i < RB; ++i) {
    dequant_rows(wrow.data(), *cx.job->w.t, r + i * rs, 1);
    for (int j = 0; j < NT; ++j)
      for (int64_t c = c8; c < cols; ++c) y[i][j] += wrow[size_t(c)] * xr[j][c];
  }
}

// RB rows (r, r + rs, ...) x NT tokens starting at t.
template <int RB, int NT, bool GROUPED, class L>
inline void tile(const L &ld, const Ctx &cx, int64_t r, int64_t rs, int64_t t) {
  const int64_t cols = cx.cols;
  const float *xr[NT];
  for (int j = 0; j < NT; ++j) xr[j] = cx.x + (t + j) * cx.x_stride;
  __m256 acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  if (!GROUPED) {
    const int64_t c8 = cols & ~int64_t(7);
    for (int64_t c = 0; c < c8; c += 8) {
      __m256 xv[NT];
      for (int j = 0; j < NT; ++j) xv[j] = _mm256_loadu_ps(xr[j] + c);
      for (int i = 0; i < RB; ++i) {
        const __m256 w = ld.load(r + i * rs, c);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_fmadd_ps(w, xv[j], acc[i][j]);
      }
    }
  } else {
    const float *sc = cx.job->w.t->scale.data();
    for (int64_t g = 0; g < cx.gpr; ++g) {
      __m256 ag[RB][NT];
      for (int i = 0; i < RB; ++i)
        for (int j = 0; j < NT; ++j) ag[i][j] = _mm256_setzero_ps();
      const int64_t c0 = g * cx.G;
      for (int i = 0; i < RB; ++i) ld.prefetch(r + i * rs, c0);
      for (int64_t c = c0; c < c0 + cx.G; c += 8) {
        __m256 xv[NT];
        for (int j = 0; j < NT; ++j) xv[j] = _mm256_loadu_ps(xr[j] + c);
        for (int i = 0; i < RB; ++i) {
          const __m256 w = ld.load(r + i * rs, c);
          for (int j = 0; j < NT; ++j) ag[i][j] = _mm256_fmadd_ps(w, xv[j], ag[i][j]);
        }
      }
      for (int i = 0; i < RB; ++i) {
        const __m256 s = _mm256_set1_ps(sc[(r + i * rs) * cx.gpr + g]);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_fmadd_ps(s, ag[i][j], acc[i][j]);
      }
    }
  }
  // Reduce first, so no accumulator is live across the (rare) tail call below: keeping them live made
  // g++ spill all accumulators to the stack inside the hot loop.
  float y[RB][NT];
  if constexpr (NT == 1 && RB % 4 == 0) {
    for (int i = 0; i < RB; i += 4) {
      const __m256 a4[4] = {acc[i][0], acc[i + 1][0], acc[i + 2][0], acc[i + 3][0]};
      float s4[4];
      hsum4(a4, s4);
      for (int k = 0; k < 4; ++k) y[i + k][0] = s4[k];
    }
  } else {
    for (int i = 0; i < RB; ++i)
      for (int j = 0; j < NT; ++j) y[i][j] = hsum(acc[i][j]);
  }
  if (!GROUPED && (cols & 7)) tail_dots<RB, NT>(cx, r, rs, xr, y);
  const MatJob &jb = *cx.job;
  for (int i = 0; i < RB; ++i) {
    const float b = jb.bias ? jb.bias[r + i * rs] : 0.0f;
    for (int j = 0; j < NT; ++j) {
      float v = y[i][j];
      if (GROUPED && cx.xsum) {
        v += offset_dot(jb.w.t->offset.data() + (r + i * rs) * cx.gpr, cx.xsum + (t + j) * cx.gpr, cx.gpr);
      }
      jb.out[(t + j) * jb.out_stride + r + i * rs] = v + b;
    }
  }
}

// Row order. A thread works on a chunk [r0, r1) of a job's rows at a time (see matmul()). Decode (T == 1)
// splits it into 4 equal sub-ranges and computes one row of each at a time (tile<4, 1>): four FMA chains
// for ILP and four long sequential weight streams, which keeps enough cache-line fetches in flight to run
// at the DRAM roofline. (Four ADJACENT rows were four streams only ~1 KiB long for 896-wide rows, which the hardware
// prefetcher kept losing: 13 GB/s instead of 21 on 2 cores; one row at a time was a single stream: 12.6.)
// Batched decode and prefill (T >= 2) walk blocks of kBlock rows, two strided streams per block, and pass
// every token tile over a block while its rows are still in L1/L2.
constexpr int64_t kBlock = 64;
constexpr int64_t kDequantBlock = 16;  // rows dequantized at once for prefill (16 x 4864 fp32 = 311 KiB)

// fp32 rows of a scratch block holding rows [base, base + n) of the weight.
struct LBlock {
  const float *p;
  int64_t cols, base;
  void prefetch(int64_t, int64_t) const {}
  __m256 load(int64_t r, int64_t c) const { return _mm256_loadu_ps(p + (r - base) * cols + c); }
};

// Dequantizes rows [r0, r0 + n) to fp32 exactly (w = scale * q + offset: a multiply, then an add).
template <bool GROUPED, class L>
void dequant_block(const L &ld, const Ctx &cx, int64_t r0, int64_t n, float *out) {
  const int64_t cols = cx.cols;
  for (int64_t r = r0; r < r0 + n; ++r) {
    float *o = out + (r - r0) * cols;
    const float *sc = GROUPED ? cx.job->w.t->scale.data() + r * cx.gpr : nullptr;
    const float *of = GROUPED ? cx.job->w.t->offset.data() + r * cx.gpr : nullptr;
    for (int64_t c = 0; c < cols; c += 8) {
      __m256 w = ld.load(r, c);
      if (GROUPED) {
        const int64_t g = c / cx.G;
        w = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(sc[g]), w), _mm256_set1_ps(of[g]));
      }
      _mm256_storeu_ps(o + c, w);
    }
  }
}

// All token tiles over the rows [b0, b1) of one block: two strided row streams, NT tokens per tile
// (4 for plain fp32 rows: 8 accumulators + 4 x + 1 w registers; 2 for grouped rows, whose per-group
// accumulators double the register count).
template <bool GROUPED, class L>
void block_tokens(const L &ld, const Ctx &cx, int64_t b0, int64_t b1) {
  constexpr int NT = GROUPED ? 2 : 4;
  const int64_t q = (b1 - b0) / 2;
  for (int64_t t0 = 0; t0 < cx.T; t0 += kTokenTile) {
    const int64_t t1 = std::min(cx.T, t0 + kTokenTile);
    for (int64_t i = 0; i < q; ++i) {
      int64_t t = t0;
      for (; t + NT <= t1; t += NT) tile<2, NT, GROUPED>(ld, cx, b0 + i, q, t);
      for (; t + 2 <= t1; t += 2) tile<2, 2, GROUPED>(ld, cx, b0 + i, q, t);
      if (t < t1) tile<2, 1, GROUPED>(ld, cx, b0 + i, q, t);
    }
    for (int64_t r = b0 + 2 * q; r < b1; ++r) {
      int64_t t = t0;
      for (; t + 2 <= t1; t += 2) tile<1, 2, GROUPED>(ld, cx, r, 0, t);
      if (t < t1) tile<1, 1, GROUPED>(ld, cx, r, 0, t);
    }
  }
}

// Prefill with AVX-512 (gemm_avx512.cpp): F32 rows in place, other types dequantized exactly in blocks
// of rows that stay in L2 (about 512 KiB of fp32), every block then passed over by all T tokens.
template <bool GROUPED, class L>
void gemm_rows(const L &ld, const Ctx &cx, int64_t r0, int64_t r1) {
  const MatJob &jb = *cx.job;
  const NativeTensor &w = *jb.w.t;
  const int64_t cols = cx.cols;
  float *out = jb.out + r0;
  const int64_t nb = std::max<int64_t>(4, (cx.tile->l2k * 1024 / (4 * cols)) / 4 * 4);
  thread_local std::vector<float> scratch;
  if (w.type != NativeType::F32 && scratch.size() < size_t(nb * cols)) scratch.resize(size_t(nb * cols));
  for (int64_t b0 = r0; b0 < r1; b0 += nb) {
    const int64_t n = std::min(r1, b0 + nb) - b0;
    const float *wb = reinterpret_cast<const float *>(w.data.data()) + b0 * cols;
    if (w.type != NativeType::F32) {
      if (cols % 8 == 0)
        dequant_block<GROUPED>(ld, cx, b0, n, scratch.data());
      else
        dequant_rows(scratch.data(), w, b0, n);
      wb = scratch.data();
    }
    gemm_f32_avx512(wb, cols, n, cx.x, cx.x_stride, cx.T, cols, jb.out + b0, jb.out_stride, cx.tile->kc);
  }
  if (jb.bias)
    for (int64_t t = 0; t < cx.T; ++t)
      for (int64_t r = 0; r < r1 - r0; ++r) out[t * jb.out_stride + r] += jb.bias[r0 + r];
}

// Decode: RB equal sub-ranges of [r0, r1), one row of each at a time (RB = 4 fixed: see the row order above; toggle
// tile may pick another RB per shape). Each row keeps its own accumulator chain, so RB never changes a result.
template <int RB, bool GROUPED, class L>
void gemv_streams(const L &ld, const Ctx &cx, int64_t r0, int64_t r1) {
  const int64_t q = (r1 - r0) / RB;
  for (int64_t i = 0; i < q; ++i) tile<RB, 1, GROUPED>(ld, cx, r0 + i, q, 0);
  for (int64_t r = r0 + RB * q; r < r1; ++r) tile<1, 1, GROUPED>(ld, cx, r, 0, 0);
}

template <bool GROUPED, class L>
void rows(const L &ld, const Ctx &cx, int64_t r0, int64_t r1) {
  static const bool avx512 = cpu_has_avx512();
  if (avx512 && cx.T >= kDequantMinT) {
    gemm_rows<GROUPED>(ld, cx, r0, r1);
    return;
  }
  if (cx.T == 1) {
    switch (cx.tile->rb) {
      case 1: gemv_streams<1, GROUPED>(ld, cx, r0, r1); break;
      case 2: gemv_streams<2, GROUPED>(ld, cx, r0, r1); break;
      case 8: gemv_streams<8, GROUPED>(ld, cx, r0, r1); break;
      default: gemv_streams<4, GROUPED>(ld, cx, r0, r1); break;
    }
    return;
  }
  // Prefill of converted types: dequantize a block of rows once (exact values), then run the fp32 kernel
  // over it for every token; the conversion cost is shared by all T tokens.
  const bool convert = cx.job->w.t->type != NativeType::F32 && cx.T >= kDequantMinT && cx.cols % 8 == 0;
  if (convert) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < size_t(kDequantBlock * cx.cols)) scratch.resize(size_t(kDequantBlock * cx.cols));
    Ctx flat = cx;  // fp32 rows with their offsets applied: no groups, no offset term
    flat.G = int32_t(cx.cols);
    flat.gpr = 1;
    flat.xsum = nullptr;
    for (int64_t b0 = r0; b0 < r1; b0 += kDequantBlock) {
      const int64_t b1 = std::min(r1, b0 + kDequantBlock);
      dequant_block<GROUPED>(ld, cx, b0, b1 - b0, scratch.data());
      block_tokens<false>(LBlock{scratch.data(), cx.cols, b0}, flat, b0, b1);
    }
    return;
  }
  for (int64_t b0 = r0; b0 < r1; b0 += kBlock) block_tokens<GROUPED>(ld, cx, b0, std::min(r1, b0 + kBlock));
}

void run_rows(const Ctx &cx, int64_t r0, int64_t r1) {
  const NativeTensor &w = *cx.job->w.t;
  const int64_t cols = w.cols;
  if (cx.qa) {
    gemm_act_quant(*cx.job, *cx.qa, cx.xsum, r0, r1);
    return;
  }
  static const bool avx512 = cpu_has_avx512();
  if (avx512 && cx.T < kDequantMinT && (w.type == NativeType::W8 || w.type == NativeType::W4)) {
    gemv_grouped_avx512(*cx.job, cx.x, cx.x_stride, cx.T, cx.xsum, r0, r1, cx.tile->rb);
    return;
  }
  if (avx512 && cx.T < kDequantMinT && (w.type == NativeType::BF16 || w.type == NativeType::F16)) {
    gemv_half_avx512(*cx.job, cx.x, cx.x_stride, cx.T, r0, r1, cx.tile->rb);
    return;
  }
  switch (w.type) {
    case NativeType::F32: rows<false>(LF32{reinterpret_cast<const float *>(w.data.data()), cols}, cx, r0, r1); break;
    case NativeType::F16: rows<false>(LF16{reinterpret_cast<const uint16_t *>(w.data.data()), cols}, cx, r0, r1); break;
    case NativeType::BF16: rows<false>(LBF16{reinterpret_cast<const uint16_t *>(w.data.data()), cols}, cx, r0, r1); break;
    case NativeType::W8: rows<true>(LW8{reinterpret_cast<const int8_t *>(w.data.data()), cols}, cx, r0, r1); break;
    case NativeType::W4: rows<true>(LW4{w.data.data(), cols}, cx, r0, r1); break;
  }
}

#else  // portable fallback: dequantize a row, then a plain dot product per token

void run_rows(const Ctx &cx, int64_t r0, int64_t r1) {
  const MatJob &jb = *cx.job;
  std::vector<float> wrow(size_t(cx.cols));
  for (int64_t r = r0; r < r1; ++r) {
    dequant_rows(wrow.data(), *jb.w.t, r, 1);
    for (int64_t t = 0; t < cx.T; ++t) {
      const float *x = cx.x + t * cx.x_stride;
      float s = 0;
      for (int64_t c = 0; c < cx.cols; ++c) s += wrow[size_t(c)] * x[c];
      jb.out[t * jb.out_stride + r] = s + (jb.bias ? jb.bias[r] : 0.0f);
    }
  }
}

#endif

}  // namespace

bool cpu_has_avx512() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  // QW_CPU_NO_AVX512=1 forces the AVX2 kernels (for A/B measurements and for tests of both paths). Read once per
  // process, like the kernels' own static copies: kernel names are asked for on every op, and getenv scans the
  // environment.
  static const bool on = [] {
    const char *off = std::getenv("QW_CPU_NO_AVX512");
    if (off && off[0] == '1') return false;
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }();
  return on;
#else
  return false;
#endif
}

// Kernel names of grouped weights carry the group size (16, 32 from GGUF; 128 from the weights toggle).
static const char *by_group(int32_t g, const char *g16, const char *g32, const char *g128) {
  return g == 16 ? g16 : g == 128 ? g128 : g32;
}

const char *matmul_kernel_name(const NativeTensor &t, int64_t T, ActQuant act_quant) {
  const bool gemv = T == 1;
  const int32_t g = t.group;
  if (act_quant_runs(act_quant, t, T)) return act_quant_kernel_name(act_quant, t, T);
  if (!gemv && T >= kDequantMinT && cpu_has_avx512()) {
    switch (t.type) {
      case NativeType::F32: return "cpu.gemm.f32.avx512";
      case NativeType::F16: return "cpu.gemm.f16.avx512";
      case NativeType::BF16: return "cpu.gemm.bf16.avx512";
      case NativeType::W8: return by_group(g, "cpu.gemm.w8g16.avx512", "cpu.gemm.w8g32.avx512", "cpu.gemm.w8g128.avx512");
      case NativeType::W4: return by_group(g, "cpu.gemm.w4g16.avx512", "cpu.gemm.w4g32.avx512", "cpu.gemm.w4g128.avx512");
    }
  }
  // Decode-sized calls (T < kDequantMinT) of W8 / W4 / BF16 / F16 weights: matmul_avx512.cpp (any T there gives a token the same bits).
  if (T < kDequantMinT && t.type == NativeType::W8 && cpu_has_avx512())
    return by_group(g, "cpu.gemv.w8g16.avx512", "cpu.gemv.w8g32.avx512", "cpu.gemv.w8g128.avx512");
  if (T < kDequantMinT && t.type == NativeType::W4 && cpu_has_avx512())
    return by_group(g, "cpu.gemv.w4g16.avx512", "cpu.gemv.w4g32.avx512", "cpu.gemv.w4g128.avx512");
  if (T < kDequantMinT && t.type == NativeType::BF16 && cpu_has_avx512()) return "cpu.gemv.bf16.avx512";
  if (T < kDequantMinT && t.type == NativeType::F16 && cpu_has_avx512()) return "cpu.gemv.f16.avx512";
  switch (t.type) {
    case NativeType::F32: return gemv ? "cpu.gemv.f32" : "cpu.gemm.f32";
    case NativeType::F16: return gemv ? "cpu.gemv.f16" : "cpu.gemm.f16";
    case NativeType::BF16: return gemv ? "cpu.gemv.bf16" : "cpu.gemm.bf16";
    case NativeType::W8: return gemv ? by_group(g, "cpu.gemv.w8g16", "cpu.gemv.w8g32", "cpu.gemv.w8g128")
                                     : by_group(g, "cpu.gemm.w8g16", "cpu.gemm.w8g32", "cpu.gemm.w8g128");
    case NativeType::W4: return gemv ? by_group(g, "cpu.gemv.w4g16", "cpu.gemv.w4g32", "cpu.gemv.w4g128")
                                     : by_group(g, "cpu.gemm.w4g16", "cpu.gemm.w4g32", "cpu.gemm.w4g128");
  }
  return "cpu.gemm";
}

namespace {

// What the rows of a call need besides x: per job its context and, where a job needs them, the per-token group
// sums of x (grouped weights with offsets) or x quantized to int8 (toggle actQuant). Both read x.
// The summaries are rare in decode (offsets: Q4_0/Q4_K/Q5_K; int8 codes: toggle actQuant), so their containers allocate
// only when a job needs one: a decode step of a small model makes ~17 calls, each of a few microseconds.
struct Plan {
  std::vector<Ctx> ctx;
  std::vector<std::vector<float>> xsums;  // [n_jobs] once some job needs group sums, else empty
  std::vector<QuantAct *> qas;  // the call's quantized inputs (int8 arm), in qa_buffer()'s storage
  int64_t max_rows = 0;
};

// Storage for one quantized input of the int8 arm, kept on the calling thread per (arm, K, G, GEMV layout): a decode
// step quantizes ~5 inputs per layer, and fresh buffers (6 allocations, and the GEMV's lane map rebuilt) cost about
// as much as a small GEMV's dot products. Within one call, jobs that share a key share the input (the same x).
QuantAct &qa_buffer(ActQuant mode, const NativeTensor &w, int64_t T) {
  struct Slot {
    ActQuant mode;
    int64_t K;
    int32_t G;
    ActLayout layout;
    std::unique_ptr<QuantAct> qa;
  };
  thread_local std::vector<Slot> slots;
  const ActLayout layout = act_quant_layout(w.type, T);
  for (Slot &s : slots)
    if (s.mode == mode && s.K == w.cols && s.G == w.group && s.layout == layout) return *s.qa;
  slots.push_back(Slot{mode, w.cols, w.group, layout, std::make_unique<QuantAct>()});
  return *slots.back().qa;
}

bool grouped_type(const NativeTensor &w) { return w.type == NativeType::W8 || w.type == NativeType::W4; }

// Whether a job reads a summary of x (group sums, int8 codes) before its first row.
bool needs_input_pass(const MatJob &j, int64_t T) {
  return act_quant_runs(j.act_quant, *j.w.t, T) || (grouped_type(*j.w.t) && j.w.has_offset);
}

void prepare(Plan &p, const MatJob *jobs, int n_jobs, const float *x, int64_t T, int64_t x_stride, Pool &pool,
             const CpuTile *tile) {
  p.ctx.resize(static_cast<size_t>(n_jobs));
  for (int j = 0; j < n_jobs; ++j) {
    const NativeTensor &w = *jobs[j].w.t;
    const bool grouped = grouped_type(w);
    Ctx &c = p.ctx[size_t(j)];
    c.job = &jobs[j];
    c.x = x;
    c.T = T;
    c.x_stride = x_stride;
    c.cols = w.cols;
    c.G = grouped ? w.group : int32_t(w.cols);
    c.gpr = grouped ? w.cols / w.group : 1;
    c.xsum = nullptr;
    c.qa = nullptr;
    c.tile = tile;
    if (act_quant_runs(jobs[j].act_quant, w, T)) {  // one quantization per arm and group size, shared by the jobs
      QuantAct *qa = nullptr;
      for (QuantAct *q : p.qas)
        if (act_quant_shares(*q, jobs[j].act_quant, w, T)) qa = q;
      if (!qa) {
        qa = &qa_buffer(jobs[j].act_quant, w, T);
        p.qas.push_back(qa);
        quantize_act(*qa, jobs[j].act_quant, x, T, x_stride, w.cols, w.group, pool, w.type);
      }
      c.qa = qa;
    }
    if (grouped && jobs[j].w.has_offset) {
      if (p.xsums.empty()) p.xsums.resize(static_cast<size_t>(n_jobs));
      auto &xs = p.xsums[size_t(j)];
      xs.resize(size_t(T * c.gpr));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t g = 0; g < c.gpr; ++g) {
          const float *q = x + t * x_stride + g * c.G;
          float s = 0;
          for (int32_t e = 0; e < c.G; ++e) s += q[e];
          xs[size_t(t * c.gpr + g)] = s;
        }
      c.xsum = xs.data();
    }
    p.max_rows = std::max(p.max_rows, w.rows);
  }
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

bool matmul_prologue_in_job(const MatJob *jobs, int n_jobs, int64_t T) {
  for (int j = 0; j < n_jobs; ++j)
    if (needs_input_pass(jobs[j], T)) return false;
  return true;
}

const char *fused_kernel_name(const char *pre, const char *kernel, const char *post) {
  // Interned per (pre, kernel, post) pointer triple (all string literals): no allocation once a name exists.
  static std::mutex mu;
  static std::map<std::tuple<const char *, const char *, const char *>, std::string> names;
  std::lock_guard<std::mutex> lock(mu);
  auto it = names.find({pre, kernel, post});
  if (it == names.end()) it = names.emplace(std::make_tuple(pre, kernel, post), std::string(pre) + kernel + post).first;
  return it->second.c_str();
}

void matmul(const MatJob *jobs, int n_jobs, const float *x, int64_t T, int64_t x_stride, Pool &pool) {
  matmul_fused(jobs, n_jobs, const_cast<float *>(x), T, x_stride, pool, MatFusion{});
}

bool matmul_fused(const MatJob *jobs, int n_jobs, float *x, int64_t T, int64_t x_stride, Pool &pool,
                  const MatFusion &f) {
  if (T <= 0 || n_jobs <= 0) return true;
  if (f.paired && (n_jobs != 2 || jobs[0].w.t->rows != jobs[1].w.t->rows))
    throw Error(QW_ERR_INTERNAL, "matmul_fused: a paired call needs two jobs with the same rows");
  const int64_t cols = jobs[0].w.t->cols;
  // The norm prologue runs inside the pool job unless a job must first read a summary of the normed input
  // (group sums, int8 codes): then it is a pass of its own before them, and the caller names the kernel so.
  const bool in_job = f.norm_src != nullptr && matmul_prologue_in_job(jobs, n_jobs, T);
  if (f.norm_src && !in_job) rmsnorm(x, f.norm_src, f.norm_w, T, cols, f.eps, pool);
  const CpuTile &tl = tile_for(jobs, n_jobs, T);  // fixed unless tile = auto and the table has this shape
  Plan p;
  prepare(p, jobs, n_jobs, x, T, x_stride, pool, &tl);
  const int n_lists = f.paired ? 1 : n_jobs;  // paired: one work item runs the same rows of both jobs
  auto run_item = [&](int j, int64_t r0, int64_t r1) {
    run_rows(p.ctx[size_t(j)], r0, r1);
    if (f.paired) run_rows(p.ctx[1], r0, r1);
    if (f.epilogue) f.epilogue(j, r0, r1);
  };
  auto norm_row = [&](int64_t t) { rmsnorm_row(x + t * x_stride, f.norm_src + t * cols, f.norm_w, cols, f.eps); };
  // Below ~32k multiply-adds a second thread costs more to wake than it saves.
  double work = 0;
  for (int j = 0; j < n_jobs; ++j) work += double(T) * double(jobs[j].w.t->rows) * double(jobs[j].w.t->cols);
  const int64_t cap = tl.threads > 0 ? std::min<int64_t>(tl.threads, pool.size()) : pool.size();
  const int nt = work < 32768.0 ? 1 : int(std::max<int64_t>(1, std::min<int64_t>(cap, p.max_rows / 4)));
  if (nt == 1) {
    if (in_job)
      for (int64_t t = 0; t < T; ++t) norm_row(t);
    for (int j = 0; j < n_lists; ++j) run_item(j, 0, jobs[j].w.t->rows);
    return in_job || !f.norm_src;
  }
  // Rows are handed out in chunks through an atomic counter (4 chunks per thread and job): when another
  // process takes one of our cores for a while (a 2-core box running a web server, builds, tests), the
  // other thread keeps taking chunks instead of waiting at the end of a static share. Chunks are at least
  // 64 rows, so the 4 row streams of a decode chunk stay long (see rows()). A row's result does not depend on
  // the chunk it falls in (every row has its own accumulators, columns in one order), so fused and unfused calls
  // give the same bits.
  std::vector<int64_t> first(static_cast<size_t>(n_lists) + 1, 0), chunk(static_cast<size_t>(n_lists));
  for (int j = 0; j < n_lists; ++j) {
    const int64_t rows = jobs[j].w.t->rows;
    chunk[size_t(j)] = std::max<int64_t>(tl.chunk, (rows + 4 * nt - 1) / (4 * nt));
    if (T >= kDequantMinT) chunk[size_t(j)] = (chunk[size_t(j)] + 31) / 32 * 32;  // whole int8 panels / GEMM quads
    first[size_t(j) + 1] = first[size_t(j)] + (rows + chunk[size_t(j)] - 1) / chunk[size_t(j)];
  }
  const int64_t n_items = first[size_t(n_lists)];
  std::atomic<int64_t> next{0}, norm_next{0}, norm_done{0};
  pool.run(nt, [&] {
    if (in_job) {  // prologue: normed rows from a counter; no weight row starts before every input row is normed
      for (int64_t t = norm_next++; t < T; t = norm_next++) {
        norm_row(t);
        norm_done.fetch_add(1, std::memory_order_release);
      }
      while (norm_done.load(std::memory_order_acquire) < T) cpu_relax();
    }
    int j = 0;
    for (int64_t it = next++; it < n_items; it = next++) {
      while (it >= first[size_t(j) + 1]) ++j;
      const int64_t r0 = (it - first[size_t(j)]) * chunk[size_t(j)];
      run_item(j, r0, std::min(jobs[j].w.t->rows, r0 + chunk[size_t(j)]));
    }
  });
  return in_job || !f.norm_src;
}

}  // namespace cpu
}  // namespace qw
