// gemv.cu — the lab cases of the decode GEMV (gemv.cuh): every epilogue, weight type and batch against a
// CPU reference, the fused q|k|v + RoPE + KV-write epilogue, K-split and batch invariance.
#include "gemv.cuh"
#include "lab.cuh"


// The scratch gemv = marlin passes every GEMV (a.mws; gemv_mma.cu's split over blocks sums its parts there): 16 MB of
// partials and 64 K counters, zeroed once (the kernels leave them zero).
static decltype(GemvArgs::mws) lab_mws() {
  static decltype(GemvArgs::mws) ws;
  if (!ws.part) {
    ws.part_bytes = 16u << 20;
    ws.part = dalloc<float>(ws.part_bytes / 4);
    ws.cnt_n = 1 << 16;
    ws.cnt = dalloc<int32_t>(ws.cnt_n);
    CHK(cudaMemset(ws.cnt, 0, (size_t)ws.cnt_n * 4));
  }
  return ws;
}

// Checks rows {0..63, every 7th, last 64} (all rows for small matrices); every output is checked for poison.
void gemv_case(const char *label, int type, int64_t rows, int64_t cols, int batch, int pro, int epi, bool timed) {
  HostW hw = make_w(type, rows, cols, type == WT_W8 && (cols % 16 == 0) && (rnd64() & 1) ? 16 : 32);
  DevW w = upload_w(hw);
  const int64_t out_cols = epi == GEMV_EPI_SWIGLU ? rows / 2 : rows;
  const GemvInputs in(batch, rows, cols, out_cols);
  const std::vector<uint16_t> &act = in.act;
  const std::vector<float> &x = in.x, &nw = in.nw, &bias = in.bias, &base = in.base;
  const bool out_bf = epi == GEMV_EPI_BF16 || epi == GEMV_EPI_SWIGLU;
  void *dout = dalloc<float>(batch * out_cols);
  __nv_bfloat16 *daux = (__nv_bfloat16 *)dalloc<uint16_t>(batch * out_cols);
  GemvArgs a;
  a.mws = lab_mws();
  a.epi = epi; a.out = dout; a.out_ld = out_cols; a.bias = (epi == GEMV_EPI_BF16 || epi == GEMV_EPI_F32) ? in.db : nullptr;
  a.aux = epi == GEMV_EPI_SWIGLU ? daux : nullptr; a.aux_ld = out_cols;
  a.w = w.m; a.batch = batch; a.pro = pro;
  in.into(a);
  if (epi == GEMV_EPI_ADD_F32) h2d((float *)dout, base);
  else poison(dout, batch * out_cols * 4);
  const char *variant = launch_gemv(a, 0);
  CHK(cudaDeviceSynchronize());
  // reference
  const std::vector<float> ain = gemv_ref_input(pro, act, x, nw, batch, cols);
  std::vector<int64_t> check_rows;
  for (int64_t r = 0; r < rows; ++r)
    if (rows <= 20000 || r < 64 || r >= rows - 64 || r % 7 == 0) check_rows.push_back(r);
  const size_t out_elems = (size_t)batch * out_cols;
  std::vector<float> of(out_elems);
  if (out_bf) { auto o16 = d2h((uint16_t *)dout, out_elems); for (size_t i = 0; i < out_elems; ++i) of[i] = bf2f(o16[i]); }
  else of = d2h((float *)dout, out_elems);
  bool unwritten = false;
  for (float v : of) if (!std::isfinite(v)) unwritten = true;
  std::vector<double> outv, refv;
  const std::vector<double> got(of.begin(), of.end());
  if (pro == GEMV_PRO_NORM && !out_bf) {
    // fp32 outputs (tolerance 1e-4) against, per batch row, the closest of the references the device's rstd can give
    // (norm_input_candidates); bf16 outputs (1e-2) do not see a flipped input rounding
    for (int b = 0; b < batch; ++b) {
      const std::vector<double> gb(got.begin() + b * out_cols, got.begin() + (b + 1) * out_cols);
      const std::vector<float> bb = epi == GEMV_EPI_ADD_F32 ? std::vector<float>(base.begin() + b * out_cols, base.begin() + (b + 1) * out_cols)
                                                             : std::vector<float>{};
      double best = INFINITY;
      std::vector<double> bo, br;
      for (const auto &cand : norm_input_candidates(x.data() + b * cols, nw, cols)) {
        std::vector<double> o, r;
        gemv_ref_compare(hw, cand, 1, epi, bias, bb, check_rows, gb, out_cols, o, r);
        double sse = 0;
        for (size_t i = 0; i < o.size(); ++i) sse += (o[i] - r[i]) * (o[i] - r[i]);
        if (!(sse >= best)) { best = sse; bo = std::move(o); br = std::move(r); }  // NaN (unwritten) is kept: it fails
      }
      outv.insert(outv.end(), bo.begin(), bo.end());
      refv.insert(refv.end(), br.begin(), br.end());
    }
  } else {
    gemv_ref_compare(hw, ain, batch, epi, bias, base, check_rows, got, out_cols, outv, refv);
  }
  bool nan_seen;
  double err = rel_err(outv, refv, &nan_seen);
  nan_seen |= unwritten;
  const double tol = out_bf ? 1e-2 : 1e-4;
  double us = 0, rate = 0;
  if (timed) {
    // rotate weight copies so that >= 512 MB are cycled (L2 is 60 MB; small matrices get up to 256 copies)
    const size_t wb = hw.bytes();
    const int ncopies = (int)std::min<size_t>(256, std::max<size_t>(1, ((512u << 20) + wb - 1) / std::max<size_t>(wb, 1)));
    std::vector<DevW> copies{w};
    for (int i = 1; i < ncopies; ++i) copies.push_back(upload_w(hw));
    us = time_us([&](int i) { GemvArgs t = a; t.w = copies[i % ncopies].m; if (epi == GEMV_EPI_ADD_F32) t.epi = GEMV_EPI_F32; launch_gemv(t, 0); },
                 g_quick ? 20 : 100, 5);
    for (int i = 1; i < ncopies; ++i) free_w(copies[i]);
    const double bytes = (double)wb + (double)batch * cols * (pro == GEMV_PRO_NORM ? 4 : 2) + (double)batch * out_cols * (out_bf ? 2 : 4);
    rate = bytes / (us * 1e-6) / 1e9;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "%s %lldx%lld b%d", tname(type), (long long)rows, (long long)cols, batch);
  std::string name = std::string("gemv ") + label + " [" + variant + "]";
  report(name, shape, true, err, tol, nan_seen, us, rate, "GB/s", g_copy_bw / 1e9);
  free_w(w);
  cudaFree(dout); cudaFree(daux);
}

