// sparse.cu — the lab cases of sparse prefill (src/opt/sparse_prefill/: vertical-slash sparse_prefill.cuh, block-sparse
// block_sparse.cuh): the GPU's selection is read back, and z is checked
// against an fp64 masked attention over exactly the keys that selection visits (plain and DCA query variants); budgets
// covering every key are checked against dense attention. Timed cases give the time against the dense flash prefill
// kernel on the same shape. Vertical-slash runs both attend arms on one selection: the SIMT kernel and the mma.sync
// flash kernel over contiguous and gathered key tiles (the default for plain attention at head_dim 64 / 128), the
// latter also against the SIMT z, bit for bit against the dense mma.sync kernel where every diagonal is selected,
// and timed against both dense flash kernels. Block-sparse runs both attend arms on one selection: the SIMT kernel and the mma.sync flash
// kernel over the selected key blocks (the default), the latter also bit for bit against the dense mma.sync kernel where
// every block is selected, and timed against it and the wgmma flash kernel. The device selection (step 2's default)
// against the host's: the same lists.
#include <cstring>
#include <functional>

#include "lab.cuh"
#include "fa3_prefill.cuh"
#include "attention.cuh"
#include "block_sparse.cuh"
#include "dca_positions.hpp"
#include "sparse_prefill.cuh"
#include "vs_tiles.hpp"

