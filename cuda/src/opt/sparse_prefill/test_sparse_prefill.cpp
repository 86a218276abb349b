// test_sparse_prefill.cpp — sparse prefill on the CPU (sparse_prefill_cpu.cpp, block_sparse_cpu.cpp, linked in from the
// CPU objects) against the dense kernels and a plain fp64 masked-attention reference, and its op cost (sparse_cost.hpp).
//
// Cases: budgets covering every key (vertical, slash, both: duplicates merged) give dense attention bit for bit,
// over one prefill and over prefill pieces (chunk boundaries, pos0 > 0), f32 and bf16 caches, plain and DCA; a
// sequence shorter than the 64 estimating queries; 0 extra lines (only sink columns and local diagonals: the
// fp64 reference with that mask), and only the query's own key (z = its V row); planted vertical columns are
// found and the output equals the reference restricted to them; stats (recall 1 and no error at full budget, lower
// recall with fewer lines); the configurations the kernels refuse. Block-sparse: every block visited = dense bit for
// bit (plain, DCA, pieces inside a block); sink + own block against the masked reference; a planted key block is
// picked; stats. Work: keys visited = the kernels' per-row counts = brute force; V rows = distinct keys visited;
// full budget = the dense cost plus the estimate. Vertical-slash's mma tiles (vs_tiles.hpp) cover the selection exactly.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "attention.hpp"
#include "dca_cpu.hpp"
#include "gqa.hpp"
#include "kvcache.hpp"
#include "cost.hpp"
#include "sparse_prefill_cpu.hpp"
#include "sparse_select.hpp"
#include "testlib.hpp"
#include "vs_tiles.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

struct Shape {
  int32_t nH, nKV, d;
};

struct Data {
  int32_t N;
  std::vector<float> q, k, v;  // [N, nH d], [N, nKV d] (no RoPE: the kernels take q and k as given)
};

Data random_data(const Shape &sh, int32_t N, uint64_t seed) {
  Rng r(seed);
  Data x{N, {}, {}, {}};
  for (int64_t i = 0; i < int64_t(N) * sh.nH * sh.d; ++i) x.q.push_back(2.0f * r.normal());
  for (int64_t i = 0; i < int64_t(N) * sh.nKV * sh.d; ++i) x.k.push_back(r.normal());
  for (int64_t i = 0; i < int64_t(N) * sh.nKV * sh.d; ++i) x.v.push_back(r.normal());
  return x;
}

enum class Arm { Dense, Sparse, Block };  // dense kernel, vertical-slash, block-sparse

struct Run {
  std::vector<float> z;
  std::vector<SparsePattern> pat;  // of the last piece
  SparseWork work;                 // summed over the pieces
  int32_t last_p0 = 0;             // position of the last piece
};

// Prefill pieces of one sequence through the dense kernel (attention() or dca_attention()) or sparse_attention().
Run run(const Data &x, const Shape &sh, const std::vector<int32_t> &pieces, bool bf16, Arm arm, const SparseBudget &b,
        Pool &pool, bool dca = false, int32_t chunk = 0, int32_t local = 0, SparseStats *stats = nullptr) {
  const int32_t d = sh.d, qd = sh.nH * d, kvd = sh.nKV * d;
  KvStore kv;
  kv.configure(bf16 ? KvCache::Bf16 : KvCache::F32, 1, 1, sh.nKV, x.N, d);
  Run out;
  out.z.assign(size_t(x.N) * size_t(qd), NAN);
  SparseStats local_stats;
  SparseStats &ss = stats ? *stats : local_stats;
  if (ss.heads != sh.nH) ss.reset(1, sh.nH);
  int32_t done = 0;
  for (int32_t n : pieces) {
    Step st;
    st.phase = QW_PHASE_PREFILL;
    st.seq = {0};
    st.n_new = {n};
    st.pos0 = {done};
    st.row_offset = {0};
    std::vector<float> q(x.q.begin() + int64_t(done) * qd, x.q.begin() + int64_t(done + n) * qd);
    std::vector<float> k(x.k.begin() + int64_t(done) * kvd, x.k.begin() + int64_t(done + n) * kvd);
    std::vector<float> v(x.v.begin() + int64_t(done) * kvd, x.v.begin() + int64_t(done + n) * kvd);
    std::vector<float> z(q.size(), NAN), qs(q), qi(q);
    // DCA: the three query variants are the raw query scaled differently, so that they differ (no RoPE here).
    for (auto &e : qs) e *= 0.5f;
    for (auto &e : qi) e *= -0.25f;
    const AttnArgs a{&st, 0, sh.nH, sh.nKV, d, q.data(), k.data(), v.data(), z.data(), Gqa::Native, &pool};
    if (arm != Arm::Dense) {
      const SparseDca sd = dca ? SparseDca{qs.data(), qi.data(), chunk, local} : SparseDca{};
      const SparseWork w = sparse_attention(kv, a, arm == Arm::Block ? SparsePrefill::BlockSparse : SparsePrefill::VerticalSlash,
                                            sd, b, ss, &out.pat);
      out.work.visited += w.visited, out.work.est_dots += w.est_dots, out.work.est_adds += w.est_adds;
      out.work.k_rows += w.k_rows, out.work.v_rows += w.v_rows;
      out.last_p0 = done;
    } else if (dca) {
      dca_attention(kv, a, qs.data(), qi.data(), chunk, local);
    } else {
      attention(kv, a);
    }
    std::copy(z.begin(), z.end(), out.z.begin() + int64_t(done) * qd);
    done += n;
  }
  return out;
}