// GEMV_EPI_QKV_ROPE: norm + q|k|v (pair-interleaved rows) + bias + RoPE + KV write, against the CPU chain
// norm -> projection (original rows) -> bias -> bf16 -> RoPE (HF rounding order).
void qkv_rope_case(const char *label, int B, int H, int nH, int nKV, int d, bool timed) {
  const int QKV = (nH + 2 * nKV) * d, qdim = nH * d, kvdim = nKV * d, max_ctx = 300;
  HostW orig = make_w(WT_BF16, QKV, H);
  HostW perm = orig;
  for (int64_t p = 0; p < QKV; ++p) {
    const int64_t o = qkv_rope_orig_row(p, nH, nKV, d);
    memcpy(&perm.data[p * H * 2], &orig.data[o * H * 2], H * 2);
  }
  DevW w = upload_w(perm);
  std::vector<float> x(B * H), nw(H), bias(QKV), inv(d / 2);
  for (auto &v : x) v = rndn() * 2.f;
  for (auto &v : nw) v = 0.5f + rndu();
  for (auto &v : bias) v = rndn() * 0.1f;
  for (int i = 0; i < d / 2; ++i) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)d);
  std::vector<int32_t> pos(B), slot(B);
  for (int b = 0; b < B; ++b) { pos[b] = (int)(rnd64() % max_ctx); slot[b] = b + 1; }
  float *dx = dalloc<float>(x.size()), *dnw = dalloc<float>(H), *db = dalloc<float>(QKV), *dinv = dalloc<float>(d / 2);
  h2d(dx, x); h2d(dnw, nw); h2d(db, bias); h2d(dinv, inv);
  int32_t *dpos = dalloc<int32_t>(B), *dslot = dalloc<int32_t>(B);
  h2d(dpos, pos); h2d(dslot, slot);
  const size_t cn = (size_t)(B + 1) * nKV * max_ctx * d;
  __nv_bfloat16 *kc = (__nv_bfloat16 *)dalloc<uint16_t>(cn), *vc = (__nv_bfloat16 *)dalloc<uint16_t>(cn);
  __nv_bfloat16 *q = (__nv_bfloat16 *)dalloc<uint16_t>(B * qdim), *ko = (__nv_bfloat16 *)dalloc<uint16_t>(B * kvdim),
                *vo = (__nv_bfloat16 *)dalloc<uint16_t>(B * kvdim);
  poison(kc, cn * 2); poison(vc, cn * 2); poison(q, B * qdim * 2); poison(ko, B * kvdim * 2); poison(vo, B * kvdim * 2);
  GemvArgs a;
  a.mws = lab_mws();
  a.epi = GEMV_EPI_QKV_ROPE; a.w = w.m; a.batch = B; a.pro = GEMV_PRO_NORM; a.x = dx; a.x_ld = H; a.norm_w = dnw;
  a.eps = 1e-6f; a.bias = db;
  a.rope.q_out = q; a.rope.k_out = ko; a.rope.v_out = vo; a.rope.kcache = kc; a.rope.vcache = vc; a.rope.pos = dpos;
  a.rope.slot = dslot; a.rope.inv_freq = dinv; a.rope.n_heads = nH; a.rope.n_kv = nKV; a.rope.head_dim = d;
  a.rope.max_ctx = max_ctx;
  const char *variant = launch_gemv(a, 0);
  CHK(cudaDeviceSynchronize());
  auto hq = d2h((uint16_t *)q, B * qdim), hk = d2h((uint16_t *)ko, B * kvdim), hv = d2h((uint16_t *)vo, B * kvdim);
  auto hkc = d2h((uint16_t *)kc, cn), hvc = d2h((uint16_t *)vc, cn);
  std::vector<double> outv, refv;
  for (int b = 0; b < B; ++b) {
    double ss = 0;
    for (int k = 0; k < H; ++k) ss += (double)x[b * H + k] * x[b * H + k];
    const float rstd = 1.0f / sqrtf((float)(ss / H) + 1e-6f);
    std::vector<float> ain(H);
    for (int k = 0; k < H; ++k) ain[k] = bfr(bfr(x[b * H + k] * rstd) * nw[k]);
    std::vector<float> y(QKV);
    for (int r = 0; r < QKV; ++r) {
      double s = 0;
      for (int k = 0; k < H; ++k) s += (double)orig.at(r, k) * ain[k];
      y[r] = bfr((float)s + bias[r]);
    }
    for (int hh = 0; hh < nH + nKV; ++hh)
      for (int j = 0; j < d / 2; ++j) {
        const float cc = bfr(cosf((float)pos[b] * inv[j])), sn = bfr(sinf((float)pos[b] * inv[j]));
        const float x1 = y[hh * d + j], x2 = y[hh * d + j + d / 2];
        const float o1 = bfr(bfr(x1 * cc) + bfr(-x2 * sn)), o2 = bfr(bfr(x2 * cc) + bfr(x1 * sn));
        if (hh < nH) {
          outv.push_back(bf2f(hq[b * qdim + hh * d + j])); refv.push_back(o1);
          outv.push_back(bf2f(hq[b * qdim + hh * d + j + d / 2])); refv.push_back(o2);
        } else {
          const int kh = hh - nH;
          const size_t base = (((size_t)slot[b] * nKV + kh) * max_ctx + pos[b]) * d;
          outv.push_back(bf2f(hkc[base + j])); refv.push_back(o1);
          outv.push_back(bf2f(hkc[base + j + d / 2])); refv.push_back(o2);
          outv.push_back(bf2f(hk[b * kvdim + kh * d + j])); refv.push_back(o1);
        }
      }
    for (int i = 0; i < kvdim; ++i) {
      const size_t base = (((size_t)slot[b] * nKV + i / d) * max_ctx + pos[b]) * d + i % d;
      outv.push_back(bf2f(hvc[base])); refv.push_back(y[qdim + kvdim + i]);
      outv.push_back(bf2f(hv[b * kvdim + i])); refv.push_back(y[qdim + kvdim + i]);
    }
  }
  bool nan_seen;
  const double err = rel_err(outv, refv, &nan_seen);
  double us = 0, rate = 0;
  if (timed) {
    us = time_us([&](int) { launch_gemv(a, 0); }, g_quick ? 20 : 100, 5);
    rate = (double)perm.bytes() / (us * 1e-6) / 1e9;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "bf16 %dx%d b%d h%d/%d", QKV, H, B, nH, nKV);
  report(std::string("gemv ") + label + " qkv+rope+kv [" + variant + "]", shape, true, err, 5e-3, nan_seen, us, rate, "GB/s",
         g_copy_bw / 1e9);
  free_w(w);
  cudaFree(dx); cudaFree(dnw); cudaFree(db); cudaFree(dinv); cudaFree(dpos); cudaFree(dslot); cudaFree(kc); cudaFree(vc);
  cudaFree(q); cudaFree(ko); cudaFree(vo);
}