namespace {

// One case's data: a random bf16 K/V cache (slot 1) whose keys `strong(j)` carry a direction u that every query
// leans toward (so that the selection matters), the query variants (DCA: 3), device copies, the kernels' arguments.
struct LabData {
  int nH, nKV, d, pos0, n, dca_span, max_ctx;
  size_t cache_n, qn;
  std::vector<uint16_t> kc, vc, q[3];
  __nv_bfloat16 *dk = nullptr, *dv = nullptr, *dz = nullptr, *dq[3] = {nullptr, nullptr, nullptr};
  SparseAttnArgs a;
  LabData(int nH_, int nKV_, int d_, int pos0_, int n_, int span, const std::function<bool(int)> &strong)
      : nH(nH_), nKV(nKV_), d(d_), pos0(pos0_), n(n_), dca_span(span), max_ctx(pos0_ + n_ + 3),
        cache_n((size_t)2 * nKV_ * max_ctx * d_), qn((size_t)n_ * nH_ * d_), kc(cache_n), vc(cache_n) {
    const int nv = span ? 3 : 1;
    for (auto &v : kc) v = f2bf(rndn());
    for (auto &v : vc) v = f2bf(rndn());
    std::vector<float> u(d);
    for (auto &x : u) x = rndn();
    for (int j = 0; j < pos0 + n; ++j)
      if (strong(j))
        for (int kh = 0; kh < nKV; ++kh)
          for (int t = 0; t < d; ++t) kc[((size_t)1 * nKV + kh) * max_ctx * d + (size_t)j * d + t] = f2bf(2.f * u[t]);
    for (int g = 0; g < nv; ++g) {
      q[g].resize(qn);
      for (size_t e = 0; e < qn; ++e) q[g][e] = f2bf(rndn() + 0.5f * u[e % d]);
    }
    dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
    dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
    dz = (__nv_bfloat16 *)dalloc<uint16_t>(qn);
    h2d((uint16_t *)dk, kc);
    h2d((uint16_t *)dv, vc);
    for (int g = 0; g < nv; ++g) {
      dq[g] = (__nv_bfloat16 *)dalloc<uint16_t>(qn);
      h2d((uint16_t *)dq[g], q[g]);
    }
    a.out = dz; a.q[0] = dq[0]; a.q[1] = dq[1]; a.q[2] = dq[2]; a.kcache = dk; a.vcache = dv;
    a.rows = n; a.pos0 = pos0; a.slot = 1; a.n_heads = nH; a.n_kv = nKV; a.head_dim = d; a.max_ctx = max_ctx;
    a.dca_span = span;
    poison(dz, qn * 2);
  }
  LabData(const LabData &) = delete;
  LabData &operator=(const LabData &) = delete;
  ~LabData() {
    cudaFree(dk); cudaFree(dv); cudaFree(dz);
    for (auto p : dq) if (p) cudaFree(p);
  }
};

// The dense flash prefill arguments of the case, writing z to `out`.
PrefillAttnArgs dense_args(const LabData &x, __nv_bfloat16 *out) {
  PrefillAttnArgs pa;
  pa.out = out; pa.q = x.dq[0]; pa.kcache = x.dk; pa.vcache = x.dv; pa.slot = 1; pa.pos0 = x.pos0; pa.n = x.n;
  pa.n_heads = x.nH; pa.n_kv = x.nKV; pa.head_dim = x.d; pa.max_ctx = x.max_ctx;
  return pa;
}

// fp64 z of query row r (position pos0 + r), head h, over the keys j <= i that `visit` allows.
void masked_ref(std::vector<double> &out, const LabData &x, int r, int h, const std::function<bool(int)> &visit) {
  const int d = x.d, i = x.pos0 + r, kh = h / (x.nH / x.nKV);
  const size_t base = ((size_t)1 * x.nKV + kh) * x.max_ctx * d;  // slot 1
  std::vector<double> sc(i + 1, -INFINITY);
  double mx = -INFINITY;
  for (int j = 0; j <= i; ++j) {
    if (!visit(j)) continue;
    const int var = x.dca_span ? qw::dca::part(i, j, x.dca_span) : 0;
    double acc = 0;
    for (int t = 0; t < d; ++t) acc += (double)bf2f(x.q[var][((size_t)r * x.nH + h) * d + t]) * bf2f(x.kc[base + (size_t)j * d + t]);
    sc[j] = acc / std::sqrt((double)d);
    mx = std::max(mx, sc[j]);
  }
  double sum = 0;
  for (auto &s : sc) sum += (s = std::isinf(s) ? 0.0 : std::exp(s - mx));
  out.assign(d, 0.0);
  for (int j = 0; j <= i; ++j)
    if (sc[j] > 0)
      for (int t = 0; t < d; ++t) out[t] += sc[j] / sum * bf2f(x.vc[base + (size_t)j * d + t]);
}

// Checks z (already computed) against masked_ref over the keys visit(r, h, j) allows, on a sample of rows and heads;
// timed: `rerun` against the dense flash prefill kernel. Reports one row named `what [kernel]`.
void check_case(const LabData &x, const char *what, const char *kn, const std::string &shape, bool timed,
                const std::function<bool(int, int, int)> &visit, const std::function<void()> &rerun) {
  auto z = d2h((uint16_t *)x.dz, x.qn);
  std::vector<double> outv, refv, ref;
  bool nan_seen = false;
  size_t visited = 0, dense = 0;
  const int stride = std::max(1, x.n / 24);
  for (int r = 0; r < x.n; r += (r < 4 || r >= x.n - 4) ? 1 : stride) {
    const int i = x.pos0 + r;
    for (int h = 0; h < x.nH; h += std::max(1, x.nH / 4)) {
      const auto v = [&](int j) { return visit(r, h, j); };
      masked_ref(ref, x, r, h, v);
      for (int j = 0; j <= i; ++j) visited += v(j);
      dense += i + 1;
      for (int t = 0; t < x.d; ++t) {
        const float o = bf2f(z[((size_t)r * x.nH + h) * x.d + t]);
        nan_seen |= !std::isfinite(o);
        outv.push_back(o);
        refv.push_back(ref[t]);
      }
    }
  }
  bool nan2 = false;
  const double err = rel_err(outv, refv, &nan2), share = (double)visited / std::max<size_t>(1, dense);
  double us = 0, rate = 0;
  if (timed) {
    us = time_us([&](int) { rerun(); }, g_quick ? 3 : 10, 1);
    rate = 4.0 * x.d * x.nH * share * ((double)x.n * x.pos0 + (double)x.n * (x.n + 1) / 2) / (us * 1e-6) / 1e12;
    const PrefillAttnArgs pa = dense_args(x, x.dz);
    const double dense_us = time_us([&](int) { launch_prefill_attention(pa, 0); }, g_quick ? 3 : 10, 1);
    printf("  %s %.1f us vs dense flash prefill %.1f us (%.2fx), keys visited %.1f %%\n", what, us, dense_us, dense_us / us,
           100.0 * share);
  }
  char full[240];
  snprintf(full, sizeof full, "%s, visited %.1f %%", shape.c_str(), 100.0 * share);
  report(std::string(what) + " prefill [" + kn + "]", full, true, err, 1e-2, nan_seen || nan2, us, rate,
         "TFLOP/s (visited)", g_bf16_rate / 1e12);
}

struct SpCase {
  int nH, nKV, d, pos0, n, vertical, slash, local, sink, dca_span;
  bool timed;
};

// The mma arm on the SIMT arm's selection (plain attention, head_dim 64 / 128; the SIMT z in x.dz on entry): against
// the same fp64 reference, against the SIMT z, and where `full` (every key of the dense walk selected), against the
// dense mma.sync kernel bit for bit.
void mma_arm(const LabData &x, const char *label, const std::string &shape, const std::function<const char *()> &attend,
             const std::function<bool(int, int, int)> &visit, bool full, const char *full_what) {
  const auto zs = d2h((uint16_t *)x.dz, x.qn);
  poison(x.dz, x.qn * 2);
  const char *kn = attend();
  CHK(cudaDeviceSynchronize());
  check_case(x, label, kn, shape, false, visit, [] {});
  const auto zm = d2h((uint16_t *)x.dz, x.qn);
  std::vector<double> a, r;
  for (size_t e = 0; e < x.qn; ++e) a.push_back(bf2f(zm[e])), r.push_back(bf2f(zs[e]));
  bool nan_seen = false;
  const double e = rel_err(a, r, &nan_seen);
  report(std::string(label) + " mma vs SIMT [" + kn + "]", shape, true, e, 1e-2, nan_seen, 0, 0, "", 0);
  if (!full) return;
  __nv_bfloat16 *dd = (__nv_bfloat16 *)dalloc<uint16_t>(x.qn);
  poison(dd, x.qn * 2);
  launch_prefill_attention_mma(dense_args(x, dd), 0);
  const auto zd = d2h((uint16_t *)dd, x.qn);
  cudaFree(dd);
  size_t diff = 0;
  for (size_t e2 = 0; e2 < x.qn; ++e2) diff += zd[e2] != zm[e2];
  report(std::string(label) + " " + full_what + " = dense mma.sync, bits [" + kn + "]",
         shape + ", " + std::to_string(diff) + " bf16 differ", true, double(diff), 0, false, 0, 0, "", 0);
}

// The dense flash prefill kernels on the case's shape: mma.sync, then the wgmma one (the engine's dense default on
// sm_90; 0 where it does not apply), each a median of `it` with min-max, in us.
struct DenseTimes {
  double mma, mlo, mhi, wg, glo, ghi;
};
DenseTimes dense_times(const LabData &x, int it) {
  const PrefillAttnArgs pa = dense_args(x, x.dz);
  DenseTimes t{0, 0, 0, 0, 0, 0};
  t.mma = time_us([&](int) { launch_prefill_attention_mma(pa, 0); }, it, 1, &t.mlo, &t.mhi);
  try {  // throws where the wgmma kernel does not apply
    t.wg = time_us([&](int) { launch_prefill_attention_fa3(pa, 0); }, it, 1, &t.glo, &t.ghi);
  } catch (const std::exception &e) {
    printf("  (no wgmma flash here: %s)\n", e.what());
  }
  return t;
}

// Vertical-slash's attend alone (mma; SIMT up to 4k), the whole step with the mma arm (estimate, device or host
// selection with the bitmaps, attend) and the dense flash prefill kernels, on one selection: median of 10 (3 under
// --quick) after one warm-up, with min-max.
void vs_timings(const LabData &x, const qw::SparseBudget &b, SparseScratch &s, const std::string &shape, double share) {
  const int it = g_quick ? 3 : 10;
  const auto [dense, dlo, dhi, wg, glo, ghi] = dense_times(x, it);
  double mlo, mhi, wlo, whi, slo = 0, shi = 0, simt = 0;
  const double mma = time_us([&](int) { run_sparse_attend(x.a, s, 0, SparseAttend::Mma); }, it, 1, &mlo, &mhi);
  const double whole = time_us([&](int) { run_sparse_prefill(x.a, b, s, 0, nullptr, nullptr, SparseAttend::Mma,
                                                              SparseSelect::Device); }, it, 1, &wlo, &whi);
  double hlo, hhi;
  const double host = time_us([&](int) { run_sparse_prefill(x.a, b, s, 0, nullptr, nullptr, SparseAttend::Mma,
                                                             SparseSelect::Host); }, it, 1, &hlo, &hhi);
  if (x.n <= 4096) simt = time_us([&](int) { run_sparse_attend(x.a, s, 0, SparseAttend::Simt); }, it, 1, &slo, &shi);
  const double best = wg > 0 ? std::min(wg, dense) : dense;
  double elo, ehi, slo1 = 0, shi1 = 0, est_s = 0;  // step 1 alone: tensor cores, then SIMT (up to 32k)
  const double est_m = time_us([&](int) { run_sparse_estimate(x.a, s, 0, true); }, it, 1, &elo, &ehi);
  if (x.n <= 32768) est_s = time_us([&](int) { run_sparse_estimate(x.a, s, 0, false); }, it, 1, &slo1, &shi1);
  printf("  vertical-slash n %d, step 1 (estimate): mma %.1f us [%.1f-%.1f], SIMT %.1f us [%.1f-%.1f]\n", x.n, est_m, elo,
         ehi, est_s, slo1, shi1);
  printf("  vertical-slash n %d, keys visited %.1f %%: attend mma %.1f us [%.1f-%.1f], SIMT %.1f us [%.1f-%.1f]; whole step "
         "(device selection) %.1f us [%.1f-%.1f], (host selection) %.1f us [%.1f-%.1f]; dense mma.sync flash %.1f us "
         "[%.1f-%.1f], wgmma flash %.1f us [%.1f-%.1f]; against the faster dense: attend %.2fx, whole step %.2fx\n",
         x.n, 100.0 * share, mma, mlo, mhi, simt, slo, shi, whole, wlo, whi, host, hlo, hhi, dense, dlo, dhi, wg, glo, ghi,
         best / mma, best / whole);
  const double fl = 4.0 * x.d * x.nH * share * ((double)x.n * x.pos0 + (double)x.n * (x.n + 1) / 2);
  report("vertical-slash attend [attn_sparse_vs_mma]", shape + ", vs dense " + std::to_string(dense / mma).substr(0, 5) + "x",
         false, 0, 0, false, mma, fl / (mma * 1e-6) / 1e12, "TFLOP/s (visited)", g_bf16_rate / 1e12);
  report("vertical-slash step (mma arm)", shape + ", vs dense " + std::to_string(dense / whole).substr(0, 5) + "x", false,
         0, 0, false, whole, fl / (whole * 1e-6) / 1e12, "TFLOP/s (visited)", g_bf16_rate / 1e12);
}

void sparse_case(const SpCase &c) {
  const int step = std::max(11, (c.pos0 + c.n) / 9);  // a few strong columns
  const LabData x(c.nH, c.nKV, c.d, c.pos0, c.n, c.dca_span, [&](int j) { return j >= 7 && (j - 7) % step == 0; });
  qw::SparseBudget b;
  b.vertical = c.vertical; b.slash = c.slash; b.local = c.local; b.sink = c.sink;
  SparseScratch scratch;
  std::vector<std::vector<int32_t>> cols, diags, host_cols, host_diags;
  run_sparse_prefill(x.a, b, scratch, 0, &host_cols, &host_diags, SparseAttend::Simt, SparseSelect::Host);
  const char *kn = run_sparse_prefill(x.a, b, scratch, 0, &cols, &diags, SparseAttend::Simt, SparseSelect::Device);
  CHK(cudaDeviceSynchronize());
  char shape[160];
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d v%d s%d l%d k%d%s", c.nH, c.nKV, c.d, c.pos0, c.n, c.vertical,
           c.slash, c.local, c.sink, c.dca_span ? " dca" : "");
  size_t lists_differ = 0;
  for (int h = 0; h < x.nH; ++h) lists_differ += (cols[h] != host_cols[h]) + (diags[h] != host_diags[h]);
  report("vertical-slash device selection = host [vs_select_kernel]",
         std::string(shape) + ", " + std::to_string(lists_differ) + " of " + std::to_string(2 * x.nH) + " lists differ",
         true, double(lists_differ), 0, false, 0, 0, "", 0);
  if (vs_estimate_mma_applies(x.a)) {  // the tensor-core estimate against the SIMT one (fp32 order apart: close)
    const size_t ns = size_t(2) * x.nH * (c.pos0 + c.n);
    const auto ss = d2h(run_sparse_estimate(x.a, scratch, 0, false), ns);
    const auto sm = d2h(run_sparse_estimate(x.a, scratch, 0, true), ns);
    std::vector<double> va(sm.begin(), sm.end()), vr(ss.begin(), ss.end());
    bool nan_seen = false;
    const double e = rel_err(va, vr, &nan_seen);
    report("vertical-slash estimate mma vs SIMT [vs_est_lines_kernel]", shape, true, e, 1e-3, nan_seen, 0, 0, "", 0);
  }
  const auto visit = [&](int r, int h, int j) {
    return std::binary_search(cols[h].begin(), cols[h].end(), j) ||
           std::binary_search(diags[h].begin(), diags[h].end(), c.pos0 + r - j);
  };
  check_case(x, "sparse", kn, shape, false, visit, [] {});
  if (c.dca_span || !vs_mma_supported(c.d, c.pos0 + c.n)) return;  // the mma arm: plain attention, head_dim 64 / 128
  bool every_diag = true;
  for (int h = 0; h < x.nH; ++h) every_diag &= diags[h].size() == size_t(c.pos0 + c.n);
  mma_arm(x, "vertical-slash", shape, [&] { return run_sparse_attend(x.a, scratch, 0, SparseAttend::Mma); }, visit,
          every_diag, "every diagonal");
  if (c.timed) {
    double tiles = 0, gathered = 0, dense_tiles = 0;  // the mma walk's tiles against the dense walk's
    std::vector<uint32_t> kb;
    for (int h = 0; h < x.nH; ++h)
      for (int qb = c.pos0 / 64; qb <= (c.pos0 + c.n - 1) / 64; ++qb) {
        int32_t ng = 0;
        tiles += qw::sparse::vs_block_tiles(kb, cols[h].data(), (int)cols[h].size(), diags[h].data(),
                                            (int)diags[h].size(), qb, std::max(c.pos0, qb * 64),
                                            std::min(c.pos0 + c.n - 1, qb * 64 + 63), ng);
        gathered += ng;
        dense_tiles += qb + 1;
      }
    printf("  vertical-slash n %d: mma walk %.1f %% of the dense walk's tiles (contiguous %.1f %%, gathered %.1f %%)\n",
           c.n, 100.0 * (tiles + gathered) / dense_tiles, 100.0 * tiles / dense_tiles, 100.0 * gathered / dense_tiles);
    double vis = 0, dense_keys = 0;
    for (int h = 0; h < x.nH; ++h)
      for (int r = 0; r < x.n; ++r) {
        const int i = c.pos0 + r;
        dense_keys += i + 1;
        vis += qw::sparse::count_le(cols[h].data(), (int)cols[h].size(), i);
        for (int32_t o : diags[h]) {
          if (o > i) break;
          vis += !std::binary_search(cols[h].begin(), cols[h].end(), i - o);
        }
      }
    vs_timings(x, b, scratch, shape, vis / dense_keys);
  }
}

