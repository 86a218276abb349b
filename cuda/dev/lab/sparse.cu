// sparse.cu — the lab cases of vertical-slash sparse prefill (src/opt/sparse_prefill/sparse_prefill.cuh; compile-checked
// only until the first GPU run): the GPU's selection is read back, and z is checked against an fp64 masked attention
// over exactly the keys that selection visits (plain and DCA query variants); budgets covering every key are checked
// against dense attention. Timed cases give the time against the dense flash prefill kernel on the same shape.
#include "lab.cuh"
#include "attention.cuh"
#include "dca_positions.hpp"
#include "block_sparse.cuh"
#include "sparse_prefill.cuh"

namespace {

struct SpCase {
  int nH, nKV, d, pos0, n, vertical, slash, local, sink, dca_span;
  bool timed;
};

// fp64 z of query row r (position pos0 + r), head h, over the keys j <= i that `visit` allows.
template <class F>
void masked_ref(std::vector<double> &out, const std::vector<uint16_t> *q, const std::vector<uint16_t> &kc,
                const std::vector<uint16_t> &vc, const SpCase &c, int max_ctx, int r, int h, F visit) {
  const int d = c.d, i = c.pos0 + r, kh = h / (c.nH / c.nKV);
  const size_t base = ((size_t)1 * c.nKV + kh) * max_ctx * d;  // slot 1
  std::vector<double> sc(i + 1, -INFINITY);
  double mx = -INFINITY;
  for (int j = 0; j <= i; ++j) {
    if (!visit(j)) continue;
    const int var = c.dca_span ? qw::dca::part(i, j, c.dca_span) : 0;
    double acc = 0;
    for (int t = 0; t < d; ++t) acc += (double)bf2f(q[var][((size_t)r * c.nH + h) * d + t]) * bf2f(kc[base + (size_t)j * d + t]);
    sc[j] = acc / std::sqrt((double)d);
    mx = std::max(mx, sc[j]);
  }
  double sum = 0;
  for (auto &s : sc) sum += (s = std::isinf(s) ? 0.0 : std::exp(s - mx));
  out.assign(d, 0.0);
  for (int j = 0; j <= i; ++j)
    if (sc[j] > 0)
      for (int t = 0; t < d; ++t) out[t] += sc[j] / sum * bf2f(vc[base + (size_t)j * d + t]);
}

void sparse_case(const SpCase &c) {
  const int max_ctx = c.pos0 + c.n + 3, nv = c.dca_span ? 3 : 1;
  const size_t cache_n = (size_t)2 * c.nKV * max_ctx * c.d, qn = (size_t)c.n * c.nH * c.d;
  std::vector<uint16_t> kc(cache_n), vc(cache_n), q[3];
  for (auto &v : kc) v = f2bf(rndn());
  for (auto &v : vc) v = f2bf(rndn());
  // a few strong columns (keys aligned with a direction every query shares), so that the pattern matters
  std::vector<float> u(c.d);
  for (auto &x : u) x = rndn();
  for (int j = 7; j < c.pos0 + c.n; j += std::max(11, (c.pos0 + c.n) / 9))
    for (int kh = 0; kh < c.nKV; ++kh)
      for (int t = 0; t < c.d; ++t) kc[((size_t)1 * c.nKV + kh) * max_ctx * c.d + (size_t)j * c.d + t] = f2bf(2.f * u[t]);
  for (int g = 0; g < nv; ++g) {
    q[g].resize(qn);
    for (size_t e = 0; e < qn; ++e) q[g][e] = f2bf(rndn() + 0.5f * u[e % c.d]);
  }
  __nv_bfloat16 *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n), *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
  __nv_bfloat16 *dz = (__nv_bfloat16 *)dalloc<uint16_t>(qn), *dq[3] = {nullptr, nullptr, nullptr};
  h2d((uint16_t *)dk, kc); h2d((uint16_t *)dv, vc);
  for (int g = 0; g < nv; ++g) { dq[g] = (__nv_bfloat16 *)dalloc<uint16_t>(qn); h2d((uint16_t *)dq[g], q[g]); }
  SparseAttnArgs a;
  a.out = dz; a.q[0] = dq[0]; a.q[1] = dq[1]; a.q[2] = dq[2]; a.kcache = dk; a.vcache = dv;
  a.rows = c.n; a.pos0 = c.pos0; a.slot = 1; a.n_heads = c.nH; a.n_kv = c.nKV; a.head_dim = c.d; a.max_ctx = max_ctx;
  a.dca_span = c.dca_span;
  qw::SparseBudget b;
  b.vertical = c.vertical; b.slash = c.slash; b.local = c.local; b.sink = c.sink;
  SparseScratch scratch;
  std::vector<std::vector<int32_t>> cols, diags;
  poison(dz, qn * 2);
  const char *kn = run_sparse_prefill(a, b, scratch, 0, &cols, &diags);
  CHK(cudaDeviceSynchronize());
  auto z = d2h((uint16_t *)dz, qn);
  std::vector<double> outv, refv;
  bool nan_seen = false;
  size_t visited = 0, dense = 0;
  const int stride = std::max(1, c.n / 24);
  for (int r = 0; r < c.n; r += (r < 4 || r >= c.n - 4) ? 1 : stride) {
    const int i = c.pos0 + r;
    for (int h = 0; h < c.nH; h += std::max(1, c.nH / 4)) {
      auto visit = [&](int j) {
        return std::binary_search(cols[h].begin(), cols[h].end(), j) || std::binary_search(diags[h].begin(), diags[h].end(), i - j);
      };
      std::vector<double> ref;
      masked_ref(ref, q, kc, vc, c, max_ctx, r, h, visit);
      for (int j = 0; j <= i; ++j) visited += visit(j);
      dense += i + 1;
      for (int t = 0; t < c.d; ++t) {
        const float o = bf2f(z[((size_t)r * c.nH + h) * c.d + t]);
        nan_seen |= !std::isfinite(o);
        outv.push_back(o);
        refv.push_back(ref[t]);
      }
    }
  }
  bool nan2 = false;
  const double err = rel_err(outv, refv, &nan2);
  double us = 0, rate = 0;
  if (c.timed) {
    us = time_us([&](int) { run_sparse_prefill(a, b, scratch, 0); }, g_quick ? 3 : 10, 1);
    rate = 4.0 * c.d * c.nH * (double)visited / std::max<size_t>(1, dense) * ((double)c.n * c.pos0 + (double)c.n * (c.n + 1) / 2) / (us * 1e-6) / 1e12;
    PrefillAttnArgs pa;
    pa.out = dz; pa.q = dq[0]; pa.kcache = dk; pa.vcache = dv; pa.slot = 1; pa.pos0 = c.pos0; pa.n = c.n; pa.n_heads = c.nH;
    pa.n_kv = c.nKV; pa.head_dim = c.d; pa.max_ctx = max_ctx;
    const double dense_us = time_us([&](int) { launch_prefill_attention(pa, 0); }, g_quick ? 3 : 10, 1);
    printf("  sparse %.1f us vs dense flash prefill %.1f us (%.2fx), keys visited %.1f %%\n", us, dense_us, dense_us / us,
           100.0 * visited / std::max<size_t>(1, dense));
  }
  char shape[160];
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d v%d s%d l%d k%d%s, visited %.1f %%", c.nH, c.nKV, c.d, c.pos0, c.n,
           c.vertical, c.slash, c.local, c.sink, c.dca_span ? " dca" : "", 100.0 * visited / std::max<size_t>(1, dense));
  report(std::string("sparse prefill [") + kn + "]", shape, true, err, 1e-2, nan_seen || nan2, us, rate, "TFLOP/s (visited)",
         g_bf16_rate / 1e12);
  cudaFree(dk); cudaFree(dv); cudaFree(dz);
  for (auto p : dq) if (p) cudaFree(p);
}

}  // namespace