// Batch invariance: row b = 0 of a batch-B GEMV must equal the batch-1 result bit for bit (the same inputs in
// slot 0, other slots random), for every B the engine uses. Checked on a K-split shape, a two-K-tile shape
// (the tile length shrinks with B), an R = 4 shape and the fused SwiGLU epilogue.
static void gemv_invariance_case(const char *label, int type, int64_t rows, int64_t cols, int pro, int epi) {
  HostW hw = make_w(type, rows, cols, 32);
  DevW w = upload_w(hw);
  const int maxb = 16;
  const int64_t out_cols = epi == GEMV_EPI_SWIGLU ? rows / 2 : rows;
  std::vector<uint16_t> act(maxb * cols);
  std::vector<float> x(maxb * cols), nw(cols);
  for (auto &v : act) v = f2bf(rndn());
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : nw) v = 0.5f + rndu();
  __nv_bfloat16 *dact = (__nv_bfloat16 *)dalloc<uint16_t>(act.size());
  float *dx = dalloc<float>(x.size()), *dnw = dalloc<float>(cols);
  h2d((uint16_t *)dact, act); h2d(dx, x); h2d(dnw, nw);
  void *dout = dalloc<float>(maxb * out_cols);
  GemvArgs a;
  a.mws = lab_mws();
  a.epi = epi; a.out = dout; a.out_ld = out_cols; a.w = w.m; a.pro = pro; a.act = dact; a.act_ld = cols; a.x = dx;
  a.x_ld = cols; a.norm_w = dnw; a.eps = 1e-6f;
  const size_t ebytes = (epi == GEMV_EPI_BF16 || epi == GEMV_EPI_SWIGLU) ? 2 : 4;
  std::vector<uint8_t> ref;
  int64_t diff = 0;
  std::string variants;
  for (int B : {1, 2, 3, 4, 8, 16}) {
    a.batch = B;
    poison(dout, maxb * out_cols * 4);
    const char *v = launch_gemv(a, 0);
    CHK(cudaDeviceSynchronize());
    std::vector<uint8_t> got(out_cols * ebytes);
    CHK(cudaMemcpy(got.data(), dout, got.size(), cudaMemcpyDeviceToHost));
    if (B == 1) ref = got;
    else for (size_t i = 0; i < got.size(); i += ebytes) diff += memcmp(&got[i], &ref[i], ebytes) != 0;
    if (B == 1 || B == 16) variants += std::string(variants.empty() ? "" : "/") + v;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "%s %lldx%lld b1..16", tname(type), (long long)rows, (long long)cols);
  // err = number of row-0 outputs that differ from batch 1 (tolerance 0: bit-identical)
  report(std::string("gemv batch-invariance ") + label + " [" + variants + "]", shape, true, (double)diff, 0, false, 0, 0,
         "GB/s", g_copy_bw / 1e9);
  free_w(w);
  cudaFree(dact); cudaFree(dx); cudaFree(dnw); cudaFree(dout);
}

