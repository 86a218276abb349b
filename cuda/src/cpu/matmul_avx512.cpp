// matmul_avx512.cpp — decode-sized matmuls (T < kDequantMinT tokens: decode steps, batched decode, verify steps)
// for W8, W4, BF16 and F16 weights with 512-bit vectors, used at run time when the CPU has AVX-512 F/BW (this file alone is
// compiled with -mavx512f -mavx512bw; matmul.cpp checks the CPU before calling it, so the library still runs on
// AVX2-only machines).
//
// Why these types: int8 / 4-bit codes must be widened and converted (vpmovsxbd / nibble unpack + vcvtdq2ps) and bf16
// widened and shifted before the FMA, which makes their GEMVs compute-bound when the weights sit in L2/L3 (a small
// model, such as the embedded bf16 one). 16 lanes per instruction halve that work. f16 (one vcvtph2ps per 8 or 16
// weights) gains less, but measurably (rows_half); f32 decode is bound by memory bandwidth and gains nothing.
// Every (row, token) output is one fixed sequence: 16-lane FMA chains over the columns in order (W8/W4: one per group,
// then scaled into the row's accumulator), then the reduction of hsum_avx512.hpp. So T = 1 and T = 2..7 calls give
// the same bits for a token (a batched or verify step equals the single-token step), and the row split (RB
// streams, thread chunks) never changes a result.
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "cpu.hpp"
#include "hsum_avx512.hpp"

// GCC 12 warns about the intentionally undefined pass-through operand inside _mm512_cvtepi8_epi32.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace qw {
namespace cpu {

namespace {

inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

// Reduces acc[RB][NT] into y[RB][NT] (four rows at a time where RB allows: bitwise the single-row reduction).
template <int RB, int NT>
inline void reduce_rows(const __m512 (&acc)[RB][NT], float (&y)[RB][NT]) {
  for (int j = 0; j < NT; ++j) {
    if constexpr (RB % 4 == 0) {
      for (int i = 0; i < RB; i += 4) {
        const __m512 a4[4] = {acc[i][j], acc[i + 1][j], acc[i + 2][j], acc[i + 3][j]};
        float s4[4];
        hsum512x4(a4, s4);
        for (int k = 0; k < 4; ++k) y[i + k][j] = s4[k];
      }
    } else {
      for (int i = 0; i < RB; ++i) y[i][j] = hsum512(acc[i][j]);
    }
  }
}

// Codes of grouped weights, 16 columns at a time widened to fp32 exactly. W8: int8 codes; W4: 8 bytes, low nibble = even
// column. at(r, c) is the byte holding row r's column c (what the prefetch follows).
struct CodesW8 {
  const int8_t *p;
  int64_t cols;
  const void *at(int64_t r, int64_t c) const { return p + r * cols + c; }
  __m512 load16(int64_t r, int64_t c) const {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p + r * cols + c))));
  }
};
struct CodesW4 {
  const uint8_t *p;
  int64_t cols;
  const void *at(int64_t r, int64_t c) const { return p + (r * cols + c) / 2; }
  __m512 load16(int64_t r, int64_t c) const {
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(p + (r * cols + c) / 2));
    const __m128i q = _mm_unpacklo_epi8(_mm_and_si128(b, lo4), _mm_and_si128(_mm_srli_epi16(b, 4), lo4));
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
  }
};

// RB grouped rows (r, r + rs, ...) x NT tokens (x[j], each a row of cols): per group one FMA chain per (row, token),
// then scaled into the row's accumulator. G is 16, 32 or 128.
template <int RB, int NT, int G, class Codes>
inline void rows_grouped(const Codes &codes_in, const float *scale, int64_t gpr, const float *const *x, int64_t r,
                         int64_t rs, float (&y)[RB][NT]) {
  const Codes codes = codes_in;  // a local copy: its pointer and row length stay in registers across the loops
  __m512 acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t g = 0; g < gpr; ++g) {
    const int64_t c0 = g * G;
    __m512 ag[RB][NT];
    for (int i = 0; i < RB; ++i)
      for (int j = 0; j < NT; ++j) ag[i][j] = _mm512_setzero_ps();
    for (int i = 0; i < RB; ++i)
      _mm_prefetch(reinterpret_cast<const char *>(codes.at(r + i * rs, c0)) + 1024, _MM_HINT_T0);
    for (int64_t c = c0; c < c0 + G; c += 16) {
      __m512 xv[NT];
      for (int j = 0; j < NT; ++j) xv[j] = _mm512_loadu_ps(x[j] + c);
      for (int i = 0; i < RB; ++i) {
        const __m512 w = codes.load16(r + i * rs, c);
        for (int j = 0; j < NT; ++j) ag[i][j] = _mm512_fmadd_ps(w, xv[j], ag[i][j]);
      }
    }
    for (int i = 0; i < RB; ++i) {
      const __m512 sc = _mm512_set1_ps(scale[(r + i * rs) * gpr + g]);
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(sc, ag[i][j], acc[i][j]);
    }
  }
  reduce_rows<RB, NT>(acc, y);
}

