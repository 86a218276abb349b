// sparse_prefill_cpu.cpp — MInference sparse prefill attention on the CPU (toggle "sparsePrefill"): the driver of both
// patterns (estimate per head, attend per row block, stats, the step's work for the op record) and vertical-slash's
// kernels; block-sparse's estimate and attend are in block_sparse_cpu.cpp.
//
// Vertical-slash:
// Per prefill step, per sequence of the step (rows at positions p0 .. N-1) and query head h:
//  1. Estimate (MInference's vertical_and_slash_kernel, done online): the last lq = min(64, n) queries score every
//     key j <= i, softmax per query; vertical[j] = sum of their probabilities on column j, slash[o] = sum on
//     diagonal o = i - j. With DCA each (i, j) is scored with the query variant of its chunk relation (intra,
//     successive, inter: dca::part), i.e. one softmax over DCA's explicit score table (as vLLM's dual-chunk
//     sparse path concatenates the three QK blocks before its softmax).
//  2. Select: columns [0, sink) and diagonals [0, local) always, then the `vertical` best other columns and the
//     `slash` best other diagonals (ties: lower index); MInference forces 30 sink columns and the last 100
//     diagonals inside its budgets, here they come on top of them.
//  3. Attend: query i visits the sorted union {j <= i : j a column, or i - j a diagonal}. Plain attention: each score
//     is one FMA chain over the head dimension and each output lane one FMA chain over the visited keys in
//     ascending order, after the shared softmax_scaled: the arithmetic of the blocked dense kernel
//     (attention_avx512.cpp), so a selection of every key reproduces dense attention bit for bit where that kernel
//     is the dense one (AVX-512, head_dim % 64 == 0, >= 8 rows). With DCA: dca_attend_keys, the DCA kernel's own
//     per-head arithmetic over the list (bit for bit dca_attention with every key).
// With SparseBudget::stats each (row, head) also runs over every key: recall = exp(lse_visited - lse_all) (the
// dense probability mass on the visited keys) and the output error against that dense z.
#include "sparse_prefill_cpu.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <numeric>
#include <string>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "attention.hpp"
#include "dca_cpu.hpp"
#include "dca_positions.hpp"
#include "half.hpp"
#include "registry.hpp"
#include "sparse_parts_cpu.hpp"
#include "sparse_select.hpp"

