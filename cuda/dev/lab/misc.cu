// misc.cu — the lab cases of the small kernels (rope + KV write, rmsnorm, embed, argmax, SwiGLU) and of
// the device sampler against common/sampling.hpp written out with a full sort.
#include "embed.cuh"
#include "norm.cuh"
#include "rope.cuh"
#include "sample.cuh"
#include "swiglu.cuh"
#include "lab.cuh"

void run_misc() {
  // rope + kv write: exact (same bf16 rounding order as the reference)
  {
    const int rows = 37, nH = 14, nKV = 2, d = 64, max_ctx = 4096, QKV = (nH + 2 * nKV) * d;
    std::vector<float> qkv(rows * QKV), bias(QKV), inv(d / 2);
    for (auto &v : qkv) v = rndn();
    for (auto &v : bias) v = rndn() * 0.3f;
    for (int i = 0; i < d / 2; ++i) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)d);
    std::vector<int32_t> pos(rows), slot(rows);
    for (int r = 0; r < rows; ++r) { pos[r] = (int)(rnd64() % 4000); slot[r] = r % 2; }
    float *dqkv = dalloc<float>(qkv.size()), *db = dalloc<float>(QKV), *dinv = dalloc<float>(d / 2);
    h2d(dqkv, qkv); h2d(db, bias); h2d(dinv, inv);
    int32_t *dpos = dalloc<int32_t>(rows), *dslot = dalloc<int32_t>(rows);
    h2d(dpos, pos); h2d(dslot, slot);
    const size_t cn = (size_t)2 * nKV * max_ctx * d;
    __nv_bfloat16 *dq = (__nv_bfloat16 *)dalloc<uint16_t>(rows * nH * d), *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cn),
                  *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cn);
    poison(dq, rows * nH * d * 2);
    RopeKvArgs a;
    a.q_out = dq; a.kcache = dk; a.vcache = dv; a.qkv = dqkv; a.qkv_ld = QKV; a.bias = db; a.row_pos = dpos; a.row_slot = dslot;
    a.inv_freq = dinv; a.rows = rows; a.n_heads = nH; a.n_kv = nKV; a.head_dim = d; a.max_ctx = max_ctx;
    launch_rope_kv(a, 0);
    CHK(cudaDeviceSynchronize());
    auto qo = d2h((uint16_t *)dq, rows * nH * d);
    auto ko = d2h((uint16_t *)dk, cn);
    auto vo = d2h((uint16_t *)dv, cn);
    std::vector<double> outv, refv;
    for (int r = 0; r < rows; ++r)
      for (int h = 0; h < nH + nKV; ++h)
        for (int j = 0; j < d / 2; ++j) {
          const float c = bfr(cosf((float)pos[r] * inv[j])), s = bfr(sinf((float)pos[r] * inv[j]));
          const float x1 = bfr(qkv[r * QKV + h * d + j] + bias[h * d + j]), x2 = bfr(qkv[r * QKV + h * d + j + d / 2] + bias[h * d + j + d / 2]);
          const float o1 = bfr(bfr(x1 * c) + bfr(-x2 * s)), o2 = bfr(bfr(x2 * c) + bfr(x1 * s));
          float g1, g2;
          if (h < nH) { g1 = bf2f(qo[r * nH * d + h * d + j]); g2 = bf2f(qo[r * nH * d + h * d + j + d / 2]); }
          else {
            const size_t base = (((size_t)slot[r] * nKV + (h - nH)) * max_ctx + pos[r]) * d;
            g1 = bf2f(ko[base + j]); g2 = bf2f(ko[base + j + d / 2]);
          }
          outv.push_back(g1); refv.push_back(o1); outv.push_back(g2); refv.push_back(o2);
        }
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < nKV * d; ++i) {
        const size_t base = (((size_t)slot[r] * nKV + i / d) * max_ctx + pos[r]) * d + i % d;
        outv.push_back(bf2f(vo[base]));
        refv.push_back(bfr(qkv[r * QKV + nH * d + nKV * d + i] + bias[nH * d + nKV * d + i]));
      }
    bool nan_seen;
    const double err = rel_err(outv, refv, &nan_seen);
    // sin/cos of large arguments may differ by an ulp between libm and CUDA: allow bf16-level error
    report("rope+kv write", "37 rows h14/2 d64", true, err, 4e-3, nan_seen, 0, 0, "", 0);
    cudaFree(dqkv); cudaFree(db); cudaFree(dinv); cudaFree(dpos); cudaFree(dslot); cudaFree(dq); cudaFree(dk); cudaFree(dv);
  }
  // rmsnorm
  {
    const int rows = 13, cols = 896;
    std::vector<float> x(rows * cols), w(cols);
    for (auto &v : x) v = rndn() * 5;
    for (auto &v : w) v = rndn();
    float *dx = dalloc<float>(x.size()), *dw = dalloc<float>(cols);
    h2d(dx, x); h2d(dw, w);
    __nv_bfloat16 *dy = (__nv_bfloat16 *)dalloc<uint16_t>(x.size());
    poison(dy, x.size() * 2);
    launch_rmsnorm(dy, nullptr, dx, dw, rows, cols, 1e-6f, 0);
    auto y = d2h((uint16_t *)dy, x.size());
    std::vector<double> o, r;
    for (int i = 0; i < rows; ++i) {
      double ss = 0;
      for (int k = 0; k < cols; ++k) ss += (double)x[i * cols + k] * x[i * cols + k];
      const float rstd = 1.f / sqrtf((float)(ss / cols) + 1e-6f);
      for (int k = 0; k < cols; ++k) { r.push_back(bfr(bfr(x[i * cols + k] * rstd) * w[k])); o.push_back(bf2f(y[i * cols + k])); }
    }
    bool ns;
    const double e = rel_err(o, r, &ns);
    if (ns) {  // the H100 runs (2026-12-05) failed here with every finite element exact: say which are not finite
      int bad = 0, still = 0, first = -1;
      for (size_t i = 0; i < y.size(); ++i)
        if (!std::isfinite(o[i])) { ++bad; still += y[i] == 0xffff; if (first < 0) first = (int)i; }
      printf("rmsnorm: %d of %zu outputs not finite (%d still the poison 0xffff), first at row %d col %d (ref %g)\n", bad,
             y.size(), still, first / cols, first % cols, r[first]);
    }
    report("rmsnorm", "13x896", true, e, 4e-3, ns, 0, 0, "", 0);
    cudaFree(dx); cudaFree(dw); cudaFree(dy);
  }
  // embed (w8) + argmax (ties -> lowest id, NaN ignored) + swiglu (interleaved and split)
  {
    HostW hw = make_w(WT_W8, 1000, 256);
    DevW w = upload_w(hw);
    std::vector<int32_t> tok = {5, 999, 0, 5, 123};
    int32_t *dt = dalloc<int32_t>(tok.size());
    h2d(dt, tok);
    float *dx = dalloc<float>(tok.size() * 256);
    poison(dx, tok.size() * 256 * 4);
    launch_embed(dx, w.m, dt, (int)tok.size(), 0);
    auto x = d2h(dx, tok.size() * 256);
    std::vector<double> o, r;
    for (size_t t = 0; t < tok.size(); ++t) for (int k = 0; k < 256; ++k) { o.push_back(x[t * 256 + k]); r.push_back(hw.at(tok[t], k)); }
    bool ns;
    report("embed w8", "5 tokens x 256", true, rel_err(o, r, &ns), 0, ns, 0, 0, "", 0);
    free_w(w); cudaFree(dt); cudaFree(dx);

    const int V = 151936;
    std::vector<float> lg(3 * V);
    for (auto &v : lg) v = rndn();
    lg[77] = 9.f; lg[78] = 9.f; lg[5] = NAN;                  // row 0: tie -> 77
    lg[V + 100] = NAN; lg[V + 150000] = 12.f;                  // row 1: 150000
    for (int i = 0; i < V; ++i) lg[2 * V + i] = NAN;            // row 2: all NaN -> 0
    float *dl = dalloc<float>(lg.size());
    h2d(dl, lg);
    int32_t *dout = dalloc<int32_t>(3);
    launch_argmax(dout, dl, 3, V, V, 0);
    auto am = d2h(dout, 3);
    const bool ok = am[0] == 77 && am[1] == 150000 && am[2] == 0;
    report("argmax (ties, NaN)", "3x151936", true, ok ? 0 : 1, 0, false, 0, 0, "", 0);
    cudaFree(dl); cudaFree(dout);

    const int T = 7, I = 333;
    std::vector<uint16_t> gu(T * 2 * I);
    for (auto &v : gu) v = f2bf(rndn() * 3);
    __nv_bfloat16 *dgu = (__nv_bfloat16 *)dalloc<uint16_t>(gu.size()), *dh = (__nv_bfloat16 *)dalloc<uint16_t>(T * I);
    h2d((uint16_t *)dgu, gu);
    for (int il = 0; il < 2; ++il) {
      poison(dh, T * I * 2);
      launch_swiglu(dh, nullptr, dgu, T, I, il == 1, 0);
      auto h = d2h((uint16_t *)dh, T * I);
      std::vector<double> ho, hr;
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < I; ++j) {
          const float g = bf2f(il ? gu[(t * I + j) * 2] : gu[t * 2 * I + j]);
          const float u = bf2f(il ? gu[(t * I + j) * 2 + 1] : gu[t * 2 * I + I + j]);
          hr.push_back(bfr(bfr(g / (1.f + expf(-g))) * u));
          ho.push_back(bf2f(h[t * I + j]));
        }
      bool ns2;
      report(il ? "swiglu interleaved" : "swiglu split", "7x333", true, rel_err(ho, hr, &ns2), 4e-3, ns2, 0, 0, "", 0);
    }
    cudaFree(dgu); cudaFree(dh);
  }
}