// fp64 attention of query i, head h over the keys `visit(i, j)` allows (plain: no DCA).
template <class M>
std::vector<double> masked_ref(const Data &x, const Shape &sh, bool bf16, M visit) {
  const int32_t d = sh.d, qd = sh.nH * d, kvd = sh.nKV * d, group = sh.nH / sh.nKV;
  auto rnd = [&](float f) { return bf16 ? double(bf16_to_float(float_to_bf16(f))) : double(f); };
  std::vector<double> z(size_t(x.N) * size_t(qd), 0.0);
  for (int32_t h = 0; h < sh.nH; ++h)
    for (int32_t i = 0; i < x.N; ++i) {
      std::vector<double> sc(size_t(i + 1), -INFINITY);
      double mx = -INFINITY;
      for (int32_t j = 0; j <= i; ++j) {
        if (!visit(h, i, j)) continue;
        double dot = 0;
        for (int32_t c = 0; c < d; ++c)
          dot += double(x.q[size_t(i) * qd + size_t(h * d + c)]) * rnd(x.k[size_t(j) * kvd + size_t((h / group) * d + c)]);
        sc[size_t(j)] = dot / std::sqrt(double(d));
        mx = std::max(mx, sc[size_t(j)]);
      }
      double sum = 0;
      for (auto &s : sc) sum += (s = std::isinf(s) ? 0.0 : std::exp(s - mx));
      for (int32_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int32_t j = 0; j <= i; ++j) acc += sc[size_t(j)] / sum * rnd(x.v[size_t(j) * kvd + size_t((h / group) * d + c)]);
        z[size_t(i) * qd + size_t(h * d + c)] = acc;
      }
    }
  return z;
}

double worst(const std::vector<float> &z, const std::vector<double> &ref) {
  double w = 0;
  for (size_t i = 0; i < z.size(); ++i) w = std::max(w, std::isfinite(z[i]) ? std::abs(double(z[i]) - ref[i]) : 1e300);
  return w;
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double worst_f(const std::vector<float> &a, const std::vector<float> &b) {
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::isfinite(a[i]) ? std::abs(double(a[i]) - b[i]) : 1e300);
  return w;
}

SparseBudget budget(int32_t vertical, int32_t slash, int32_t local, int32_t sink, bool stats = false) {
  SparseBudget b;
  b.vertical = vertical, b.slash = slash, b.local = local, b.sink = sink, b.stats = stats;
  return b;
}
SparseBudget blocks(int32_t n, int32_t local, int32_t sink, bool stats = false) {
  SparseBudget b = budget(0, 0, local, sink, stats);
  b.blocks = n;
  return b;
}

// Full budgets: bit for bit the dense kernel where the dense prefill kernel is the blocked one (whose arithmetic
// the sparse kernel follows), else equal up to fp32 summation order.
void full_budget(Pool &pool) {
  const bool exact = attention_blocked_ok(64);
  const Shape sh{4, 2, 64};
  for (bool bf16 : {false, true})
    for (const std::vector<int32_t> &pieces : std::vector<std::vector<int32_t>>{{300}, {100, 37, 163}, {20}, {64, 8, 9}}) {
      int32_t N = 0;
      for (int32_t n : pieces) N += n;
      const Data x = random_data(sh, N, uint64_t(N * 7 + bf16));
      const Run dense = run(x, sh, pieces, bf16, Arm::Dense, SparseBudget{}, pool);
      // vertical covers every column; slash every diagonal; both (each key twice in the union); budget = N exactly.
      for (const SparseBudget &b : {budget(1 << 20, 0, 1, 0), budget(0, 1 << 20, 1, 0), budget(1 << 20, 1 << 20, 100, 30),
                                    budget(N, 0, 1, 0), budget(0, N, 1, 0)}) {
        const Run sp = run(x, sh, pieces, bf16, Arm::Sparse, b, pool);
        if (exact)
          CHECK(same_bits(sp.z, dense.z), "full budget (v %d, s %d) N %d pieces %zu bf16 %d: not bit-identical to dense "
                "(worst |dz| %.3g)", b.vertical, b.slash, N, pieces.size(), int(bf16), worst_f(sp.z, dense.z));
        else
          CHECK(worst_f(sp.z, dense.z) < 1e-5, "full budget N %d: |dz| %.3g", N, worst_f(sp.z, dense.z));
      }
      // DCA (chunk 48, local 8: s = 40, several chunks): bit for bit dca_attention.
      const Run dd = run(x, sh, pieces, bf16, Arm::Dense, SparseBudget{}, pool, true, 48, 8);
      const Run ds = run(x, sh, pieces, bf16, Arm::Sparse, budget(1 << 20, 1 << 20, 1, 0), pool, true, 48, 8);
      CHECK(same_bits(ds.z, dd.z), "DCA full budget N %d pieces %zu bf16 %d: not bit-identical to dca_attention (%.3g)", N,
            pieces.size(), int(bf16), worst_f(ds.z, dd.z));
    }
}