namespace qw {
namespace cpu {

void sparse_check(const StepToggles &t, const LayerToggles &lt) {
  const std::string arm = "sparsePrefill = " + value_name(lt.sparse_prefill);
  if (t.kv_cache != KvCache::Bf16 && t.kv_cache != KvCache::F32)
    throw Error(QW_ERR_UNSUPPORTED, arm + " reads an f32 or bf16 KV cache; kvCache = " +
                                        value_name(t.kv_cache) +
                                        " is not supported with it: set kvCache to bf16 or f32, or sparsePrefill to off");
  if (lt.attention != Attention::FlashBf16)
    throw Error(QW_ERR_UNSUPPORTED, arm + " runs its own fp32 attention; attention = " +
                                        value_name(lt.attention) +
                                        " at the same layer is not supported with it: set attention to flash-bf16 "
                                        "there, or sparsePrefill to off");
}

const char *sparse_kernel_name(SparsePrefill mode, bool dca, bool kv_bf16) {
  static const char *const names[2][2][2] = {
      {{"cpu.attention.sparse_vs.kv_f32", "cpu.attention.sparse_vs.kv_bf16"},
       {"cpu.attention.sparse_vs.dca.kv_f32", "cpu.attention.sparse_vs.dca.kv_bf16"}},
      {{"cpu.attention.sparse_bs.kv_f32", "cpu.attention.sparse_bs.kv_bf16"},
       {"cpu.attention.sparse_bs.dca.kv_f32", "cpu.attention.sparse_bs.dca.kv_bf16"}}};
  return names[mode == SparsePrefill::BlockSparse][dca][kv_bf16];
}

void sparse_step_begin(SparseStats &stats, const Step &st, int32_t layers, int32_t heads) {
  int64_t rows = 0;
  for (int32_t n : st.n_new) rows += n;
  bool any = false;
  for (int32_t l = 0; l < layers; ++l) any = any || sparse_runs(st, st.toggles.at(l), rows);
  if (!any) return;
  bool fresh = stats.layers != layers || stats.heads != heads;
  for (int32_t p : st.pos0) fresh = fresh || p == 0;
  if (fresh) stats.reset(layers, heads);
  ++stats.steps;
}

namespace sparse_parts {
namespace {

// Step 1 and 2 for head h (header comment).
void estimate(const SeqCtx &c, const SparseBudget &b, int32_t h, SparsePattern &out, std::vector<float> &sc,
              std::vector<float> &kr, std::vector<double> &vert, std::vector<double> &slash) {
  const int32_t d = c.a->head_dim, group = c.a->n_heads / c.a->n_kv_heads, N = c.N;
  const int32_t lq = std::min(kSparseLastQ, c.n), i0 = N - lq;
  const int64_t rq = c.r0 + (c.n - lq);  // row of the first estimating query
  const float scale = 1.0f / std::sqrt(float(d));
  sc.assign(size_t(lq) * size_t(N), 0.0f);
  kr.resize(size_t(d));
  const int64_t base = c.kv->offset(c.a->layer, c.kv_seq, h / group, 0);
  for (int32_t j = 0; j < N; ++j) {
    kv_row_f32(kr.data(), *c.kv, base + int64_t(j) * d, true, d);
    for (int32_t t = std::max(0, j - i0); t < lq; ++t) {
      const int32_t i = i0 + t, var = c.span ? dca::part(i, j, c.span) : 0;
      sc[size_t(t) * size_t(N) + size_t(j)] = row_dot_f32(c.q(var, rq + t, h), kr.data(), d) * scale;
    }
  }
  vert.assign(size_t(N), 0.0);
  slash.assign(size_t(N), 0.0);
  for (int32_t t = 0; t < lq; ++t) {
    const int32_t i = i0 + t;
    const float *row = &sc[size_t(t) * size_t(N)];
    float *e = &sc[size_t(t) * size_t(N)];
    float mx = -INFINITY;
    for (int32_t j = 0; j <= i; ++j) mx = std::max(mx, row[j]);
    double sum = 0;
    for (int32_t j = 0; j <= i; ++j) sum += (e[j] = std::exp(row[j] - mx));
    const double inv = 1.0 / sum;
    for (int32_t j = 0; j <= i; ++j) {
      const double p = e[j] * inv;
      vert[size_t(j)] += p;
      slash[size_t(i - j)] += p;
    }
  }
  out.cols = sparse::top_lines(vert.data(), N, b.sink, b.vertical);
  out.diags = sparse::top_lines(slash.data(), N, b.local, b.slash);
}

void build_src(const SeqCtx &c, int32_t kvh, KvF32 &o) {
  const int32_t d = c.a->head_dim;
  const KvStore &kv = *c.kv;
  const int64_t base = kv.offset(c.a->layer, c.kv_seq, kvh, 0);
  o.len = c.N;
  o.kt.resize(size_t(d) * size_t(o.len));
  std::vector<float> kr(static_cast<size_t>(d));
  for (int64_t p = 0; p < o.len; ++p) {
    kv_row_f32(kr.data(), kv, base + p * d, true, d);
    for (int32_t e = 0; e < d; ++e) o.kt[size_t(e * o.len + p)] = kr[size_t(e)];
  }
  if (!kv.bf16) {
    o.v = &kv.vf[size_t(base)];
  } else {
    o.vbuf.resize(size_t(o.len * d));
    for (int64_t e = 0; e < o.len * d; ++e) o.vbuf[size_t(e)] = bf16_to_float(kv.vb[size_t(base + e)]);
    o.v = o.vbuf.data();
  }
}

}  // namespace

void finish_row(const int32_t *keys, float *s, int32_t n, float scale, const float *V, int32_t d, float *z, double *lse) {
  int32_t k = 0;
  if (lse) {
    double m = -INFINITY, sum = 0;
    for (k = 0; k < n; ++k) m = std::max(m, double(s[k] * scale));
    for (k = 0; k < n; ++k) sum += std::exp(double(s[k] * scale) - m);
    *lse = m + std::log(sum);
  }
  softmax_scaled(s, n, scale);
  int32_t c0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; c0 + 64 <= d; c0 += 64) {
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
    for (k = 0; k < n; ++k) {
      const __m256 p = _mm256_set1_ps(s[k]);
      const float *row = V + int64_t(keys[k]) * d + c0;
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(row + 8 * i), acc[i]);
    }
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(z + c0 + 8 * i, acc[i]);
  }
  for (; c0 + 8 <= d; c0 += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (k = 0; k < n; ++k)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(s[k]), _mm256_loadu_ps(V + int64_t(keys[k]) * d + c0), acc);
    _mm256_storeu_ps(z + c0, acc);
  }
#endif
  for (; c0 < d; ++c0) {
    float acc = 0;
    for (k = 0; k < n; ++k) acc = std::fma(s[k], V[int64_t(keys[k]) * d + c0], acc);
    z[c0] = acc;
  }
}