struct BsCase {
  int nH, nKV, d, pos0, n, blocks, local, sink, dca_span;
  bool timed;
};

// Keys visited (j <= i of the row's blocks), summed over every row and head, and the dense causal count.
std::pair<double, double> bs_visited(const LabData &x, const std::vector<std::vector<std::vector<int32_t>>> &blocks) {
  const int B = qw::kSparseBlock;
  double v = 0, dense = 0;
  for (int h = 0; h < x.nH; ++h)
    for (int i = x.pos0; i < x.pos0 + x.n; ++i) {
      dense += i + 1;
      for (int32_t kb : blocks[h][i / B - x.pos0 / B]) v += std::min(B, i - kb * B + 1);
    }
  return {v, dense};
}

// Attend alone (SIMT up to 4k; mma), the whole step with the mma arm (estimate + host selection + attend) and the dense
// mma.sync flash prefill, on one selection: median of 10 (3 under --quick) after one warm-up, with min-max.
void bs_timings(const LabData &x, const qw::SparseBudget &b, BlockSparseScratch &s, const std::string &shape,
                const std::vector<std::vector<std::vector<int32_t>>> &blocks) {
  const int it = g_quick ? 3 : 10;
  const auto [vis, dense_keys] = bs_visited(x, blocks);
  const auto [dense, dlo, dhi, wg, glo, ghi] = dense_times(x, it);
  double mlo, mhi, wlo, whi, hlo, hhi, slo = 0, shi = 0, simt = 0;
  const double mma = time_us([&](int) { run_block_sparse_attend(x.a, s, 0, SparseAttend::Mma); }, it, 1, &mlo, &mhi);
  double elo, ehi, wslo, wshi;  // step 1 alone: the grouped scoring kernel, then the per-head warp one
  const double est = time_us([&](int) { run_block_sparse_estimate(x.a, s, 0, false); }, it, 1, &elo, &ehi);
  const double est_w = time_us([&](int) { run_block_sparse_estimate(x.a, s, 0, true); }, it, 1, &wslo, &wshi);
  printf("  block-sparse n %d, step 1 (pooling + scores): grouped %.1f us [%.1f-%.1f], per-head warp %.1f us [%.1f-%.1f]\n",
         x.n, est, elo, ehi, est_w, wslo, wshi);
  const double whole = time_us([&](int) { run_block_sparse_prefill(x.a, b, s, 0, nullptr, SparseAttend::Mma, SparseSelect::Device); },
                               it, 1, &wlo, &whi);
  const double host = time_us([&](int) { run_block_sparse_prefill(x.a, b, s, 0, nullptr, SparseAttend::Mma, SparseSelect::Host); },
                              it, 1, &hlo, &hhi);
  if (x.n <= 4096) simt = time_us([&](int) { run_block_sparse_attend(x.a, s, 0, SparseAttend::Simt); }, it, 1, &slo, &shi);
  const double best = wg > 0 ? std::min(wg, dense) : dense;
  printf("  block-sparse n %d, keys visited %.1f %%: attend mma %.1f us [%.1f-%.1f], SIMT %.1f us [%.1f-%.1f]; "
         "whole step (device selection) %.1f us [%.1f-%.1f], (host selection) %.1f us [%.1f-%.1f]; dense mma.sync flash "
         "%.1f us [%.1f-%.1f], wgmma flash %.1f us [%.1f-%.1f]; against the faster dense: attend %.2fx, whole step %.2fx\n",
         x.n, 100.0 * vis / dense_keys, mma, mlo, mhi, simt, slo, shi, whole, wlo, whi, host, hlo, hhi, dense, dlo, dhi,
         wg, glo, ghi, best / mma, best / whole);
  const double fl = 4.0 * x.d * vis;
  report("block-sparse attend [attn_sparse_bs_mma]", shape + ", vs dense " + std::to_string(dense / mma).substr(0, 5) + "x",
         false, 0, 0, false, mma, fl / (mma * 1e-6) / 1e12, "TFLOP/s (visited)", g_bf16_rate / 1e12);
  report("block-sparse step (mma arm)", shape + ", vs dense " + std::to_string(dense / whole).substr(0, 5) + "x", false, 0,
         0, false, whole, fl / (whole * 1e-6) / 1e12, "TFLOP/s (visited)", g_bf16_rate / 1e12);
  report("dense flash prefill [attn_prefill_mma]", shape, false, 0, 0, false, dense,
         4.0 * x.d * dense_keys / (dense * 1e-6) / 1e12, "TFLOP/s", g_bf16_rate / 1e12);
}