// No extra lines: only the sink columns and the local diagonals (the fp64 reference with that mask).
void no_extra_lines(Pool &pool) {
  const Shape sh{4, 1, 64};
  const Data x = random_data(sh, 150, 11);
  for (bool bf16 : {false, true}) {
    const Run sp = run(x, sh, {90, 60}, bf16, Arm::Sparse, budget(0, 0, 5, 3), pool);
    const auto ref = masked_ref(x, sh, bf16, [](int32_t, int32_t i, int32_t j) { return j < 3 || i - j < 5; });
    CHECK(worst(sp.z, ref) < 2e-4, "0 extra lines (sink 3, local 5) bf16 %d: |dz| %.3g", int(bf16), worst(sp.z, ref));
    for (const SparsePattern &p : sp.pat)
      CHECK(p.cols == std::vector<int32_t>({0, 1, 2}) && p.diags == std::vector<int32_t>({0, 1, 2, 3, 4}),
            "0 extra lines: pattern has %zu columns, %zu diagonals", p.cols.size(), p.diags.size());
  }
  // Only the query's own key: z = its V row (softmax of one score is 1), exactly. Shorter than 64 queries.
  const Data y = random_data(sh, 20, 12);
  const Run one = run(y, sh, {20}, false, Arm::Sparse, budget(0, 0, 1, 0), pool);
  bool ok = true;
  for (int32_t i = 0; i < 20; ++i)
    for (int32_t h = 0; h < sh.nH; ++h)
      for (int32_t c = 0; c < sh.d; ++c) ok = ok && one.z[size_t(i * sh.nH * sh.d + h * sh.d + c)] == y.v[size_t(i * sh.d + c)];
  CHECK(ok, "local 1, no sink, no lines: z is not the query's own V row");
}

// Planted columns: every query aligns with a direction u; 5 keys carry u strongly. With vertical = 5 and no sink
// the pattern is exactly those columns, and z is the reference restricted to them plus the local diagonals.
void planted(Pool &pool) {
  const Shape sh{2, 1, 64};
  Data x = random_data(sh, 400, 13);
  const std::vector<int32_t> cols = {17, 90, 91, 250, 333};
  for (auto &e : x.k) e *= 0.1f;
  for (int32_t i = 0; i < x.N; ++i)
    for (int32_t c = 0; c < sh.d; ++c) {
      const float u = (c % 2 ? 1.0f : -1.0f) / 8.0f;
      for (int32_t h = 0; h < sh.nH; ++h) x.q[size_t(i * sh.nH * sh.d + h * sh.d + c)] = 0.3f * x.q[size_t(i * sh.nH * sh.d + h * sh.d + c)] + 4.0f * u;
    }
  for (int32_t j : cols)
    for (int32_t c = 0; c < sh.d; ++c) x.k[size_t(j * sh.d + c)] = 2.0f * ((c % 2) ? 1.0f : -1.0f);
  SparseStats st5, st0;
  const Run sp = run(x, sh, {400}, false, Arm::Sparse, budget(5, 0, 4, 0, true), pool, false, 0, 0, &st5);
  for (const SparsePattern &p : sp.pat) CHECK(p.cols == cols, "planted columns not found (%zu columns)", p.cols.size());
  const auto ref = masked_ref(x, sh, false, [&](int32_t, int32_t i, int32_t j) {
    return i - j < 4 || std::find(cols.begin(), cols.end(), j) != cols.end();
  });
  CHECK(worst(sp.z, ref) < 2e-4, "planted columns: |dz| %.3g against the masked reference", worst(sp.z, ref));
  // Stats: dropping the planted columns loses most of the mass.
  run(x, sh, {400}, false, Arm::Sparse, budget(0, 0, 4, 0, true), pool, false, 0, 0, &st0);
  for (int32_t h = 0; h < sh.nH; ++h) {
    const SparseHeadStats &a = st5.head[size_t(h)], &b = st0.head[size_t(h)];
    CHECK(a.stat_rows == 400 && a.rows == 400, "stats rows %g / %g", a.stat_rows, a.rows);
    CHECK(a.recall / a.stat_rows > 0.9 && b.recall / b.stat_rows < a.recall / a.stat_rows - 0.2,
          "recall with the planted columns %.3f, without %.3f", a.recall / a.stat_rows, b.recall / b.stat_rows);
    CHECK(std::sqrt(b.err2 / b.ref2) > std::sqrt(a.err2 / a.ref2), "output error does not grow without the columns");
    CHECK(a.keys < a.dense_keys / 10, "planted: %g keys visited of %g", a.keys, a.dense_keys);
  }
}