namespace {


// Step 3 without DCA (header comment): z over keys[0..n), lse (optional) = log of the softmax normalizer.
void chain_attend(const float *q, const KvF32 &src, int32_t d, const int32_t *keys, int32_t n, float scale, float *z,
                  std::vector<float> &sbuf, double *lse) {
  sbuf.resize(size_t(n) + 8);
  float *s = sbuf.data();
  const float *kt = src.kt.data();
  const int64_t len = src.len;
  int32_t k = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; k + 8 <= n; k += 8) {
    const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(keys + k));
    __m256 acc = _mm256_setzero_ps();
    for (int32_t e = 0; e < d; ++e)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(q[e]), _mm256_i32gather_ps(kt + int64_t(e) * len, idx, 4), acc);
    _mm256_storeu_ps(s + k, acc);
  }
#endif
  for (; k < n; ++k) {
    float acc = 0;
    for (int32_t e = 0; e < d; ++e) acc = std::fma(q[e], kt[int64_t(e) * len + keys[k]], acc);
    s[k] = acc;
  }
  finish_row(keys, s, n, scale, src.v, d, z, lse);
}

// A head's columns transposed, Kc [d][ncp] (zero-padded to a multiple of 8): the column scores of a row are then
// contiguous 8-key loads, as the blocked dense kernel's Kt tiles.
struct ColsT {
  std::vector<float> kc;
  int32_t ncp = 0;
};

void build_cols(const SparsePattern &p, const KvF32 &src, int32_t d, ColsT &o) {
  const int32_t nc = int32_t(p.cols.size());
  o.ncp = (nc + 7) / 8 * 8;
  o.kc.assign(size_t(d) * size_t(o.ncp), 0.0f);
  for (int32_t e = 0; e < d; ++e)
    for (int32_t c = 0; c < nc; ++c) o.kc[size_t(e) * size_t(o.ncp) + size_t(c)] = src.kt[size_t(e * src.len + p.cols[size_t(c)])];
}