void run_sparse() {
  const int all = 1 << 30;
  sparse_case({4, 1, 64, 0, 40, all, all, 1, 0, 0, false});          // shorter than 64 queries, full budget = dense
  sparse_case({14, 2, 64, 50, 300, 0, 0, 5, 3, 0, false});           // 0 extra lines: sink + local only
  sparse_case({14, 2, 64, 0, 700, 32, 32, 64, 4, 0, false});
  sparse_case({4, 1, 64, 100, 600, 16, 16, 32, 4, 448, false});      // DCA query variants (span 448)
  sparse_case({28, 4, 128, 0, 4096, all, all, 100, 30, 0, false});   // full budget at 4k = dense
  sparse_case({28, 4, 128, 0, 4096, 256, 256, 100, 30, 0, true});
  if (!g_quick) sparse_case({28, 4, 128, 0, 16384, 1000, 1000, 100, 30, 0, true});
}

// Block-sparse (src/opt/sparse_prefill/block_sparse.cuh; compile-checked only until the first GPU run): the GPU's block
// selection is read back and z checked against the fp64 masked attention over exactly those blocks (keys <= i), plain
// and DCA; every block visited = dense attention. Timed cases: time against the dense flash prefill kernel.
namespace {

struct BsCase {
  int nH, nKV, d, pos0, n, blocks, local, sink, dca_span;
  bool timed;
};

void block_sparse_case(const BsCase &c) {
  const int max_ctx = c.pos0 + c.n + 3, nv = c.dca_span ? 3 : 1, B = qw::kSparseBlock;
  const size_t cache_n = (size_t)2 * c.nKV * max_ctx * c.d, qn = (size_t)c.n * c.nH * c.d;
  std::vector<uint16_t> kc(cache_n), vc(cache_n), q[3];
  for (auto &v : kc) v = f2bf(rndn());
  for (auto &v : vc) v = f2bf(rndn());
  // a few strong key blocks (aligned with a direction every query shares), so that the selection matters
  std::vector<float> u(c.d);
  for (auto &x : u) x = rndn();
  for (int j0 = B; j0 < c.pos0 + c.n; j0 += 5 * B)
    for (int j = j0; j < std::min(j0 + B, c.pos0 + c.n); ++j)
      for (int kh = 0; kh < c.nKV; ++kh)
        for (int t = 0; t < c.d; ++t) kc[((size_t)1 * c.nKV + kh) * max_ctx * c.d + (size_t)j * c.d + t] = f2bf(u[t] + 0.5f * rndn());
  for (int g = 0; g < nv; ++g) {
    q[g].resize(qn);
    for (size_t e = 0; e < qn; ++e) q[g][e] = f2bf(rndn() + 0.5f * u[e % c.d]);
  }
  __nv_bfloat16 *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n), *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
  __nv_bfloat16 *dz = (__nv_bfloat16 *)dalloc<uint16_t>(qn), *dq[3] = {nullptr, nullptr, nullptr};
  h2d((uint16_t *)dk, kc); h2d((uint16_t *)dv, vc);
  for (int g = 0; g < nv; ++g) { dq[g] = (__nv_bfloat16 *)dalloc<uint16_t>(qn); h2d((uint16_t *)dq[g], q[g]); }
  SparseAttnArgs a;
  a.out = dz; a.q[0] = dq[0]; a.q[1] = dq[1]; a.q[2] = dq[2]; a.kcache = dk; a.vcache = dv;
  a.rows = c.n; a.pos0 = c.pos0; a.slot = 1; a.n_heads = c.nH; a.n_kv = c.nKV; a.head_dim = c.d; a.max_ctx = max_ctx;
  a.dca_span = c.dca_span;
  qw::SparseBudget b;
  b.blocks = c.blocks; b.local = c.local; b.sink = c.sink;
  BlockSparseScratch scratch;
  std::vector<std::vector<std::vector<int32_t>>> blocks;
  poison(dz, qn * 2);
  const char *kn = run_block_sparse_prefill(a, b, scratch, 0, &blocks);
  CHK(cudaDeviceSynchronize());
  auto z = d2h((uint16_t *)dz, qn);
  const int qb0 = c.pos0 / B;
  std::vector<double> outv, refv;
  bool nan_seen = false;
  size_t visited = 0, dense = 0;
  const int stride = std::max(1, c.n / 24);
  for (int r = 0; r < c.n; r += (r < 4 || r >= c.n - 4) ? 1 : stride) {
    const int i = c.pos0 + r;
    for (int h = 0; h < c.nH; h += std::max(1, c.nH / 4)) {
      const std::vector<int32_t> &bl = blocks[h][i / B - qb0];
      auto visit = [&](int j) { return std::binary_search(bl.begin(), bl.end(), j / B); };
      std::vector<double> ref;
      masked_ref(ref, q, kc, vc, SpCase{c.nH, c.nKV, c.d, c.pos0, c.n, 0, 0, 0, 0, c.dca_span, false}, max_ctx, r, h, visit);
      for (int j = 0; j <= i; ++j) visited += visit(j);
      dense += i + 1;
      for (int t = 0; t < c.d; ++t) {
        const float o = bf2f(z[((size_t)r * c.nH + h) * c.d + t]);
        nan_seen |= !std::isfinite(o);
        outv.push_back(o);
        refv.push_back(ref[t]);
      }
    }
  }
  bool nan2 = false;
  const double err = rel_err(outv, refv, &nan2);
  double us = 0, rate = 0;
  if (c.timed) {
    us = time_us([&](int) { run_block_sparse_prefill(a, b, scratch, 0); }, g_quick ? 3 : 10, 1);
    rate = 4.0 * c.d * c.nH * (double)visited / std::max<size_t>(1, dense) * ((double)c.n * c.pos0 + (double)c.n * (c.n + 1) / 2) / (us * 1e-6) / 1e12;
    PrefillAttnArgs pa;
    pa.out = dz; pa.q = dq[0]; pa.kcache = dk; pa.vcache = dv; pa.slot = 1; pa.pos0 = c.pos0; pa.n = c.n; pa.n_heads = c.nH;
    pa.n_kv = c.nKV; pa.head_dim = c.d; pa.max_ctx = max_ctx;
    const double dense_us = time_us([&](int) { launch_prefill_attention(pa, 0); }, g_quick ? 3 : 10, 1);
    printf("  block-sparse %.1f us vs dense flash prefill %.1f us (%.2fx), keys visited %.1f %%\n", us, dense_us,
           dense_us / us, 100.0 * visited / std::max<size_t>(1, dense));
  }
  char shape[160];
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d blocks %d l%d k%d%s, visited %.1f %%", c.nH, c.nKV, c.d, c.pos0, c.n,
           c.blocks, c.local, c.sink, c.dca_span ? " dca" : "", 100.0 * visited / std::max<size_t>(1, dense));
  report(std::string("block-sparse prefill [") + kn + "]", shape, true, err, 1e-2, nan_seen || nan2, us, rate,
         "TFLOP/s (visited)", g_bf16_rate / 1e12);
  cudaFree(dk); cudaFree(dv); cudaFree(dz);
  for (auto p : dq) if (p) cudaFree(p);
}

}  // namespace

void run_block_sparse() {
  const int all = 1 << 30;
  block_sparse_case({4, 1, 64, 0, 40, all, 1, 0, 0, false});          // shorter than one block, every block = dense
  block_sparse_case({14, 2, 64, 50, 300, 0, 64, 1, 0, false});        // no extra blocks: sink + own block, pos0 inside a block
  block_sparse_case({14, 2, 64, 0, 700, 2, 64, 64, 0, false});
  block_sparse_case({4, 1, 64, 100, 600, 2, 128, 64, 448, false});    // DCA query variants (span 448 = 7 blocks)
  block_sparse_case({28, 4, 128, 0, 4096, all, 100, 30, 0, false});   // every block at 4k = dense
  block_sparse_case({28, 4, 128, 0, 4096, 8, 128, 64, 0, true});
  if (!g_quick) block_sparse_case({28, 4, 128, 0, 16384, 16, 128, 64, 0, true});
}