// Full budget with stats: recall 1, no output error.
void stats_full(Pool &pool) {
  const Shape sh{4, 2, 64};
  const Data x = random_data(sh, 120, 14);
  SparseStats st;
  run(x, sh, {70, 50}, true, Arm::Sparse, budget(1 << 20, 0, 1, 0, true), pool, false, 0, 0, &st);
  for (const SparseHeadStats &h : st.head) {
    CHECK(h.stat_rows == 120 && std::abs(h.recall / h.stat_rows - 1.0) < 1e-6, "full budget recall %.9f",
          h.recall / h.stat_rows);
    CHECK(h.err2 == 0 && h.keys == h.dense_keys, "full budget: error %g, keys %g of %g", h.err2, h.keys, h.dense_keys);
  }
}

void refusals() {
  StepToggles t;
  LayerToggles lt;
  for (KvCache kv : {KvCache::Bf16, KvCache::F32, KvCache::Q8, KvCache::Kivi4}) {
    t.kv_cache = kv;
    int32_t status = QW_OK;
    try {
      sparse_check(t, lt);
    } catch (const Error &e) {
      status = e.status;
    }
    const bool plain = kv == KvCache::Bf16 || kv == KvCache::F32;
    CHECK(status == (plain ? QW_OK : QW_ERR_UNSUPPORTED), "sparse_check: kvCache %d gave %d", int(kv), status);
  }
  t.kv_cache = KvCache::Bf16;
  lt.attention = Attention::SageInt8;
  int32_t status = QW_OK;
  try {
    sparse_check(t, lt);
  } catch (const Error &e) {
    status = e.status;
  }
  CHECK(status == QW_ERR_UNSUPPORTED, "sparse_check: attention = sage-int8 accepted");
}

// Block-sparse, every key block visited (by `blocks`, by `local`, by `sink`): bit for bit the dense kernel (as
// full_budget), pieces that start inside a 64-position block and pieces shorter than one; DCA: dca_attention.
void block_full_budget(Pool &pool) {
  const bool exact = attention_blocked_ok(64);
  const Shape sh{4, 2, 64};
  for (bool bf16 : {false, true})
    for (const std::vector<int32_t> &pieces : std::vector<std::vector<int32_t>>{{300}, {100, 37, 163}, {20}, {64, 8, 9}, {128, 64}}) {
      int32_t N = 0;
      for (int32_t n : pieces) N += n;
      const Data x = random_data(sh, N, uint64_t(N * 5 + bf16));
      const Run dense = run(x, sh, pieces, bf16, Arm::Dense, SparseBudget{}, pool);
      for (const SparseBudget &b : {blocks(1 << 20, 1, 0), blocks(0, 1 << 20, 0), blocks(0, 1, 1 << 20), blocks(N / 64, 64, 1)}) {
        const Run sp = run(x, sh, pieces, bf16, Arm::Block, b, pool);
        if (exact)
          CHECK(same_bits(sp.z, dense.z), "block-sparse full budget (blocks %d, local %d, sink %d) N %d pieces %zu bf16 %d: "
                "not bit-identical to dense (worst |dz| %.3g)", b.blocks, b.local, b.sink, N, pieces.size(), int(bf16),
                worst_f(sp.z, dense.z));
        else
          CHECK(worst_f(sp.z, dense.z) < 1e-5, "block-sparse full budget N %d: |dz| %.3g", N, worst_f(sp.z, dense.z));
      }
      const Run dd = run(x, sh, pieces, bf16, Arm::Dense, SparseBudget{}, pool, true, 48, 8);
      const Run ds = run(x, sh, pieces, bf16, Arm::Block, blocks(1 << 20, 1, 0), pool, true, 48, 8);
      CHECK(same_bits(ds.z, dd.z), "block-sparse DCA full budget N %d pieces %zu bf16 %d: not bit-identical to "
            "dca_attention (%.3g)", N, pieces.size(), int(bf16), worst_f(ds.z, dd.z));
    }
}

