// test_tile.cpp — toggle "tile" on the CPU (tile_cpu.hpp): every candidate against fixed on every native weight
// type, the table's checks, and the shape keys.
//
// Exactness claims checked here (tile_cpu.hpp says why they hold):
//  - GEMV (T = 1): every candidate (rb, chunk, threads) gives the same bits as fixed;
//  - GEMM (T = 13 and 67: 6-token tails; K = 2112 > 2 K blocks): candidates with fixed's kc give the same bits;
//    other kc values differ from fixed by at most 2 gamma_K sum_k |w_k x_k| + 2u (sum + |bias|) per output
//    (a reordered fp32 sum), and they do differ somewhere for some shape (so the check is not vacuous);
//  - a 3-job call (q|k|v-like, with bias) as well as 1-job calls.
#include <cmath>
#include <cstring>

#include "../../cpu/cpu.hpp"
#include "convert.hpp"
#include "requant.hpp"
#include "testlib.hpp"
#include "tile_cpu.hpp"

using namespace qw;
using namespace qw::cpu;

namespace {

Weight as_weight(const NativeTensor &t) {
  Weight w;
  w.t = &t;
  for (float o : t.offset) w.has_offset = w.has_offset || o != 0.0f;
  return w;
}

// Runs the call under `table` (nullptr: no table, i.e. fixed) and returns every job's output, job-major.
std::vector<float> run(const std::vector<const NativeTensor *> &ws, const std::vector<float> &bias,
                       const std::vector<float> &x, int64_t T, Pool &pool, CpuTileTable *table) {
  std::vector<std::vector<float>> outs(ws.size());
  std::vector<MatJob> jobs;
  for (size_t j = 0; j < ws.size(); ++j) {
    outs[j].assign(size_t(T * ws[j]->rows), NAN);
    jobs.push_back(MatJob{as_weight(*ws[j]), j == 0 ? bias.data() : nullptr, outs[j].data(), ws[j]->rows, ActQuant{}});
  }
  {
    TileScope scope(table);
    matmul(jobs.data(), int(jobs.size()), x.data(), T, ws[0]->cols, pool);
  }
  std::vector<float> all;
  for (auto &o : outs) all.insert(all.end(), o.begin(), o.end());
  return all;
}

// 2 gamma_K sum |w x| + 2u (sum |w x| + |b|) per output, job-major like run().
std::vector<double> bound(const std::vector<const NativeTensor *> &ws, const std::vector<float> &bias,
                          const std::vector<float> &x, int64_t T) {
  const int64_t K = ws[0]->cols;
  const double u = std::ldexp(1.0, -24), g = double(K) * u / (1 - double(K) * u);
  std::vector<double> out;
  std::vector<float> row(static_cast<size_t>(K));
  for (size_t j = 0; j < ws.size(); ++j)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < ws[j]->rows; ++r) {
        dequant_rows(row.data(), *ws[j], r, 1);
        double a = 0;
        for (int64_t c = 0; c < K; ++c) a += std::fabs(double(row[size_t(c)]) * x[size_t(t * K + c)]);
        const double b = j == 0 ? std::fabs(double(bias[size_t(r)])) : 0.0;
        out.push_back(2 * g * a + 2 * u * (a + b));
      }
  // run() lays out job j as [T, rows]: t-major inside the job, as here.
  return out;
}

}  // namespace

