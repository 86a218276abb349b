// test_dca.cpp — Dual Chunk Attention on the CPU (dca_cpu.cpp, linked in from the CPU objects)
// against a deliberately simple reference: for every (query i, key j <= i) it builds the explicit position table
// (query position by the chunk relation of i and j, key position j mod s) in plain loops, ropes q and k at those
// positions in fp64, and runs one plain softmax over all keys (no partials, no log-sum-exp).
//
// Cases: several chunks with prefill split at and around chunk boundaries (pos0 > 0), batched decode of two
// sequences of different lengths, f32 and bf16 caches, head_dim 64 (AVX2 path) and 12 (scalar tails), GQA groups
// 1 and 2, local = 0, 2s - 1 < chunk (the inter position is 2s - 1, not chunk), and sequences no longer than chunk,
// where DCA must equal plain attention (the engine's own attention() with RoPE at the true positions). Also the
// CUDA tensor-core kernel's tile walk over the three parts' key ranges, emulated (check_tile_walk).
#include <algorithm>
#include <cmath>

#include "dca_cpu.hpp"
#include "dca_positions.hpp"
#include "gqa.hpp"
#include "testlib.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

constexpr float kTheta = 10000.0f;

struct Shape {
  int32_t nH, nKV, d;
};

// fp64 NeoX RoPE of one head vector at position p.
std::vector<double> rope64(const float *x, int32_t d, int32_t p) {
  std::vector<double> y(static_cast<size_t>(d));
  const int32_t h = d / 2;
  for (int32_t i = 0; i < h; ++i) {
    const double inv = 1.0 / std::pow(double(kTheta), double(2 * i) / double(d));
    const double a = double(p) * inv, c = std::cos(a), s = std::sin(a);
    y[size_t(i)] = x[i] * c - x[i + h] * s;
    y[size_t(i + h)] = x[i + h] * c + x[i] * s;
  }
  return y;
}

// The reference: z [N, nH * d] of one sequence from raw q [N, nH d], k, v [N, nKV d].
// dca = false: plain causal attention with RoPE at the true positions.
std::vector<double> reference(const std::vector<float> &q, const std::vector<float> &k, const std::vector<float> &v,
                              int32_t N, const Shape &sh, bool dca, int32_t chunk, int32_t local, bool bf16) {
  const int32_t s = chunk - local, d = sh.d, group = sh.nH / sh.nKV;
  // Explicit tables: qpos[i][j], kpos[j].
  std::vector<std::vector<int32_t>> qpos(size_t(N), std::vector<int32_t>(size_t(N), -1));
  std::vector<int32_t> kpos(static_cast<size_t>(N));
  for (int32_t j = 0; j < N; ++j) kpos[size_t(j)] = dca ? j % s : j;
  for (int32_t i = 0; i < N; ++i)
    for (int32_t j = 0; j <= i; ++j) {
      if (!dca) {
        qpos[size_t(i)][size_t(j)] = i;
      } else if (j / s == i / s) {
        qpos[size_t(i)][size_t(j)] = i % s;  // intra-chunk
      } else if (j / s == i / s - 1) {
        qpos[size_t(i)][size_t(j)] = std::min(i % s + s, chunk);  // successive chunk
      } else {
        qpos[size_t(i)][size_t(j)] = std::min(2 * s - 1, chunk);  // inter-chunk
      }
    }
  auto round_kv = [&](double x) { return bf16 ? double(bf16_to_float(float_to_bf16(float(x)))) : double(float(x)); };
  std::vector<double> z(size_t(N) * size_t(sh.nH * d), 0.0);
  for (int32_t h = 0; h < sh.nH; ++h) {
    const int32_t kh = h / group;
    for (int32_t i = 0; i < N; ++i) {
      std::vector<double> sc(size_t(i + 1));
      double mx = -1e300;
      for (int32_t j = 0; j <= i; ++j) {
        const auto qr = rope64(&q[size_t(i) * size_t(sh.nH * d) + size_t(h * d)], d, qpos[size_t(i)][size_t(j)]);
        // The engine ropes k in fp32 and stores it (bf16 rounds it): the reference rounds the same way.
        const auto kr = rope64(&k[size_t(j) * size_t(sh.nKV * d) + size_t(kh * d)], d, kpos[size_t(j)]);
        double dot = 0;
        for (int32_t c = 0; c < d; ++c) dot += qr[size_t(c)] * round_kv(kr[size_t(c)]);
        sc[size_t(j)] = dot / std::sqrt(double(d));
        mx = std::max(mx, sc[size_t(j)]);
      }
      double sum = 0;
      for (auto &x : sc) sum += (x = std::exp(x - mx));
      for (int32_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int32_t j = 0; j <= i; ++j)
          acc += sc[size_t(j)] / sum * round_kv(v[size_t(j) * size_t(sh.nKV * d) + size_t(kh * d + c)]);
        z[size_t(i) * size_t(sh.nH * d) + size_t(h * d + c)] = acc;
      }
    }
  }
  return z;
}