// Block-sparse with no extra blocks: the first block (sink 1..64) and the own block (local 1..64), against the fp64
// reference with that mask; a query's own block only (z over keys qb*64 .. i).
void block_no_extra(Pool &pool) {
  const Shape sh{4, 1, 64};
  const Data x = random_data(sh, 300, 21);
  for (bool bf16 : {false, true}) {
    const Run sp = run(x, sh, {150, 150}, bf16, Arm::Block, blocks(0, 64, 10), pool);
    const auto ref = masked_ref(x, sh, bf16, [](int32_t, int32_t i, int32_t j) { return j < 64 || j / 64 == i / 64; });
    CHECK(worst(sp.z, ref) < 2e-4, "block-sparse sink + own block bf16 %d: |dz| %.3g", int(bf16), worst(sp.z, ref));
    for (const SparsePattern &p : sp.pat)
      for (size_t b = 0; b < p.blocks.size(); ++b) {
        const int32_t qb = p.qb0 + int32_t(b);
        const std::vector<int32_t> want = qb == 0 ? std::vector<int32_t>{0} : std::vector<int32_t>{0, qb};
        CHECK(p.blocks[b] == want, "block-sparse no extra: query block %d visits %zu blocks", qb, p.blocks[b].size());
      }
    const Run own = run(x, sh, {300}, bf16, Arm::Block, blocks(0, 1, 0), pool);
    const auto ref_own = masked_ref(x, sh, bf16, [](int32_t, int32_t i, int32_t j) { return j / 64 == i / 64; });
    CHECK(worst(own.z, ref_own) < 2e-4, "block-sparse own block only bf16 %d: |dz| %.3g", int(bf16), worst(own.z, ref_own));
  }
}

// Planted block: keys 192..255 carry the direction every query aligns with; with blocks = 1 each later query block
// picks block 3, and z is the reference restricted to block 3 and the own block. Stats: recall drops without it.
void block_planted(Pool &pool) {
  const Shape sh{2, 1, 64};
  Data x = random_data(sh, 520, 23);
  for (auto &e : x.k) e *= 0.1f;
  for (int32_t i = 0; i < x.N; ++i)
    for (int32_t h = 0; h < sh.nH; ++h)
      for (int32_t c = 0; c < sh.d; ++c) {
        float &q = x.q[size_t(i * sh.nH * sh.d + h * sh.d + c)];
        q = 0.3f * q + 0.5f * ((c % 2) ? 1.0f : -1.0f);
      }
  for (int32_t j = 192; j < 256; ++j)
    for (int32_t c = 0; c < sh.d; ++c) x.k[size_t(j * sh.d + c)] = 2.0f * ((c % 2) ? 1.0f : -1.0f);
  SparseStats st1, st0;
  const Run sp = run(x, sh, {520}, false, Arm::Block, blocks(1, 1, 0, true), pool, false, 0, 0, &st1);
  for (const SparsePattern &p : sp.pat)
    for (int32_t qb = 4; qb <= (x.N - 1) / 64; ++qb)
      CHECK(p.blocks[size_t(qb - p.qb0)] == std::vector<int32_t>({3, qb}), "planted block 3 not picked by query block %d", qb);
  const auto ref = masked_ref(x, sh, false, [](int32_t, int32_t i, int32_t j) {
    return j / 64 == i / 64 || (i >= 256 && j / 64 == 3);
  });
  // rows < 256 pick some other block: compare the rows from 256 on
  double w = 0;
  for (size_t e = size_t(256) * sh.nH * sh.d; e < sp.z.size(); ++e) w = std::max(w, std::abs(double(sp.z[e]) - ref[e]));
  CHECK(w < 2e-4, "planted block: |dz| %.3g against the masked reference", w);
  run(x, sh, {520}, false, Arm::Block, blocks(0, 1, 0, true), pool, false, 0, 0, &st0);
  for (int32_t h = 0; h < sh.nH; ++h) {
    const SparseHeadStats &a = st1.head[size_t(h)], &b = st0.head[size_t(h)];
    CHECK(a.recall / a.stat_rows > b.recall / b.stat_rows + 0.2, "block recall with block 3 %.3f, without %.3f",
          a.recall / a.stat_rows, b.recall / b.stat_rows);
    CHECK(a.keys < a.dense_keys / 2, "planted blocks: %g keys of %g", a.keys, a.dense_keys);
    double keys = 0;  // the counts alone (what the CUDA backend reports) give the kernels' own count
    for (int32_t i = 0; i < x.N; ++i)
      keys += double(sparse::block_keys_visited(i, i / 64, sparse::top_blocks_count(i / 64, 0, 1, 1), 64));
    CHECK(a.keys == keys, "block_keys_visited: %g keys, the kernels counted %g", keys, a.keys);
  }
  SparseStats full;
  run(x, sh, {300, 220}, true, Arm::Block, blocks(1 << 20, 1, 0, true), pool, false, 0, 0, &full);
  for (const SparseHeadStats &h : full.head)
    CHECK(std::abs(h.recall / h.stat_rows - 1.0) < 1e-6 && h.err2 == 0 && h.keys == h.dense_keys,
          "block-sparse full budget stats: recall %.9f, error %g", h.recall / h.stat_rows, h.err2);
}