// Step 3 without DCA for the rows t0 .. t0 + nb - 1 (nb <= 8) of head h: every score is the FMA chain of
// chain_attend, computed in blocks: a diagonal o for the block's rows at once (lanes = rows, keys i - o contiguous in
// Kt), the columns <= i of a row 8 at a time from Kc; then per row the keys in ascending order into finish_row.
// z rows written; lse[lane] (optional) and nk[lane] = keys visited.
void block_attend(const SeqCtx &c, int32_t h, int32_t t0, int32_t nb, const SparsePattern &p, const KvF32 &src,
                  const ColsT &kc, float scale, BlockWork &w, double *lse, int32_t *nk) {
  const int32_t d = c.a->head_dim, i0 = c.p0 + t0, ilast = i0 + nb - 1;
  const float *kt = src.kt.data();
  const int64_t len = src.len;
  const int32_t ndm = int32_t(std::upper_bound(p.diags.begin(), p.diags.end(), ilast) - p.diags.begin());
  w.qt.assign(size_t(d) * kRowBlock, 0.0f);
  for (int32_t l = 0; l < nb; ++l) {
    const float *q = c.q(0, c.r0 + t0 + l, h);
    for (int32_t e = 0; e < d; ++e) w.qt[size_t(e * kRowBlock + l)] = q[e];
  }
  w.dsc.resize(size_t(ndm) * kRowBlock);
  for (int32_t od = 0; od < ndm; ++od) {
    const int32_t o = p.diags[size_t(od)], base = i0 - o;
    float *out = &w.dsc[size_t(od) * kRowBlock];
#if defined(__AVX2__) && defined(__FMA__)
    if (nb == kRowBlock && base >= 0) {
      __m256 acc = _mm256_setzero_ps();
      for (int32_t e = 0; e < d; ++e)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(&w.qt[size_t(e * kRowBlock)]), _mm256_loadu_ps(kt + e * len + base), acc);
      _mm256_storeu_ps(out, acc);
      continue;
    }
#endif
    for (int32_t l = 0; l < nb; ++l) {
      if (base + l < 0) continue;
      float acc = 0;
      for (int32_t e = 0; e < d; ++e) acc = std::fma(w.qt[size_t(e * kRowBlock + l)], kt[e * len + base + l], acc);
      out[l] = acc;
    }
  }
  w.csc.resize(size_t(kc.ncp));
  for (int32_t l = 0; l < nb; ++l) {
    const int32_t i = i0 + l;
    const float *q = c.q(0, c.r0 + t0 + l, h);
    const int32_t nci = int32_t(std::upper_bound(p.cols.begin(), p.cols.end(), i) - p.cols.begin());
    int32_t cc = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; cc < nci; cc += 8) {  // Kc is padded: the last group of 8 stays inside it
      __m256 acc = _mm256_setzero_ps();
      for (int32_t e = 0; e < d; ++e)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(q[e]), _mm256_loadu_ps(&kc.kc[size_t(e) * size_t(kc.ncp) + size_t(cc)]), acc);
      _mm256_storeu_ps(&w.csc[size_t(cc)], acc);
    }
#endif
    for (; cc < nci; ++cc) {
      float acc = 0;
      for (int32_t e = 0; e < d; ++e) acc = std::fma(q[e], kc.kc[size_t(e) * size_t(kc.ncp) + size_t(cc)], acc);
      w.csc[size_t(cc)] = acc;
    }
    // merge: columns ascending, diagonals from the largest o <= i down (keys ascending); a key on both once
    int32_t di = int32_t(std::upper_bound(p.diags.begin(), p.diags.begin() + ndm, i) - p.diags.begin());
    w.keys.clear();
    w.s.clear();
    for (int32_t ci = 0; ci < nci || di > 0;) {
      const int32_t kcol = ci < nci ? p.cols[size_t(ci)] : INT32_MAX, kdg = di > 0 ? i - p.diags[size_t(di - 1)] : INT32_MAX;
      const int32_t key = std::min(kcol, kdg);
      w.keys.push_back(key);
      w.s.push_back(kcol == key ? w.csc[size_t(ci)] : w.dsc[size_t(di - 1) * kRowBlock + size_t(l)]);
      if (kcol == key) ++ci;
      if (kdg == key) --di;
    }
    nk[l] = int32_t(w.keys.size());
    w.s.resize(w.keys.size() + 8);
    float *z = c.a->z + (c.r0 + t0 + l) * int64_t(c.a->n_heads) * d + int64_t(h) * d;
    finish_row(w.keys.data(), w.s.data(), nk[l], scale, src.v, d, z, lse ? &lse[l] : nullptr);
  }
}

// The keys query i visits: pattern columns <= i merged with i - o for diagonals o <= i, ascending, no repeats.
void visit_list(const SparsePattern &p, int32_t i, std::vector<int32_t> &keys) {
  keys.clear();
  const auto ce = std::upper_bound(p.cols.begin(), p.cols.end(), i);
  auto de = std::upper_bound(p.diags.begin(), p.diags.end(), i);  // diagonals o <= i: keys i - o >= 0
  auto c = p.cols.begin();
  while (c != ce || de != p.diags.begin()) {
    const int32_t kc = c != ce ? *c : INT32_MAX, kd = de != p.diags.begin() ? i - *(de - 1) : INT32_MAX;
    const int32_t k = std::min(kc, kd);
    keys.push_back(k);
    if (kc == k) ++c;
    if (kd == k) --de;
  }
}