struct Seq {
  int32_t N;
  std::vector<float> q, k, v;
  std::vector<float> z;  // engine output
};

// Runs the engine over both sequences: prefill pieces of seq 0 then of seq 1, then batched decode of the rest.
void run_engine(std::vector<Seq> &seqs, const Shape &sh, const std::vector<int32_t> &pieces, int32_t chunk,
                int32_t local, bool bf16, bool dca, Pool &pool) {
  const int32_t d = sh.d, qd = sh.nH * d, kvd = sh.nKV * d;
  int32_t ctx = 0;
  for (auto &s : seqs) ctx = std::max(ctx, s.N), s.z.assign(size_t(s.N) * size_t(qd), NAN);
  KvStore kv;
  kv.configure(bf16 ? KvCache::Bf16 : KvCache::F32, 1, int32_t(seqs.size()), sh.nKV, ctx, d);
  const RopeTable tab = rope_table(4 * ctx + chunk + 1, d, kTheta);
  std::vector<int32_t> done(seqs.size(), 0);
  auto step = [&](const std::vector<std::pair<int32_t, int32_t>> &parts) {  // (seq, n_new)
    Step st;
    std::vector<int32_t> pos;
    std::vector<float> q, k, v;
    int32_t row = 0;
    for (auto [si, n] : parts) {
      st.seq.push_back(si);
      st.n_new.push_back(n);
      st.pos0.push_back(done[size_t(si)]);
      st.row_offset.push_back(row);
      row += n;
      const Seq &s = seqs[size_t(si)];
      for (int32_t j = 0; j < n; ++j) {
        const int32_t p = done[size_t(si)] + j;
        pos.push_back(p);
        q.insert(q.end(), s.q.begin() + p * qd, s.q.begin() + (p + 1) * qd);
        k.insert(k.end(), s.k.begin() + p * kvd, s.k.begin() + (p + 1) * kvd);
        v.insert(v.end(), s.v.begin() + p * kvd, s.v.begin() + (p + 1) * kvd);
      }
    }
    const int64_t R = row;
    std::vector<float> qs(q.size()), qx(q.size()), z(q.size(), NAN);
    const AttnArgs a{&st, 0, sh.nH, sh.nKV, d, q.data(), k.data(), v.data(), z.data(), Gqa::Native, &pool};
    if (dca) {
      DcaRows rows;
      dca_positions(rows, pos.data(), R, chunk, local);
      dca_rope(q.data(), qs.data(), qx.data(), k.data(), R, sh.nH, sh.nKV, d, rows, tab);
      dca_attention(kv, a, qs.data(), qx.data(), chunk, local);
    } else {
      rope_apply(q.data(), R, qd, sh.nH, d, pos.data(), tab);
      rope_apply(k.data(), R, kvd, sh.nKV, d, pos.data(), tab);
      attention(kv, a);
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      const int32_t si = parts[i].first;
      for (int32_t j = 0; j < parts[i].second; ++j)
        std::copy(z.begin() + (st.row_offset[i] + j) * qd, z.begin() + (st.row_offset[i] + j + 1) * qd,
                  seqs[size_t(si)].z.begin() + (done[size_t(si)] + j) * qd);
      done[size_t(si)] += parts[i].second;
    }
  };
  for (size_t si = 0; si < seqs.size(); ++si)
    for (int32_t n : pieces)
      if (done[si] + n <= seqs[si].N) step({{int32_t(si), n}});
  for (bool more = true; more;) {
    std::vector<std::pair<int32_t, int32_t>> parts;
    for (size_t si = 0; si < seqs.size(); ++si)
      if (done[si] < seqs[si].N) parts.push_back({int32_t(si), 1});
    more = !parts.empty();
    if (more) step(parts);
  }
}

double worst_err(const std::vector<float> &z, const std::vector<double> &ref) {
  double w = 0;
  for (size_t i = 0; i < z.size(); ++i) w = std::max(w, std::isfinite(z[i]) ? std::abs(double(z[i]) - ref[i]) : 1e300);
  return w;
}

struct Case {
  Shape sh;
  int32_t chunk, local;
  std::vector<int32_t> lens;    // sequence lengths (batch)
  std::vector<int32_t> pieces;  // prefill piece sizes, then decode
};