// Whether query i visits key j under pattern p (the definition, for the work counts below).
bool visits(bool block, const SparsePattern &p, int32_t i, int32_t j) {
  if (block) {
    const auto &bl = p.blocks[size_t(i / kSparseBlock - p.qb0)];
    return std::find(bl.begin(), bl.end(), j / kSparseBlock) != bl.end();
  }
  return std::binary_search(p.cols.begin(), p.cols.end(), j) || std::binary_search(p.diags.begin(), p.diags.end(), i - j);
}

// The op cost (sparse_cost.hpp): keys visited equal the per-row counts of the kernels (stats) and a brute-force
// count; V rows = distinct keys the group visits (brute force); full budget = the dense cost plus the estimate.
void work_counts(Pool &pool) {
  const Shape sh{4, 2, 64};
  const Data x = random_data(sh, 400, 31);
  const std::vector<int32_t> pieces = {350, 50};  // the last piece: rows 350..399 over 400 keys
  for (bool block : {false, true}) {
    const Arm arm = block ? Arm::Block : Arm::Sparse;
    const char *name = block ? "block-sparse" : "vertical-slash";
    SparseStats st;
    st.reset(1, sh.nH);
    const Run sp = run(x, sh, {150}, false, arm, block ? blocks(1, 1, 0, true) : budget(6, 5, 3, 2, true), pool, false, 0, 0, &st);
    double keys = 0;
    for (const SparseHeadStats &h : st.head) keys += h.keys;
    CHECK(sp.work.visited == keys, "%s: visited %g, kernels counted %g", name, sp.work.visited, keys);
    // the last piece of a chunked prefill, brute force
    // small enough that some earlier keys stay unread (2 heads x (3 diagonals x 50 rows + 3 columns) < 400)
    const Run two = run(x, sh, pieces, false, arm, block ? blocks(1, 1, 0) : budget(2, 2, 1, 1), pool);
    double vis = 0, vrows = 0;
    for (int32_t k = 0; k < sh.nKV; ++k)
      for (int32_t j = 0; j < x.N; ++j) {
        bool any = false;
        for (int32_t h = k * 2; h < k * 2 + 2; ++h)
          for (int32_t i = std::max(j, two.last_p0); i < x.N; ++i) {
            const bool v = visits(block, two.pat[size_t(h)], i, j);
            vis += v;
            any = any || v;
          }
        vrows += any;
      }
    SparseWork last;
    add_sparse_work(last, block ? SparsePrefill::BlockSparse : SparsePrefill::VerticalSlash, two.pat, sh.nKV, two.last_p0,
                    x.N, 64, sh.d);
    CHECK(last.visited == vis && last.v_rows == vrows && last.k_rows == double(sh.nKV) * x.N,
          "%s work of the last piece: visited %g (brute force %g), V rows %g (%g)", name, last.visited, vis, last.v_rows, vrows);
    CHECK(vrows < double(sh.nKV) * x.N, "%s: the small budget left no earlier key unread", name);
    // full budget, one piece: dense FLOPs plus the estimate, dense bytes
    const Run full = run(x, sh, {400}, false, arm, block ? blocks(1 << 20, 1, 0) : budget(1 << 20, 0, 1, 0), pool);
    const OpCost dc = cost_attention({0}, {400}, sh.nH, sh.nKV, sh.d, 4.0, 4.0);
    const OpCost sc = cost_sparse_attention(full.work, 400, sh.nH, sh.nKV, sh.d, 4.0, 4.0);
    const double est = full.work.est_dots * (2.0 * sh.d + 5) + full.work.est_adds;
    CHECK(std::abs(sc.flops - est - dc.flops) < 1e-6 * dc.flops && sc.bytes == dc.bytes && est > 0,
          "%s full budget cost: flops %g (dense %g + estimate %g), bytes %g (dense %g)", name, sc.flops, dc.flops, est,
          sc.bytes, dc.bytes);
    const OpCost small = cost_sparse_attention(sp.work, 150, sh.nH, sh.nKV, sh.d, 4.0, 4.0);
    CHECK(small.flops < cost_attention({0}, {150}, sh.nH, sh.nKV, sh.d, 4.0, 4.0).flops, "%s: small budget not cheaper", name);
  }
}

