// host.cu — `qwlab host`: checks of the lab's host-side logic that need no GPU (they run before the device query,
// so on a CPU-only machine too): the fp64 GEMV reference as the case files call it, and toggle tile's CUDA table
// (src/opt/tile/tile_cuda.cuh) as qwlab tile and the engine's tuner select a candidate with it. Added after
// `qwlab tile` died with SIGSEGV on its first case on the H100 (2026-12-05): gemv_ref_compare indexed the empty
// bias vector tile.cu passes. Every row here fails if that (or the table's lookup) breaks again. Also the bound
// qwlab marlin checks its norm prologue with (marlin_norm_bad), on an emulation of the kernel's rstd.
#include <algorithm>
#include <stdexcept>

#include "gemv.cuh"
#include "lab.cuh"
#include "tile_cuda.cuh"

namespace {

// fp64 sums of the checked rows, in the reference's own order (k ascending), so equality is exact.
std::vector<double> direct_sums(const HostW &hw, const std::vector<float> &ain, int batch, const std::vector<int64_t> &rows) {
  std::vector<double> v;
  for (int b = 0; b < batch; ++b)
    for (int64_t r : rows) {
      double s = 0;
      for (int64_t k = 0; k < hw.cols; ++k) s += (double)hw.at(r, k) * ain[b * hw.cols + k];
      v.push_back(s);
    }
  return v;
}

double max_abs_diff(const std::vector<double> &a, const std::vector<double> &b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

void ref_compare_checks() {
  const int64_t rows = 96, cols = 136;
  const HostW hw = make_w(WT_BF16, rows, cols);
  for (int batch : {1, 3}) {
    std::vector<uint16_t> act(batch * cols);
    for (auto &v : act) v = f2bf(rndn());
    const std::vector<float> ain = gemv_ref_input(GEMV_PRO_BF16, act, {}, {}, batch, cols);
    std::vector<int64_t> chk;
    for (int64_t r = 0; r < rows; r += 5) chk.push_back(r);
    const std::vector<double> got(batch * rows, 0.0), sums = direct_sums(hw, ain, batch, chk);
    char shape[64];
    snprintf(shape, sizeof shape, "bf16 %lldx%lld b%d", (long long)rows, (long long)cols, batch);
    {  // qwlab tile's call: EPI_F32 without bias ({}) = the plain sums
      std::vector<double> outv, refv;
      gemv_ref_compare(hw, ain, batch, GEMV_EPI_F32, {}, {}, chk, got, rows, outv, refv);
      report("host: ref f32 out, no bias", shape, true, max_abs_diff(refv, sums), 0, false, 0, 0, "", 0);
    }
    {  // with a bias: the sums plus bias[r]
      std::vector<float> bias(rows);
      for (auto &v : bias) v = rndn();
      std::vector<double> want = sums;
      for (int b = 0; b < batch; ++b)
        for (size_t i = 0; i < chk.size(); ++i) want[b * chk.size() + i] += bias[chk[i]];
      std::vector<double> outv, refv;
      gemv_ref_compare(hw, ain, batch, GEMV_EPI_F32, bias, {}, chk, got, rows, outv, refv);
      report("host: ref f32 out + bias", shape, true, max_abs_diff(refv, want), 0, false, 0, 0, "", 0);
      // a bias shorter than the rows is refused with an error, never read past its end
      bool refused = false;
      try {
        std::vector<double> o2, r2;
        gemv_ref_compare(hw, ain, batch, GEMV_EPI_F32, std::vector<float>(rows / 2), {}, chk, got, rows, o2, r2);
      } catch (const std::runtime_error &) {
        refused = true;
      }
      report("host: ref short bias refused", shape, true, refused ? 0 : 1, 0, false, 0, 0, "", 0);
    }
  }
}

// The table as qwlab tile (tile.cu) and tune_cuda_shape (tile_tune_cuda.cu) build it: one entry, key of the
// weight, candidate by name, active through a scope; gemv_tile_active is what launch_gemv's dispatch reads.
void tile_table_checks() {
  WMat w;  // the key reads type, group, rows and cols only (no device memory)
  w.rows = 1152; w.cols = 896; w.type = WT_BF16;
  WMat other = w;
  other.rows = 896;
  const std::string key = cuda_gemv_key(w);
  const auto &gv = cuda_tile_candidates(true);
  int bad = 0;
  if (key != "gemv.bf16:1152x896") ++bad;
  if (gv.size() != 9 || gv[0].name != "fixed" || gv[0].gemv.r || gv[0].gemv.ks) ++bad;
  for (const auto &c : gv) {
    if (c.name == "fixed") continue;
    if ((c.gemv.r != 2 && c.gemv.r != 4) || (c.gemv.ks != 1 && c.gemv.ks != 2 && c.gemv.ks != 4 && c.gemv.ks != 8)) ++bad;
    CudaTileTable t;
    t.set({{key, c.name}});  // the brace-init both callers use: a map with one (key, name) entry
    if (t.size() != 1) ++bad;
    CudaTileScope scope(&t);
    const GemvTile a = gemv_tile_active(w), o = gemv_tile_active(other);
    if (a.r != c.gemv.r || a.ks != c.gemv.ks) ++bad;  // this matrix gets the candidate
    if (o.r || o.ks) ++bad;                           // another shape stays fixed
    {
      CudaTileScope none(nullptr);  // nesting restores the outer table
      if (gemv_tile_active(w).r) ++bad;
    }
    if (gemv_tile_active(w).r != c.gemv.r) ++bad;
  }
  if (gemv_tile_active(w).r || gemv_tile_active(w).ks) ++bad;  // no scope: fixed
  report("host: tile gemv table + scope", "9 candidates", true, bad, 0, false, 0, 0, "", 0);

  bad = 0;
  const auto &gm = cuda_tile_candidates(false);
  if (gm.size() != 3 || gm[0].name != "fixed") ++bad;
  for (const auto &c : gm) {
    CudaTileTable t;
    t.set({{cuda_gemm_key(4608, 3584), c.name}});
    CudaTileScope scope(&t);
    if (gemm_tile_active(4608, 3584).kind != c.gemm.kind || gemm_tile_active(3584, 3584).kind != GEMM_TILE_FIXED) ++bad;
  }
  report("host: tile gemm table + scope", "3 candidates", true, bad, 0, false, 0, 0, "", 0);

  // unknown names and keys are refused, and the old table stays
  CudaTileTable t;
  t.set({{key, "r4.ks2"}});
  int refused = 0;
  for (const qw::TileTable &x : {qw::TileTable{{key, "r3.ks1"}}, qw::TileTable{{"gemx.bf16:1x1", "fixed"}}}) {
    try {
      t.set(x);
    } catch (const std::runtime_error &) {
      ++refused;
    }
  }
  CudaTileScope scope(&t);
  report("host: tile table refuses unknown", "2 bad tables", true,
         (refused == 2 && gemv_tile_active(w).r == 4 && gemv_tile_active(w).ks == 2) ? 0 : 1, 0, false, 0, 0, "", 0);
}

// An fp32 rstd as the device kernels compute it (8 warps x 32 lanes, strided fmaf chains, the xor tree: lane 0's value,
// the warps' sums in order; rsqrtf modelled as the rounded 1/sqrt moved by 0..2 ulp either way).
float emulated_rstd(const float *xb, int64_t K) {
  float part[8];
  for (int w = 0; w < 8; ++w) {
    float l[32];
    for (int ln = 0; ln < 32; ++ln) {
      float s = 0.f;
      for (int64_t k = w * 32 + ln; k < K; k += 256) s = fmaf(xb[k], xb[k], s);
      l[ln] = s;
    }
    for (int o = 16; o > 0; o >>= 1) {
      float n2[32];
      for (int ln = 0; ln < 32; ++ln) n2[ln] = l[ln] + l[ln ^ o];
      memcpy(l, n2, sizeof l);
    }
    part[w] = l[0];
  }
  float t = 0.f;
  for (int w = 0; w < 8; ++w) t += part[w];
  float r = (float)(1.0 / std::sqrt((double)(t / (float)K + 1e-6f)));
  for (int d = (int)(rnd64() % 5) - 2; d != 0; d += d > 0 ? -1 : 1) r = std::nextafter(r, d > 0 ? INFINITY : 0.f);
  return r;
}

// A wrong rstd both norm checks must refuse: the mean of the squares over K - 1 instead of K (off by ~1/(2K)).
float rstd_mean_k_minus_1(const float *xb, int64_t K) {
  float t = 0.f;
  for (int64_t k = 0; k < K; ++k) t += xb[k] * xb[k];
  return 1.0f / sqrtf(t / (float)(K - 1) + 1e-6f);
}

// marlin_norm_bad (lab/marlin.cu) on an emulation of marlin_norm_kernel (opt/gemv/marlin.cu): its fp32 sum order, an
// rsqrtf modelled as the rounded 1/sqrt moved by 0..2 ulp either way. Every element must be accepted; a rstd off by
// 1/(2K) (the mean over K - 1) and a single rounding of x * rstd * w must be refused. The shape column tells how many
// elements differ from the host rstd's rounding: what the old reference (gemv_ref_input) failed on at M16.
void norm_bound_checks() {
  const int batch = 16;
  const int64_t K = 3584;
  std::vector<float> x(batch * K), nw(K);
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : nw) v = 0.5f + rndu();
  std::vector<uint16_t> dev(batch * K), off(batch * K), single(batch * K);
  for (int b = 0; b < batch; ++b) {
    const float *xb = x.data() + b * K;
    const float r = emulated_rstd(xb, K);
    const float r_off = rstd_mean_k_minus_1(xb, K);
    for (int64_t k = 0; k < K; ++k) {
      dev[b * K + k] = f2bf(bfr(xb[k] * r) * nw[k]);
      off[b * K + k] = f2bf(bfr(xb[k] * r_off) * nw[k]);
      single[b * K + k] = f2bf(xb[k] * r * nw[k]);
    }
  }
  size_t flips = 0, f2 = 0;
  const size_t bad = marlin_norm_bad(x, nw, dev, batch, K, &flips);
  char shape[96];
  snprintf(shape, sizeof shape, "b16 K3584 (%zu of %lld differ from host rstd)", flips, (long long)batch * K);
  report("host: marlin norm bound accepts", shape, true, (double)bad, 0, false, 0, 0, "", 0);
  const size_t bad_off = marlin_norm_bad(x, nw, off, batch, K, &f2), bad_single = marlin_norm_bad(x, nw, single, batch, K, &f2);
  snprintf(shape, sizeof shape, "K-1: %zu, 1 rounding: %zu bad", bad_off, bad_single);
  report("host: marlin norm bound refuses", shape, true, (bad_off && bad_single) ? 0 : 1, 0, false, 0, 0, "", 0);
}


// norm_input_candidates (lab/util.cu, the simple GEMV lab's fp32 norm cases) on the same emulation: the device's input
// vector must be one of the candidates, for every row; one normalized with the mean over K - 1 must not be.
void norm_candidate_checks() {
  for (int64_t K : {896, 3584}) {
    const int batch = 16;
    std::vector<float> x(batch * K), nw(K);
    for (auto &v : x) v = rndn() * 3.f;
    for (auto &v : nw) v = 0.5f + rndu();
    int missing = 0, off_found = 0;
    size_t most = 1;
    for (int b = 0; b < batch; ++b) {
      const float *xb = x.data() + b * K;
      const float r = emulated_rstd(xb, K);
      const float r_off = rstd_mean_k_minus_1(xb, K);
      std::vector<float> dev(K), off(K);
      for (int64_t k = 0; k < K; ++k) {
        dev[k] = bfr(bfr(xb[k] * r) * nw[k]);
        off[k] = bfr(bfr(xb[k] * r_off) * nw[k]);
      }
      const auto cands = norm_input_candidates(xb, nw, K);
      most = std::max(most, cands.size());
      missing += std::find(cands.begin(), cands.end(), dev) == cands.end();
      off_found += std::find(cands.begin(), cands.end(), off) != cands.end();
    }
    char shape[96];
    snprintf(shape, sizeof shape, "b16 K%lld (up to %zu candidates a row)", (long long)K, most);
    report("host: norm candidates hold the device input", shape, true, (double)missing, 0, false, 0, 0, "", 0);
    report("host: norm candidates refuse K-1 mean", shape, true, (double)off_found, 0, false, 0, 0, "", 0);
  }
}
}  // namespace

void run_host() {
  ref_compare_checks();
  tile_table_checks();
  norm_bound_checks();
  norm_candidate_checks();
}