// Per-thread scratch of the attention tasks.
struct Work {
  std::vector<int32_t> keys;
  std::vector<float> s, zd;
  DcaScratch dw;
  std::vector<SparseHeadStats> st;
};

}  // namespace
}  // namespace sparse_parts

using namespace sparse_parts;

SparseWork sparse_attention(KvStore &kv, const AttnArgs &a, SparsePrefill mode, const SparseDca &dca, const SparseBudget &b,
                            SparseStats &stats, std::vector<SparsePattern> *patterns) {
  const bool bs = mode == SparsePrefill::BlockSparse;
  SparseWork work;
  const Step &st = *a.step;
  const int32_t d = a.head_dim, nH = a.n_heads, nKV = a.n_kv_heads, group = nH / nKV;
  const float scale = 1.0f / std::sqrt(float(d));
  kv_append(kv, a);
  std::mutex mu;
  for (size_t si = 0; si < st.seq.size(); ++si) {
    SeqCtx c{&a, &kv, si, st.n_new[si], st.pos0[si], st.pos0[si] + st.n_new[si], st.seq[si], st.row_offset[si],
             {a.q, dca.q_succ, dca.q_inter}, dca.q_succ ? dca::span(dca.chunk, dca.local) : 0};
    // 1-2: one pattern per query head.
    std::vector<SparsePattern> pat(static_cast<size_t>(nH));
    std::atomic<int32_t> next_h{0};
    a.pool->run(int(std::min<int64_t>(a.pool->size(), nH)), [&] {
      std::vector<float> sc, kr;
      std::vector<double> vert, slash;
      BsScratch bsw;
      for (int32_t h = next_h++; h < nH; h = next_h++) {
        if (bs) bs_estimate(c, b, h, pat[size_t(h)], bsw);
        else estimate(c, b, h, pat[size_t(h)], sc, kr, vert, slash);
      }
    });
    add_sparse_work(work, mode, pat, nKV, c.p0, c.N, std::min(kSparseLastQ, c.n), d);
    // fp32 keys / values per kv head (plain attention; DCA reads the cache through dca_attend_keys).
    std::vector<KvF32> src(c.span ? 0 : size_t(nKV));
    parallel_range(*a.pool, int64_t(src.size()), 2, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) build_src(c, int32_t(k), src[size_t(k)]);
    });
    // plain vertical-slash: each head's columns transposed (block_attend)
    std::vector<ColsT> colt(c.span || bs ? 0 : size_t(nH));
    parallel_range(*a.pool, int64_t(colt.size()), 2, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) build_cols(pat[size_t(h)], src[size_t(h / group)], d, colt[size_t(h)]);
    });
    std::vector<int32_t> all(static_cast<size_t>(c.N));  // every key: the dense reference of the stats
    std::iota(all.begin(), all.end(), 0);
    // 3: one task per (query row, head) with DCA, per (block of 8 rows, head) without; the last rows (most keys) first.
    // Block-sparse's row blocks are aligned to multiples of 8 positions, so none straddles a 64-position query block.
    const int32_t g0 = bs ? c.p0 / kRowBlock : 0;
    const int64_t nblk = bs ? (c.N - 1) / kRowBlock - g0 + 1 : (c.n + kRowBlock - 1) / kRowBlock;
    const int64_t tasks = (c.span ? int64_t(c.n) : nblk) * nH;
    std::atomic<int64_t> next{0};
    a.pool->run(int(std::max<int64_t>(1, std::min<int64_t>(a.pool->size(), tasks))), [&] {
      Work w;
      BlockWork bw;
      w.st.assign(size_t(nH), SparseHeadStats{});
      w.zd.resize(size_t(d));
      // What a row measured: keys visited, and with stats the dense run of the same row (recall, output error).
      auto record = [&](int32_t t, int32_t h, int32_t nk, double lse_s) {
        const int32_t i = c.p0 + t;
        const int64_t row = c.r0 + t;
        SparseHeadStats &hs = w.st[size_t(h)];
        hs.rows += 1;
        hs.keys += nk;
        hs.dense_keys += i + 1;
        if (!b.stats) return;
        const float *z = a.z + row * int64_t(nH) * d + int64_t(h) * d;
        double lse_d = 0;
        if (c.span) {
          const float *qv[3] = {c.q(0, row, h), c.q(1, row, h), c.q(2, row, h)};
          float l = 0;
          dca_attend_keys(kv, a.layer, c.kv_seq, h / group, i, dca.chunk, dca.local, d, qv, all.data(), i + 1, w.zd.data(), &l, w.dw);
          lse_d = l;
        } else {
          chain_attend(c.q(0, row, h), src[size_t(h / group)], d, all.data(), i + 1, scale, w.zd.data(), w.s, &lse_d);
        }
        hs.stat_rows += 1;
        hs.recall += std::min(1.0, std::exp(lse_s - lse_d));
        for (int32_t e = 0; e < d; ++e) {
          const double zs = z[e], zr = w.zd[size_t(e)];
          hs.err2 += (zs - zr) * (zs - zr);
          hs.ref2 += zr * zr;
          hs.out2 += zs * zs;
          hs.dot += zs * zr;
        }
      };
      for (int64_t task = next++; task < tasks; task = next++) {
        const int32_t h = int32_t(task % nH);
        if (c.span) {
          const int32_t t = c.n - 1 - int32_t(task / nH), i = c.p0 + t;
          const int64_t row = c.r0 + t;
          if (bs) bs_visit_list(pat[size_t(h)], i, w.keys);
          else visit_list(pat[size_t(h)], i, w.keys);
          const float *qv[3] = {c.q(0, row, h), c.q(1, row, h), c.q(2, row, h)};
          float l = 0;
          dca_attend_keys(kv, a.layer, c.kv_seq, h / group, i, dca.chunk, dca.local, d, qv, w.keys.data(),
                          int32_t(w.keys.size()), a.z + row * int64_t(nH) * d + int64_t(h) * d, b.stats ? &l : nullptr, w.dw);
          record(t, h, int32_t(w.keys.size()), l);
        } else {
          const int32_t g = int32_t(nblk - 1 - task / nH);
          const int32_t t0 = bs ? std::max(0, (g0 + g) * kRowBlock - c.p0) : g * kRowBlock;
          const int32_t nb = bs ? std::min((g0 + g + 1) * kRowBlock - c.p0, c.n) - t0 : std::min(kRowBlock, c.n - t0);
          double lse[kRowBlock] = {};
          int32_t nk[kRowBlock] = {};
          if (bs) bs_block_attend(c, h, t0, nb, pat[size_t(h)], src[size_t(h / group)], scale, bw, b.stats ? lse : nullptr, nk);
          else block_attend(c, h, t0, nb, pat[size_t(h)], src[size_t(h / group)], colt[size_t(h)], scale, bw, b.stats ? lse : nullptr, nk);
          for (int32_t l = 0; l < nb; ++l) record(t0 + l, h, nk[l], lse[l]);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      if (stats.layers <= a.layer || stats.heads != nH) return;  // stats not begun (a direct call, as in tests)
      for (int32_t h = 0; h < nH; ++h) {
        SparseHeadStats &o = stats.head[size_t(a.layer) * size_t(nH) + size_t(h)];
        const SparseHeadStats &x = w.st[size_t(h)];
        o.rows += x.rows, o.keys += x.keys, o.dense_keys += x.dense_keys, o.stat_rows += x.stat_rows;
        o.recall += x.recall, o.err2 += x.err2, o.ref2 += x.ref2, o.out2 += x.out2, o.dot += x.dot;
      }
    });
    if (patterns) *patterns = std::move(pat);
  }
  return work;
}

}  // namespace cpu
}  // namespace qw