int main() {
  Rng r(7);
  Pool pool(2);
  const int threads = pool.size();

  // Candidate lists: fixed first, unique names, and the fixed names are those of the default configuration.
  for (TileKind k : {TileKind::Gemv, TileKind::Gemm}) {
    const auto cs = tile_candidates(k, threads);
    CHECK(cs.size() >= 4 && cs[0].name == tile_name(k, tile_fixed()), "kind %d: fixed first (%s)", int(k), cs[0].name.c_str());
    for (size_t i = 0; i < cs.size(); ++i)
      for (size_t j = i + 1; j < cs.size(); ++j) CHECK(cs[i].name != cs[j].name, "duplicate %s", cs[i].name.c_str());
  }
  CHECK(tile_name(TileKind::Gemv, tile_fixed()) == "rb4.c64.tall", "fixed gemv name");

  struct Case {
    int32_t ggml;
    int requant;  // 8 / 4: the weights option's group-128 codes
    const char *what;
  };
  const Case cases[] = {{QW_GGML_F32, 0, "f32"},   {QW_GGML_F16, 0, "f16"},    {QW_GGML_BF16, 0, "bf16"},
                        {QW_GGML_Q8_0, 0, "q8_0"}, {QW_GGML_Q4_K, 0, "q4_k"}, {QW_GGML_Q5_K, 0, "q5_k (w8 + offsets)"},
                        {QW_GGML_BF16, 8, "q8 g128"}, {QW_GGML_BF16, 4, "q4 g128"}};
  const int64_t K = 2304;  // > 2 K blocks of 1024, a multiple of 256 (K-quants) and 128
  int reordered = 0;
  for (const Case &c : cases) {
    std::vector<NativeTensor> ts;
    for (int64_t rows : {203, 40, 40}) {
      const auto raw = random_ggml(r, c.ggml, rows * K);
      NativeTensor t = convert_tensor("w", c.ggml, rows, K, raw.data(), false);
      ts.push_back(c.requant == 8 ? requant_q8(t) : c.requant == 4 ? requant_q4(t) : t);
    }
    std::vector<float> bias(203);
    for (auto &b : bias) b = r.normal();
    for (int n_jobs : {1, 3}) {
      std::vector<const NativeTensor *> ws;
      for (int j = 0; j < n_jobs; ++j) ws.push_back(&ts[size_t(j)]);
      for (int64_t T : {int64_t(1), int64_t(13), int64_t(67)}) {
        std::vector<float> x(size_t(T * K));
        for (auto &v : x) v = r.normal();
        std::vector<MatJob> probe;
        for (auto *w : ws) probe.push_back(MatJob{as_weight(*w), nullptr, nullptr, 0, ActQuant{}});
        const std::string key = tile_key(probe.data(), n_jobs, T);
        const TileKind kind = tile_kind(T);
        CHECK(!key.empty() && key.compare(0, 4, T == 1 ? "gemv" : "gemm") == 0, "%s: key %s", c.what, key.c_str());
        const std::vector<float> ref = run(ws, bias, x, T, pool, nullptr);
        std::vector<double> bd;
        for (const auto &cand : tile_candidates(kind, threads)) {
          CpuTileTable table;
          table.set({{key, cand.name}}, threads);
          const std::vector<float> got = run(ws, bias, x, T, pool, &table);
          const bool same = std::memcmp(got.data(), ref.data(), got.size() * 4) == 0;
          if (kind == TileKind::Gemv || cand.cfg.kc == tile_fixed().kc || !cpu_has_avx512()) {
            CHECK(same, "%s T=%ld jobs=%d %s: not the bits of fixed", c.what, long(T), n_jobs, cand.name.c_str());
            continue;
          }
          if (bd.empty()) bd = bound(ws, bias, x, T);
          int bad = 0;
          for (size_t i = 0; i < got.size(); ++i) bad += !(std::fabs(double(got[i]) - ref[i]) <= bd[i]);
          reordered += !same;
          CHECK(bad == 0, "%s T=%ld jobs=%d %s: %d outputs outside the reordering bound", c.what, long(T), n_jobs,
                cand.name.c_str(), bad);
        }
      }
    }
  }
  if (cpu_has_avx512()) CHECK(reordered > 0, "some kc candidate reorders a sum (else the bound check is vacuous)");

  {  // the table: unknown names and key kinds are refused, the old table stays
    CpuTileTable t;
    t.set({{"gemv.bf16:10x64", "rb2.c32.tall"}}, threads);
    CHECK(t.size() == 1, "set");
    bool threw = false;
    try {
      t.set({{"gemv.bf16:10x64", "rb3.c32.tall"}}, threads);
    } catch (const Error &e) {
      threw = e.status == QW_ERR_INVALID_ARGUMENT && std::string(e.what()).find("rb3.c32.tall") != std::string::npos;
    }
    CHECK(threw && t.size() == 1, "unknown candidate refused, table kept");
    threw = false;
    try {
      t.set({{"gemx.bf16:10x64", "rb2.c32.tall"}}, threads);
    } catch (const Error &e) {
      threw = e.status == QW_ERR_INVALID_ARGUMENT;
    }
    CHECK(threw, "unknown key kind refused");
    NativeTensor w;
    w.type = NativeType::BF16;
    w.rows = 10;
    w.cols = 64;
    MatJob j{as_weight(w), nullptr, nullptr, 0, ActQuant{}};
    CHECK(tile_key(&j, 1, 1) == "gemv.bf16:10x64" && tile_key(&j, 1, 4).empty(), "keys; 2..7 tokens untuned");
    CHECK(t.lookup(&j, 1, 1).rb == 2 && t.lookup(&j, 1, 1).chunk == 32, "lookup");
    CHECK(t.lookup(&j, 1, 16).kc == tile_fixed().kc, "gemm of that weight: not in the table, fixed");
    {
      TileScope s(&t);
      CHECK(tile_for(&j, 1, 1).rb == 2, "scope active");
    }
    CHECK(tile_for(&j, 1, 1).rb == 4, "scope ended: fixed");
  }
  return finish("test_tile");
}