// Tiles of 2-4 tokens call the grouped kernel out of line: inlined into rows_streams() (with its output loop and the
// finish step) it ran out of general registers and reloaded the row pointers from the stack in the inner loop (~10 %
// slower). Single tokens inline it (measured faster), as does the bf16 kernel (1.25x at 4 tokens inlined).
template <int R, int N, int G, class Codes>
__attribute__((noinline)) void rows_grouped_outline(const Codes &codes, const float *scale, int64_t gpr,
                                                    const float *const *x, int64_t r, int64_t rs, float (&y)[R][N]) {
  rows_grouped<R, N, G>(codes, scale, gpr, x, r, rs, y);
}

// 16 half-precision weights widened to fp32: bf16 is the high half of an fp32 (shift), f16 one vcvtph2ps. Both exact.
template <bool F16>
inline __m512 widen16(__m256i h) {
  if constexpr (F16)
    return _mm512_cvtph_ps(h);
  else
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// RB 16-bit (BF16 or F16) rows x NT tokens; columns past the last multiple of 16 are read masked (zeros add nothing).
// The rows are prefetched 1 KiB ahead like the W8 codes: without it a DRAM-resident bf16 matrix (0.5B's lm_head)
// streamed at half the rate of the AVX2 kernel this replaced, whose smaller loads the hardware prefetcher alone kept
// up with. F16 joined later: its AVX2 kernel (8 lanes per vcvtph2ps) streamed a cold 0.5B matrix 10-15 % slower than
// this one does bf16 (build/bench_gemv, 1 thread), i.e. it was not purely memory-bound.
template <int RB, int NT, bool F16>
inline void rows_half(const uint16_t *w, int64_t cols, const float *const *x, int64_t r, int64_t rs,
                      float (&y)[RB][NT]) {
  __m512 acc[RB][NT];
  for (int i = 0; i < RB; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t c16 = cols & ~int64_t(15);
  for (int64_t c = 0; c < c16; c += 16) {
    __m512 xv[NT];
    for (int j = 0; j < NT; ++j) xv[j] = _mm512_loadu_ps(x[j] + c);
    for (int i = 0; i < RB; ++i) {
      const uint16_t *p = w + (r + i * rs) * cols + c;
      _mm_prefetch(reinterpret_cast<const char *>(p) + 1024, _MM_HINT_T0);
      const __m512 wv = widen16<F16>(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(p)));
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  if (c16 < cols) {  // the same FMA chain, one more masked step
    const __mmask16 m = __mmask16((1u << (cols - c16)) - 1);
    __m512 xv[NT];
    for (int j = 0; j < NT; ++j) xv[j] = _mm512_maskz_loadu_ps(m, x[j] + c16);
    for (int i = 0; i < RB; ++i) {
      const __m512 wv = widen16<F16>(_mm256_maskz_loadu_epi16(m, w + (r + i * rs) * cols + c16));
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  reduce_rows<RB, NT>(acc, y);
}

// Rows [r0, r1) of job for tokens [t0, t0 + NT): RB equal sub-ranges, one row of each at a time (RB long sequential
// weight streams: see matmul.cpp's row order), then the leftover rows one by one.
template <int RB, int NT, class Rows>
void rows_streams(const MatJob &job, const float *x, int64_t x_stride, const float *xsum, int64_t gpr, int64_t r0,
                  int64_t r1, int64_t t0, const Rows &rows) {
  const NativeTensor &w = *job.w.t;
  const float *xr[NT];
  for (int j = 0; j < NT; ++j) xr[j] = x + (t0 + j) * x_stride;
  auto finish = [&](int64_t r, int j, float y) {
    if (xsum) y += offset_dot(w.offset.data() + r * gpr, xsum + (t0 + j) * gpr, gpr);
    job.out[(t0 + j) * job.out_stride + r] = y + (job.bias ? job.bias[r] : 0.0f);
  };
  const int64_t q = (r1 - r0) / RB;
  for (int64_t i = 0; i < q; ++i) {
    float y[RB][NT];
    rows.template operator()<RB, NT>(xr, r0 + i, q, y);
    for (int k = 0; k < RB; ++k)
      for (int j = 0; j < NT; ++j) finish(r0 + i + k * q, j, y[k][j]);
  }
  for (int64_t r = r0 + RB * q; r < r1; ++r) {
    float y[1][NT];
    rows.template operator()<1, NT>(xr, r, 0, y);
    for (int j = 0; j < NT; ++j) finish(r, j, y[0][j]);
  }
}

// All T tokens in tiles of up to 4; RB (toggle tile's row streams) for single tokens, fewer rows for wider tiles
// so that RB x NT accumulators (x2 for W8's per-group ones) stay in the 32 zmm registers.
template <int RB, bool GROUPED, class Rows>
void token_tiles(const MatJob &job, const float *x, int64_t x_stride, int64_t T, const float *xsum, int64_t gpr,
                 int64_t r0, int64_t r1, const Rows &rows) {
  for (int64_t t0 = 0; t0 < T; t0 += 4) {
    switch (std::min<int64_t>(4, T - t0)) {
      case 1: rows_streams<RB, 1>(job, x, x_stride, xsum, gpr, r0, r1, t0, rows); break;
      case 2: rows_streams<(GROUPED ? 2 : 4), 2>(job, x, x_stride, xsum, gpr, r0, r1, t0, rows); break;
      case 3: rows_streams<2, 3>(job, x, x_stride, xsum, gpr, r0, r1, t0, rows); break;
      default: rows_streams<2, 4>(job, x, x_stride, xsum, gpr, r0, r1, t0, rows); break;
    }
  }
}

// The row kernels as objects that rows_streams() calls with its own RB x NT.
template <int G, class Codes>
struct GroupedRows {
  Codes codes;
  const float *scale;
  int64_t gpr;
  template <int R, int N>
  void operator()(const float *const *xr, int64_t r, int64_t rs, float (&y)[R][N]) const {
    if constexpr (N == 1)
      rows_grouped<R, N, G>(codes, scale, gpr, xr, r, rs, y);
    else
      rows_grouped_outline<R, N, G>(codes, scale, gpr, xr, r, rs, y);
  }
};
template <bool F16>
struct HalfRows {
  const uint16_t *w;
  int64_t cols;
  template <int R, int N>
  void operator()(const float *const *xr, int64_t r, int64_t rs, float (&y)[R][N]) const {
    rows_half<R, N, F16>(w, cols, xr, r, rs, y);
  }
};

template <int RB, int G>
void grouped_g(const MatJob &job, const float *x, int64_t x_stride, int64_t T, const float *xsum, int64_t r0,
               int64_t r1) {
  const NativeTensor &w = *job.w.t;
  const int64_t gpr = w.cols / G;
  if (w.type == NativeType::W4) {
    const GroupedRows<G, CodesW4> rows{{w.data.data(), w.cols}, w.scale.data(), gpr};
    token_tiles<RB, true>(job, x, x_stride, T, xsum, gpr, r0, r1, rows);
  } else {
    const GroupedRows<G, CodesW8> rows{{reinterpret_cast<const int8_t *>(w.data.data()), w.cols}, w.scale.data(), gpr};
    token_tiles<RB, true>(job, x, x_stride, T, xsum, gpr, r0, r1, rows);
  }
}

template <int RB>
void grouped_rb(const MatJob &job, const float *x, int64_t x_stride, int64_t T, const float *xsum, int64_t r0,
                int64_t r1) {
  switch (job.w.t->group) {
    case 16: grouped_g<RB, 16>(job, x, x_stride, T, xsum, r0, r1); break;
    case 32: grouped_g<RB, 32>(job, x, x_stride, T, xsum, r0, r1); break;
    case 128: grouped_g<RB, 128>(job, x, x_stride, T, xsum, r0, r1); break;  // weights = q8 / q4 (opt/weights/requant.hpp)
    default: throw Error(QW_ERR_INTERNAL, "gemv_grouped_avx512: group " + std::to_string(job.w.t->group) + " has no kernel");
  }
}

template <int RB>
void half_rb(const MatJob &job, const float *x, int64_t x_stride, int64_t T, int64_t r0, int64_t r1) {
  const NativeTensor &w = *job.w.t;
  const uint16_t *data = reinterpret_cast<const uint16_t *>(w.data.data());
  if (w.type == NativeType::F16)
    token_tiles<RB, false>(job, x, x_stride, T, nullptr, 0, r0, r1, HalfRows<true>{data, w.cols});
  else
    token_tiles<RB, false>(job, x, x_stride, T, nullptr, 0, r0, r1, HalfRows<false>{data, w.cols});
}

// Calls f(std::integral_constant<int, RB>) for the row-stream count rb (toggle tile: 1, 2, 4 or 8; 4 when fixed).
// A row's sum does not depend on it.
template <class F>
void with_rb(int rb, F f) {
  switch (rb) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 8: f(std::integral_constant<int, 8>{}); break;
    default: f(std::integral_constant<int, 4>{}); break;
  }
}

}  // namespace

void gemv_grouped_avx512(const MatJob &job, const float *x, int64_t x_stride, int64_t T, const float *xsum, int64_t r0,
                         int64_t r1, int rb) {
  with_rb(rb, [&](auto k) { grouped_rb<decltype(k)::value>(job, x, x_stride, T, xsum, r0, r1); });
}

void gemv_half_avx512(const MatJob &job, const float *x, int64_t x_stride, int64_t T, int64_t r0, int64_t r1, int rb) {
  with_rb(rb, [&](auto k) { half_rb<decltype(k)::value>(job, x, x_stride, T, r0, r1); });
}

}  // namespace cpu
}  // namespace qw