// ------------------------------------------------------------------------------------------------ sampling
// CPU reference: common/sampling.hpp written out with a full sort.
static int ref_sample(const float *lg, int V, float T, int k, float top_p, float u) {
  std::vector<std::pair<float, int>> c;
  for (int i = 0; i < V; ++i) if (!std::isnan(lg[i])) c.push_back({lg[i], i});
  if (c.empty()) return 0;
  std::sort(c.begin(), c.end(), [](auto &a, auto &b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (!(T > 0)) return c[0].second;
  if (k > 0 && (size_t)k < c.size()) c.resize(k);
  const double m = c[0].first;
  std::vector<double> w(c.size());
  double total = 0;
  for (size_t i = 0; i < c.size(); ++i) { w[i] = exp(((double)c[i].first - m) / (double)T); total += w[i]; }
  size_t n_keep = c.size();
  double kept = total;
  if (top_p < 1.0f) {
    double acc = 0;
    for (size_t i = 0; i < c.size(); ++i) { acc += w[i]; if (acc >= (double)top_p * total) { n_keep = i + 1; break; } }
    kept = acc;
  }
  const double target = (double)u * kept;
  double acc = 0;
  for (size_t i = 0; i < n_keep; ++i) { acc += w[i]; if (target < acc) return c[i].second; }
  return c[n_keep - 1].second;
}

void run_sampling() {
  const int V = 151936, R = 16;
  std::vector<float> lg((size_t)R * V);
  for (auto &v : lg) v = rndn() * 3.f;
  for (int r = 0; r < R; ++r) {
    lg[(size_t)r * V + 17] = NAN;                                  // NaN never sampled
    lg[(size_t)r * V + 1000] = lg[(size_t)r * V + 1001] = 11.f;    // a tie at the top
  }
  float *dl = dalloc<float>(lg.size());
  h2d(dl, lg);
  double *wb = dalloc<double>((size_t)R * V);
  SampleRow *dp = dalloc<SampleRow>(R);
  int32_t *dout = dalloc<int32_t>(R);
  const SampleRow cfgs[] = {{0.f, 0, 1.f, 0.f}, {0.7f, 0, 1.f, 0.f}, {1.f, 40, 1.f, 0.f}, {0.8f, 0, 0.9f, 0.f},
                            {1.3f, 100, 0.5f, 0.f}, {0.5f, 1, 1.f, 0.f}, {2.f, 5000, 0.95f, 0.f}, {1.f, 0, 0.3f, 0.f}};
  int total = 0, mism = 0;
  double us = 0;
  for (const SampleRow &base : cfgs) {
    for (int rep = 0; rep < 4; ++rep) {
      std::vector<SampleRow> ps(R, base);
      for (int r = 0; r < R; ++r) ps[r].u = rep == 0 && r == 0 ? 0.f : (rep == 1 && r == 0 ? 0.99999994f : rndu());
      h2d(dp, ps);
      CHK(cudaMemset(dout, 0xff, R * 4));
      launch_sample(dout, dl, dp, wb, R, V, V, 0);
      CHK(cudaDeviceSynchronize());
      auto got = d2h(dout, R);
      std::vector<int> wants(R);  // the CPU reference sorts 152k candidates per draw: rows in parallel
      #pragma omp parallel for
      for (int r = 0; r < R; ++r) wants[r] = ref_sample(&lg[(size_t)r * V], V, ps[r].temperature, ps[r].top_k, ps[r].top_p, ps[r].u);
      for (int r = 0; r < R; ++r) {
        const int want = wants[r];
        ++total;
        if (got[r] != want) {
          ++mism;
          if (mism <= 5) printf("  sample mismatch: T %.2f k %d p %.2f u %.7f: got %d want %d\n", ps[r].temperature, ps[r].top_k, ps[r].top_p, ps[r].u, got[r], want);
        }
      }
    }
    if (base.temperature == 1.3f) us = time_us([&](int) { launch_sample(dout, dl, dp, wb, 1, V, V, 0); }, 20, 2);
  }
  char shape[64];
  snprintf(shape, sizeof shape, "%d draws, V %d", total, V);
  report("sample (greedy/T/top-k/top-p)", shape, true, (double)mism / total, 0, false, us, 0, "", 0);
  cudaFree(dl); cudaFree(wb); cudaFree(dp); cudaFree(dout);
}