void run_case(const Case &c, bool bf16, Pool &pool) {
  Rng r(uint64_t(c.chunk * 1000 + c.local * 10 + c.sh.d + (bf16 ? 7 : 0)));
  std::vector<Seq> seqs;
  const int32_t qd = c.sh.nH * c.sh.d, kvd = c.sh.nKV * c.sh.d;
  for (int32_t N : c.lens) {
    Seq s;
    s.N = N;
    for (int32_t i = 0; i < N * qd; ++i) s.q.push_back(2.0f * r.normal());  // peaked softmaxes: position errors show
    for (int32_t i = 0; i < N * kvd; ++i) s.k.push_back(r.normal());
    for (int32_t i = 0; i < N * kvd; ++i) s.v.push_back(r.normal());
    seqs.push_back(std::move(s));
  }
  run_engine(seqs, c.sh, c.pieces, c.chunk, c.local, bf16, true, pool);
  // fp32 math and fp32 RoPE tables against fp64, |v| ~ 1; with the bf16 cache the engine rounds its fp32-roped
  // keys and the reference its fp64-roped ones, which can land one bf16 ulp apart.
  const double tol = bf16 ? 5e-3 : 2e-4;
  for (const Seq &s : seqs) {
    const auto ref = reference(s.q, s.k, s.v, s.N, c.sh, true, c.chunk, c.local, bf16);
    const double e = worst_err(s.z, ref);
    CHECK(e <= tol, "chunk %d local %d d %d nH %d nKV %d N %d bf16 %d: DCA vs explicit table, worst |dz| %.3g",
          c.chunk, c.local, c.sh.d, c.sh.nH, c.sh.nKV, s.N, int(bf16), e);
    // Without DCA the table would put every query at its true position: the reference must tell them apart
    // (else this test could not fail on a remapping bug) whenever the sequence is longer than chunk.
    if (s.N > c.chunk) {
      const auto plain = reference(s.q, s.k, s.v, s.N, c.sh, false, c.chunk, c.local, bf16);
      CHECK(worst_err(s.z, plain) > 1e-2, "N %d > chunk %d: DCA output indistinguishable from plain attention", s.N, c.chunk);
    }
  }
  // Sequences no longer than chunk: DCA = plain attention (the engine's own kernel), up to RoPE rounding.
  bool short_seqs = true;
  for (const Seq &s : seqs) short_seqs = short_seqs && s.N <= c.chunk;
  if (short_seqs) {
    std::vector<Seq> plain = seqs;
    run_engine(plain, c.sh, c.pieces, c.chunk, c.local, bf16, false, pool);
    for (size_t i = 0; i < seqs.size(); ++i) {
      double e = 0;
      for (size_t j = 0; j < seqs[i].z.size(); ++j) e = std::max(e, std::abs(double(seqs[i].z[j]) - plain[i].z[j]));
      CHECK(e <= (bf16 ? 2e-2 : 2e-4), "N %d <= chunk %d: DCA vs plain attention() differ by %.3g", seqs[i].N, c.chunk, e);
    }
  }
}

// The tensor-core kernel's walk (src/cuda/attention_prefill.cu, DCA instantiation), emulated with the same
// functions: for a query tile of rows first..last, its key tiles (dca::tile_ranges / tile_range / tile_start) and its
// visibility test (key <= row, key < last + 1, dca::tile_part == the range's part) must count every causal (row, key)
// pair exactly once, with the part dca::part gives it.
void check_tile_walk() {
  constexpr int32_t kTile = 64;
  int32_t walks = 0;
  for (int32_t s : {64, 100, 270, 448, 512, 7168})
    for (int32_t first : {0, 1, 50, 63, 64, 447, 448, 449, 600, 1000, 2 * 7168 - 10, 3 * 7168 + 5})
      for (int32_t rows : {1, 17, 64}) {
        const int32_t last = first + rows - 1;
        std::vector<int32_t> seen(size_t(rows) * size_t(last + 1), 0);
        const qw::dca::TileRanges r = qw::dca::tile_ranges(s, first, last, kTile);
        const int32_t n_tiles = r.tiles[0] + r.tiles[1] + r.tiles[2];
        for (int32_t t = 0; t < n_tiles; ++t) {
          const int32_t part = 2 - qw::dca::tile_range(r, t), k0 = qw::dca::tile_start(r, t, kTile);
          const int32_t kc0 = k0 / s, kbound = (kc0 + 1) * s;
          for (int32_t kp = k0; kp < k0 + kTile && kp <= last; ++kp)
            for (int32_t qp = first; qp <= last; ++qp)
              if (kp <= qp && qw::dca::tile_part(qp / s, kp, kc0, kbound) == part) {
                ++seen[size_t(qp - first) * size_t(last + 1) + size_t(kp)];
                CHECK(part == qw::dca::part(qp, kp, s), "tile walk s %d rows %d..%d: key %d of row %d counted in part %d, not %d",
                      s, first, last, kp, qp, part, qw::dca::part(qp, kp, s));
              }
        }
        for (int32_t qp = first; qp <= last; ++qp)
          for (int32_t kp = 0; kp <= qp; ++kp) {
            const int32_t n = seen[size_t(qp - first) * size_t(last + 1) + size_t(kp)];
            CHECK(n == 1, "tile walk s %d rows %d..%d: key %d of row %d counted %d times", s, first, last, kp, qp, n);
          }
        ++walks;
      }
  CHECK(walks == 6 * 12 * 3, "tile walk: %d walks", walks);
}