// Small bf16 matrices on tensor cores with K split over blocks (gemv_mma.cu, QW_GEMV_MMA_SPLIT; gemv_pick.hpp
// gemv_mma_split): the 0.5B shapes at every batch kind, awkward ones (300 rows: a partial last tile; 65 chunks of 32 over
// uneven parts; 65536 columns: several K tiles a part), the fused q|k|v + RoPE epilogue, bits alone = in a batch; then timed against
// the CUDA-core kernel at b1 / b8 / b16 (split off: rows gemv_vec_*).
static void gemv_mma_split_cases() {
  gemv_force_mma(1);
  gemv_force_mma_split(1);
  for (int b : {1, 2, 3, 8, 9, 16}) gemv_case("split 0.5B qkv norm", WT_BF16, 1152, 896, b, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  gemv_case("split awkward bf16out+bias", WT_BF16, 300, 2080, 5, GEMV_PRO_BF16, GEMV_EPI_BF16, false);
  gemv_case("split awkward swiglu", WT_BF16, 2 * 330, 2080, 16, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, false);
  gemv_case("split 2 K tiles a part", WT_BF16, 400, 65536, 12, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, false);
  qkv_rope_case("split 0.5B", 16, 896, 14, 2, 64, false);
  qkv_rope_case("split 0.5B", 1, 896, 14, 2, 64, false);
  gemv_invariance_case("split 0.5B o_proj", WT_BF16, 896, 896, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("split 0.5B down", WT_BF16, 896, 4864, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("split awkward (300 x 2080)", WT_BF16, 300, 2080, GEMV_PRO_NORM, GEMV_EPI_BF16);
  for (int on : {1, 0}) {
    gemv_force_mma_split(on);
    for (int b : {1, 8, 16}) {
      gemv_case("0.5B qkv norm", WT_BF16, 1152, 896, b, GEMV_PRO_NORM, GEMV_EPI_F32, true);
      gemv_case("0.5B o_proj +res", WT_BF16, 896, 896, b, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
      gemv_case("0.5B down +res", WT_BF16, 896, 4864, b, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
      if (!g_quick) gemv_case("1.5B down +res", WT_BF16, 1536, 8960, b, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
    }
  }
  gemv_force_mma_split(-1);
  gemv_force_mma(-1);
}

void run_gemv() {
  qkv_rope_case("0.5B", 1, 896, 14, 2, 64, true);
  qkv_rope_case("7B", 1, 3584, 28, 4, 128, true);
  qkv_rope_case("1.5B", 5, 1536, 12, 2, 128, false);
  qkv_rope_case("tiny", 16, 256, 4, 1, 64, false);
  struct S { const char *label; int64_t rows, cols; int pro, epi; };
  const S s7[] = {{"7B qkv norm+bias", 4608, 3584, GEMV_PRO_NORM, GEMV_EPI_F32},
                  {"7B o_proj +res", 3584, 3584, GEMV_PRO_BF16, GEMV_EPI_ADD_F32},
                  {"7B gate_up norm+swiglu", 37888, 3584, GEMV_PRO_NORM, GEMV_EPI_SWIGLU},
                  {"7B down +res", 3584, 18944, GEMV_PRO_BF16, GEMV_EPI_ADD_F32},
                  {"7B lm_head norm", 152064, 3584, GEMV_PRO_NORM, GEMV_EPI_F32}};
  const S s05[] = {{"0.5B qkv", 1152, 896, GEMV_PRO_NORM, GEMV_EPI_F32},
                   {"0.5B o_proj", 896, 896, GEMV_PRO_BF16, GEMV_EPI_ADD_F32},
                   {"0.5B gate_up", 9728, 896, GEMV_PRO_NORM, GEMV_EPI_SWIGLU},
                   {"0.5B down", 896, 4864, GEMV_PRO_BF16, GEMV_EPI_ADD_F32},
                   {"0.5B lm_head", 151936, 896, GEMV_PRO_NORM, GEMV_EPI_F32}};
  // quick mode skips the lm_heads (96 % / 82 % of copy bandwidth in the first run; 0.7 G host randoms)
  for (const S &s : s7) if (!g_quick || s.rows < 100000) gemv_case(s.label, WT_BF16, s.rows, s.cols, 1, s.pro, s.epi, true);
  for (const S &s : s05) if (!g_quick || s.rows < 100000) gemv_case(s.label, WT_BF16, s.rows, s.cols, 1, s.pro, s.epi, true);
  gemv_case("1.5B qkv norm+bias", WT_BF16, 2048, 1536, 1, GEMV_PRO_NORM, GEMV_EPI_F32, true);
  gemv_case("1.5B o_proj +res", WT_BF16, 1536, 1536, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
  gemv_case("1.5B down +res", WT_BF16, 1536, 8960, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
  // K-split inside the block (batch 1, R = 2): every ks on awkward shapes (checked; rows not a multiple of the
  // block's rows, a second K tile where some K parts have no chunk), then ks = 1 timed against the auto pick.
  for (int ks : {1, 2, 4, 8}) {
    gemv_force_ksplit(ks);
    gemv_case("ks awkward bf16out+bias", WT_BF16, 77, 896, 1, GEMV_PRO_BF16, GEMV_EPI_BF16, false);
    gemv_case("ks awkward swiglu", WT_F16, 2 * 333, 904, 1, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, false);
    gemv_case("ks awkward w4 +res", WT_W4, 130, 1024, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, false);
    gemv_case("ks awkward w8 norm", WT_W8, 46, 2048, 1, GEMV_PRO_NORM, GEMV_EPI_F32, false);
    gemv_case("ks 2 K tiles", WT_BF16, 40, 24576, 1, GEMV_PRO_NORM, GEMV_EPI_F32, false);
    qkv_rope_case(ks == 1 ? "ks1 1.5B" : ks == 2 ? "ks2 1.5B" : ks == 4 ? "ks4 1.5B" : "ks8 1.5B", 1, 1536, 12, 2, 128, false);
  }
  gemv_force_ksplit(1);
  gemv_case("0.5B qkv ks=1 (A/B)", WT_BF16, 1152, 896, 1, GEMV_PRO_NORM, GEMV_EPI_F32, true);
  gemv_case("0.5B down ks=1 (A/B)", WT_BF16, 896, 4864, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
  gemv_case("1.5B down +res ks=1 (A/B)", WT_BF16, 1536, 8960, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
  gemv_force_ksplit(0);
  gemv_invariance_case("0.5B o_proj (K-split)", WT_BF16, 896, 896, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("1.5B qkv norm (K-split)", WT_BF16, 2048, 1536, GEMV_PRO_NORM, GEMV_EPI_BF16);
  gemv_invariance_case("7B down (2 K tiles at b>=2)", WT_BF16, 3584, 18944, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("0.5B gate_up swiglu (R=4 at b1)", WT_BF16, 9728, 896, GEMV_PRO_NORM, GEMV_EPI_SWIGLU);
  gemv_invariance_case("w8 awkward (K 2080)", WT_W8, 46, 2080, GEMV_PRO_NORM, GEMV_EPI_F32);
  gemv_invariance_case("f16 26 x 24584 (2 K tiles at b1)", WT_F16, 26, 24584, GEMV_PRO_BF16, GEMV_EPI_F32);
  for (int b : {2, 4, 8, 16}) {
    if (g_quick && b != 16) continue;
    if (!g_quick) gemv_case("7B gate_up norm+swiglu", WT_BF16, 37888, 3584, b, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, true);
    gemv_case("7B down +res", WT_BF16, 3584, 18944, b, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
  }
  // other weight types (simple dequant path; W4 / W8 in 16-byte loads, gemv_q16): correctness + GB/s of the packed bytes
  for (int t : {WT_F32, WT_F16, WT_W8, WT_W4}) {
    gemv_case("7B o_proj", t, 3584, 3584, 1, GEMV_PRO_BF16, GEMV_EPI_F32, true);
    if (g_quick) gemv_case("1.5B down", t, 1536, 8960, 3, GEMV_PRO_BF16, GEMV_EPI_F32, false);  // 1/5 of the host randoms
    else gemv_case("7B down", t, 3584, 18944, 3, GEMV_PRO_BF16, GEMV_EPI_F32, true);
  }
  // W4 / W8 at batch 1 and 16 on the 7B shapes, gemv_q16 against the 8-weight kernel (QW_GEMV_Q16=0), both timed;
  // arm 2: gemv_q16 on the pipelined walk (QW_GEMV_Q16_PIPE=1, batch <= 4: rows gemv_q16p_*), batch 1 only
  for (int arm : {1, 2, 0}) {
    setenv("QW_GEMV_Q16", arm ? "1" : "0", 1);
    if (arm == 2) setenv("QW_GEMV_Q16_PIPE", "1", 1);
    else unsetenv("QW_GEMV_Q16_PIPE");
    for (int t : {WT_W4, WT_W8}) {
      gemv_case("7B gate_up norm+swiglu", t, 37888, 3584, 1, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, true);
      gemv_case("7B down +res", t, 3584, 18944, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
      gemv_case("7B qkv norm", t, 4608, 3584, 1, GEMV_PRO_NORM, GEMV_EPI_F32, true);
      if (arm == 2) gemv_case("7B o_proj", t, 3584, 3584, 1, GEMV_PRO_BF16, GEMV_EPI_F32, true);
      if (g_quick || arm == 2) continue;
      for (int b : {16}) {  // batched decode: the staged activations are read b times per weight
        gemv_case("7B gate_up norm+swiglu", t, 37888, 3584, b, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, true);
        gemv_case("7B down +res", t, 3584, 18944, b, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, true);
      }
    }
  }
  unsetenv("QW_GEMV_Q16");
  gemv_invariance_case("w4 7B o_proj (q16)", WT_W4, 3584, 3584, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("w4 awkward (K 2080: 65 chunks of 32)", WT_W4, 130, 2080, GEMV_PRO_NORM, GEMV_EPI_F32);
  // the pipelined walk at batch <= 4 and the plain one above: the same bits (batches 1..16 mix both)
  setenv("QW_GEMV_Q16_PIPE", "1", 1);
  gemv_invariance_case("w4 7B o_proj (q16 pipe at b<=4)", WT_W4, 3584, 3584, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("w8 7B down (q16 pipe at b<=4, K 18944)", WT_W8, 3584, 18944, GEMV_PRO_BF16, GEMV_EPI_F32);
  gemv_invariance_case("w4 awkward (q16 pipe at b<=4, K 2080)", WT_W4, 130, 2080, GEMV_PRO_NORM, GEMV_EPI_F32);
  unsetenv("QW_GEMV_Q16_PIPE");
  gemv_mma_split_cases();
  // awkward shapes: odd rows, cols not a multiple of 8 (generic kernel), bf16 out with bias
  gemv_case("awkward bf16out", WT_BF16, 77, 896, 5, GEMV_PRO_BF16, GEMV_EPI_BF16, false);
  gemv_case("awkward cols%8!=0", WT_BF16, 301, 900, 3, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  gemv_case("awkward swiglu", WT_F16, 2 * 333, 904, 16, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, false);
  gemv_case("awkward w4 b7", WT_W4, 129, 1024, 7, GEMV_PRO_NORM, GEMV_EPI_F32, false);
}