void block_sparse_case(const BsCase &c) {
  const int B = qw::kSparseBlock;
  const LabData x(c.nH, c.nKV, c.d, c.pos0, c.n, c.dca_span, [&](int j) { return j >= B && (j / B - 1) % 5 == 0; });  // strong blocks
  qw::SparseBudget b;
  b.blocks = c.blocks; b.local = c.local; b.sink = c.sink;
  BlockSparseScratch scratch;
  std::vector<std::vector<std::vector<int32_t>>> blocks, host_blocks;
  run_block_sparse_prefill(x.a, b, scratch, 0, &host_blocks, SparseAttend::Simt, SparseSelect::Host);
  const char *kn = run_block_sparse_prefill(x.a, b, scratch, 0, &blocks, SparseAttend::Simt, SparseSelect::Device);
  CHK(cudaDeviceSynchronize());
  char shape[160];
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d blocks %d l%d k%d%s", c.nH, c.nKV, c.d, c.pos0, c.n, c.blocks,
           c.local, c.sink, c.dca_span ? " dca" : "");
  size_t lists_differ = 0, nlists = 0;
  for (int h = 0; h < x.nH; ++h)
    for (size_t q = 0; q < host_blocks[h].size(); ++q) ++nlists, lists_differ += blocks[h][q] != host_blocks[h][q];
  report("block-sparse device selection = host [bs_select_kernel]",
         std::string(shape) + ", " + std::to_string(lists_differ) + " of " + std::to_string(nlists) + " lists differ", true,
         double(lists_differ), 0, false, 0, 0, "", 0);
  {  // the grouped scoring kernel against the per-head warp kernel: the same fmaf chain, so the same bits (kb <= qb)
    const int nkb = (c.pos0 + c.n - 1) / B + 1, qb0 = c.pos0 / B, nqb = scratch.nqb;
    const size_t ns = size_t(c.nH) * nqb * nkb;
    const auto sg = d2h(run_block_sparse_estimate(x.a, scratch, 0, false), ns);
    const auto sw = d2h(run_block_sparse_estimate(x.a, scratch, 0, true), ns);
    size_t differ = 0, n = 0;
    for (int h = 0; h < c.nH; ++h)
      for (int q = 0; q < nqb; ++q)
        for (int kb = 0; kb <= qb0 + q; ++kb) {
          const size_t e = (size_t(h) * nqb + q) * nkb + kb;
          ++n, differ += std::memcmp(&sg[e], &sw[e], sizeof(float)) != 0;
        }
    report("block-sparse grouped scores = warp scores, bits [bs_score_gqa_kernel]",
           std::string(shape) + ", " + std::to_string(differ) + " of " + std::to_string(n) + " differ", true,
           double(differ), 0, false, 0, 0, "", 0);
  }
  const auto visit = [&](int r, int h, int j) {
    const std::vector<int32_t> &bl = blocks[h][(c.pos0 + r) / B - c.pos0 / B];
    return std::binary_search(bl.begin(), bl.end(), j / B);
  };
  check_case(x, "block-sparse", kn, shape, false, visit, [] {});
  if (c.dca_span || (c.d != 64 && c.d != 128)) return;  // the mma arm: plain attention, head_dim 64 / 128
  bool full = true;
  for (int h = 0; h < x.nH; ++h)
    for (size_t q = 0; q < blocks[h].size(); ++q) full &= blocks[h][q].size() == size_t(c.pos0 / B + q + 1);
  mma_arm(x, "block-sparse", shape, [&] { return run_block_sparse_attend(x.a, scratch, 0, SparseAttend::Mma); }, visit,
          full, "every block");
  if (c.timed) bs_timings(x, b, scratch, shape, blocks);
}

}  // namespace