// dca::part_keys: the three parts' ranges hold every key 0..i exactly once, each key in the range of its own part
// (dca::part), and both ends never decrease with i.
void check_part_keys() {
  for (int32_t s : {1, 7, 64, 448, 7168})
    for (int32_t i = 0; i < 4 * s + 300 && i < 40000; i += (s > 64 ? 37 : 1)) {
      std::vector<int32_t> seen(size_t(i) + 1, 0);
      for (int32_t pt = 0; pt < 3; ++pt) {
        int32_t lo, hi, lo1, hi1;
        qw::dca::part_keys(pt, i, s, &lo, &hi);
        qw::dca::part_keys(pt, i + 1, s, &lo1, &hi1);
        CHECK(lo1 >= lo && hi1 >= hi, "part_keys: s %d, part %d: [%d, %d) at %d, [%d, %d) at %d", s, pt, lo, hi, i, lo1,
              hi1, i + 1);
        for (int32_t k = lo; k < hi; ++k) {
          ++seen[size_t(k)];
          CHECK(qw::dca::part(i, k, s) == pt, "part_keys: s %d, position %d: key %d in part %d's range, its part is %d",
                s, i, k, pt, qw::dca::part(i, k, s));
        }
      }
      for (int32_t k = 0; k <= i; ++k)
        CHECK(seen[size_t(k)] == 1, "part_keys: s %d, position %d: key %d in %d ranges", s, i, k, seen[size_t(k)]);
    }
}

// The decode key windows (dca::decode_window, dca_kernels.cu): for every position and window count, the windows
// hold every key 0..i exactly once.
void check_decode_windows() {
  for (int32_t n_split : {1, 2, 3, 10, 32, 64})
    for (int32_t i : {0, 1, 2, 9, 31, 32, 33, 127, 128, 129, 447, 1000, 8191, 32767}) {
      std::vector<int32_t> seen(size_t(i) + 1, 0);
      for (int32_t z = 0; z < n_split; ++z) {
        int32_t lo, hi;
        qw::dca::decode_window(i, n_split, z, &lo, &hi);
        for (int32_t k = lo; k < hi; ++k) ++seen[size_t(k)];
      }
      for (int32_t k = 0; k <= i; ++k)
        CHECK(seen[size_t(k)] == 1, "decode windows: n_split %d, position %d: key %d in %d windows", n_split, i, k,
              seen[size_t(k)]);
    }
}

}  // namespace

int main() {
  check_tile_walk();
  check_decode_windows();
  check_part_keys();
  const std::vector<Case> cases = {
      // s = 12: chunks [0,12) [12,24) [24,36) [36,48) [48,53); prefill pieces end at 12 (boundary), 13, 24, 31.
      {{4, 2, 64}, 16, 4, {53, 29}, {12, 1, 11, 7}},
      // head_dim 12 (scalar tails), no GQA; local = 0 (s = chunk).
      {{3, 3, 12}, 10, 0, {41, 10}, {10, 5}},
      // s = 6, 2s - 1 = 11 < chunk 16: the inter-chunk query sits at 2s - 1.
      {{4, 1, 64}, 16, 10, {40, 17}, {3, 6, 6}},
      // sequences no longer than chunk (and exactly chunk): equal to plain attention.
      {{4, 2, 64}, 32, 8, {32, 19}, {24, 1}},
  };
  for (int threads : {1, 2}) {
    Pool pool(threads);
    for (const Case &c : cases)
      for (bool bf16 : {false, true}) run_case(c, bf16, pool);
  }
  // The kernels read plain f32/bf16 rows: any other KV-cache type with dca = on at some layer is refused.
  StepToggles t;
  t.layer.resize(2);
  t.layer[1].dca = Dca::On;
  for (KvCache kv : {KvCache::Bf16, KvCache::F32, KvCache::Q8, KvCache::Kivi4, KvCache::Kivi2}) {
    t.kv_cache = kv;
    int32_t status = QW_OK;
    try {
      dca_check_config(t);
    } catch (const Error &e) {
      status = e.status;
    }
    const bool plain = kv == KvCache::Bf16 || kv == KvCache::F32;
    CHECK(status == (plain ? QW_OK : QW_ERR_UNSUPPORTED), "dca_check_config: kvCache %d gave status %d", int(kv), status);
  }
  return finish("test_dca");
}