// The CUDA selection's arithmetic (sparse_select.hpp, used by bs_select_kernel): the count and split of every query
// block equal top_blocks' output, and the k smallest select_key values are the blocks top_blocks picks, with ties
// (equal scores, -0 and +0) going to the lower index. The device's bitonic sort itself is checked in the lab
// (`qwlab bsparse`: device selection = host selection).
void select_rule() {
  Rng r(77);
  for (int trial = 0; trial < 400; ++trial) {
    const int32_t qb = int32_t(r.next() % 300), sink = int32_t(r.next() % 6), local = 1 + int32_t(r.next() % 5),
                  extra = int32_t(r.next() % 40);
    std::vector<float> sc(size_t(qb) + 1);
    for (float &x : sc) x = trial % 3 == 0 ? float(int(r.next() % 5) - 2) * 0.5f : float(r.uniform() - 0.5);  // many ties
    if (trial % 7 == 0) for (size_t i = 0; i < sc.size(); i += 2) sc[i] = (i / 2) % 2 ? -0.f : 0.f;
    const std::vector<int32_t> want = sparse::top_blocks(sc.data(), qb, sink, local, extra);
    int32_t f, hi, k;
    sparse::top_blocks_split(qb, sink, local, extra, f, hi, k);
    CHECK(int32_t(want.size()) == sparse::top_blocks_count(qb, sink, local, extra), "select count qb %d: %zu vs %d", qb,
          want.size(), sparse::top_blocks_count(qb, sink, local, extra));
    std::vector<uint64_t> keys;
    for (int32_t i = f; i < hi; ++i) keys.push_back(sparse::select_key(sc[size_t(i)], i));
    std::sort(keys.begin(), keys.end());
    std::vector<int32_t> got;
    for (int32_t i = 0; i < f; ++i) got.push_back(i);
    for (int32_t j = 0; j < k; ++j) got.push_back(int32_t(uint32_t(keys[size_t(j)])));
    for (int32_t i = hi; i <= qb; ++i) got.push_back(i);
    std::sort(got.begin(), got.end());
    CHECK(got == want, "select_key order differs from top_blocks (qb %d sink %d local %d extra %d)", qb, sink, local, extra);
  }
  // vertical-slash's device algorithm (radix select of the k-th high word, then ties by index): top_lines' lists,
  // with scores drawn from few values (ties across every byte), -0 / +0, all equal, and continuous ones
  for (int trial = 0; trial < 300; ++trial) {
    const int32_t n = 1 + int32_t(r.next() % 3000), forced = int32_t(r.next() % 40), extra = int32_t(r.next() % 400);
    std::vector<float> sc(static_cast<size_t>(n));
    for (float &x : sc) {
      if (trial % 4 == 0) x = float(int(r.next() % 7)) * 0.125f;
      else if (trial % 4 == 1) x = float(r.uniform()) * 1e-3f;
      else if (trial % 4 == 2) x = (r.next() % 2) ? -0.f : 0.f;
      else x = float(r.uniform() - 0.25);
    }
    if (trial % 17 == 0) std::fill(sc.begin(), sc.end(), 0.5f);
    const auto want = sparse::top_lines(sc.data(), n, forced, extra), got = sparse::top_lines_radix(sc.data(), n, forced, extra);
    CHECK(got == want, "top_lines_radix differs from top_lines (n %d forced %d extra %d, trial %d)", n, forced, extra, trial);
  }
}