void run_sparse() {
  const int all = 1 << 30;
  sparse_case({4, 1, 64, 0, 40, all, all, 1, 0, 0, false});          // shorter than 64 queries, full budget = dense
  sparse_case({14, 2, 64, 50, 300, 0, 0, 5, 3, 0, false});           // 0 extra lines: sink + local only
  sparse_case({14, 2, 64, 0, 700, 32, 32, 64, 4, 0, false});
  sparse_case({4, 1, 64, 100, 600, 16, 16, 32, 4, 448, false});      // DCA query variants (span 448)
  sparse_case({28, 4, 128, 0, 4096, all, all, 100, 30, 0, false});   // full budget at 4k = dense
  sparse_case({14, 2, 64, 50, 300, 0, all, 5, 3, 0, false});         // every diagonal, pos0 inside a block (mma: bits = dense)
  sparse_case({4, 1, 128, 1000, 77, 40, 40, 16, 4, 0, false});       // a chunk over a cache, inside one query block
  sparse_case({28, 4, 128, 0, 4096, 256, 256, 100, 30, 0, true});
  // clustered diagonals, as real heads have them (a local band of 2048 + sink + 1000 columns, no scattered slash
  // lines): the walk covers ~20 % of the dense tiles at 32k (33 band blocks + ~17 gathered per query block), where
  // the random selections below reach every tile (the tenth run: 103 %)
  sparse_case({28, 4, 128, 0, 32768, 1000, 0, 2048, 64, 0, true});
  if (!g_quick) sparse_case({28, 4, 128, 0, 16384, 1000, 1000, 100, 30, 0, true});
  if (!g_quick) sparse_case({28, 4, 128, 0, 32768, 1000, 2048, 100, 30, 0, true});
  if (!g_quick) sparse_case({28, 4, 128, 0, 131072, 1000, 2048, 100, 30, 0, true});  // issue 14's 128k
}