// Vertical-slash's mma attend (vs_tiles.hpp, the formulas its CUDA kernel uses): walking every query block's contiguous
// tiles, then its gather tiles, with the bitmaps the driver builds (vs_bitmaps), every (row, key) the CPU's rule
// selects (j <= i with j a column or i - j a diagonal) counts exactly once and nothing else counts; with every
// diagonal selected the contiguous tiles are 0 .. qb (the dense walk); the kernel's per-row masks (vs_row_mask) equal
// the per-element rule for every row of every contiguous tile. Steps at pos0 = 0 and inside a block, random lines
// (sink and local forced as the selection forces them) and all lines.
void vs_tiles_cover() {
  using namespace qw::sparse;
  Rng r(91);
  const int32_t B = kVsTile;
  for (int trial = 0; trial < 60; ++trial) {
    const int32_t H = 2, pos0 = trial % 3 == 0 ? 0 : int32_t(r.next() % 300), rows = 1 + int32_t(r.next() % 400);
    const int32_t N = pos0 + rows, words = (N + 31) / 32;
    const bool all = trial % 10 == 9;
    std::vector<int32_t> lists, offs;
    for (int32_t h = 0; h < H; ++h)
      for (int32_t part = 0; part < 2; ++part) {  // columns (sink forced), then diagonals (local forced)
        offs.push_back(int32_t(lists.size()));
        const int32_t forced = part == 0 ? int32_t(r.next() % 5) : 1 + int32_t(r.next() % 70);
        const double p = all && part == 1 ? 1.0 : r.uniform() * 0.08;
        for (int32_t x = 0; x < N; ++x)
          if (x < forced || r.uniform() < p) lists.push_back(x);
      }
    offs.push_back(int32_t(lists.size()));
    std::vector<uint32_t> bits;
    vs_bitmaps(bits, lists.data(), offs.data(), H, words);
    int bad = 0, mask_bad = 0;
    for (int32_t h = 0; h < H; ++h) {
      const int32_t *C = lists.data() + offs[size_t(2 * h)], *D = lists.data() + offs[size_t(2 * h + 1)];
      const int32_t nc = offs[size_t(2 * h + 1)] - offs[size_t(2 * h)], nd = offs[size_t(2 * h + 2)] - offs[size_t(2 * h + 1)];
      const uint32_t *cb = bits.data() + size_t(h) * size_t(words), *db = bits.data() + (size_t(H) + size_t(h)) * size_t(words);
      for (int32_t qb = pos0 / B; qb <= (N - 1) / B; ++qb) {
        const int32_t q0 = qb * B, qlo = std::max(pos0, q0), qhi = std::min(N - 1, q0 + B - 1);
        std::vector<uint32_t> kbits;
        int32_t n_gather = 0;
        const int32_t marked = vs_block_tiles(kbits, C, nc, D, nd, qb, qlo, qhi, n_gather);
        std::vector<int32_t> count(size_t(qhi - qlo + 1) * size_t(N), 0);
        int32_t contig = 0;
        for (int32_t kb = 0; kb <= qb; ++kb) {
          if (!vs_bit(kbits.data(), kb)) continue;
          ++contig;
          const int32_t k0 = kb * B;
          uint32_t dw[kVsDiagWords], cw[kVsColWords];
          for (int i = 0; i < kVsDiagWords; ++i) dw[i] = vs_word(db, words, vs_diag_word0(q0, k0) + i);
          for (int i = 0; i < kVsColWords; ++i) cw[i] = vs_word(cb, words, k0 / 32 + i);
          for (int32_t qp = qlo; qp <= qhi; ++qp)
            for (int32_t c = 0; c < B; ++c)
              if (k0 + c < N && vs_contig_visible(qp, k0 + c, q0, k0, dw, cw)) ++count[size_t(qp - qlo) * size_t(N) + size_t(k0 + c)];
          // the kernel's row masks (one word per (row, tile)) say the same as the per-element rule, every row of the block
          for (int32_t qp = q0; qp < q0 + B; ++qp) {
            const uint64_t rm = vs_row_mask(qp, q0, k0, dw, cw);
            for (int32_t c = 0; c < B; ++c) mask_bad += int(((rm >> c) & 1u) != (vs_contig_visible(qp, k0 + c, q0, k0, dw, cw) ? 1u : 0u));
          }
        }
        const int32_t ncol = count_le(C, nc, qhi);
        CHECK(marked == contig && n_gather == (ncol + B - 1) / B, "vs_block_tiles counts %d / %d, walked %d / %d", marked,
              n_gather, contig, (ncol + B - 1) / B);
        for (int32_t g = 0; g * B < ncol; ++g)
          for (int32_t c = 0; c < B; ++c) {
            const int32_t kp = g * B + c < ncol ? C[g * B + c] : -1;
            for (int32_t qp = qlo; qp <= qhi; ++qp)
              if (vs_gather_visible(qp, kp, kbits.data())) ++count[size_t(qp - qlo) * size_t(N) + size_t(kp)];
          }
        for (int32_t qp = qlo; qp <= qhi; ++qp)
          for (int32_t j = 0; j < N; ++j) {
            const bool sel = j <= qp && (std::binary_search(C, C + nc, j) || std::binary_search(D, D + nd, qp - j));
            bad += count[size_t(qp - qlo) * size_t(N) + size_t(j)] != int32_t(sel);
          }
        if (all) CHECK(contig == qb + 1, "vs tiles, every diagonal: %d contiguous tiles, want %d (qb %d)", contig, qb + 1, qb);
      }
    }
    CHECK(bad == 0, "vs tiles: %d (row, key) counted other than once-if-selected (trial %d, pos0 %d, rows %d)", bad, trial,
          pos0, rows);
    CHECK(mask_bad == 0, "vs_row_mask: %d (row, key) differ from vs_contig_visible (trial %d)", mask_bad, trial);
  }
}

}  // namespace

int main() {
  for (int threads : {1, 2}) {
    Pool pool(threads);
    full_budget(pool);
    no_extra_lines(pool);
    planted(pool);
    stats_full(pool);
    block_full_budget(pool);
    block_no_extra(pool);
    block_planted(pool);
    work_counts(pool);
  }
  refusals();
  select_rule();
  vs_tiles_cover();
  return finish("test_sparse_prefill");
}