void run_block_sparse() {
  const int all = 1 << 30;
  block_sparse_case({4, 1, 64, 0, 40, all, 1, 0, 0, false});          // shorter than one block, every block = dense
  block_sparse_case({14, 2, 64, 50, 300, 0, 64, 1, 0, false});        // no extra blocks: sink + own block, pos0 inside a block
  block_sparse_case({14, 2, 64, 50, 300, all, 64, 1, 0, false});      // every block, pos0 inside a block (mma: bits = dense)
  block_sparse_case({4, 1, 128, 1000, 77, 3, 64, 64, 0, false});      // a chunk over a cache, inside one query block
  block_sparse_case({14, 2, 64, 0, 700, 2, 64, 64, 0, false});
  block_sparse_case({4, 1, 64, 100, 600, 2, 128, 64, 448, false});    // DCA query variants (span 448 = 7 blocks)
  block_sparse_case({28, 4, 128, 0, 4096, all, 100, 30, 0, false});   // every block at 4k = dense
  block_sparse_case({28, 4, 128, 0, 4096, 8, 128, 64, 0, true});
  if (!g_quick) block_sparse_case({28, 4, 128, 0, 16384, 16, 128, 64, 0, true});
  if (!g_quick) block_sparse_case({28, 4, 128, 0, 32768, 16, 128, 64, 0, true});
  if (!g_quick) block_sparse_case({28, 4, 128, 0, 131072, 16, 128, 64, 0, true});  // issue 14's 128k (2048 key blocks)
}
