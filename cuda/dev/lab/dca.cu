// dca.cu — the lab cases of Dual Chunk Attention: prefill on the tensor-core kernels (attention_prefill.cu with
// opt/dca/dca_tiles.cuh; on sm_90 the wgmma kernel too, opt/attention/fa3_prefill.cuh) and decode split into key windows, each against the SIMT kernel of opt/dca in one block per
// row and head (launch_dca_attention, itself checked against the CPU reference by test/gpu/dca.test.ts), on the
// same random queries and cache; both timed.
#include "attention.cuh"
#include "dca.cuh"
#include "fa3_prefill.cuh"
#include "lab.cuh"

namespace {

// Relative error of bf16 output z against ref (both n values on the device); nan_seen also when either holds a
// non-finite value (unwritten poison).
double bf16_err(const __nv_bfloat16 *z, const __nv_bfloat16 *ref, size_t n, bool *nan_seen) {
  const auto hz = d2h((const uint16_t *)z, n), hr = d2h((const uint16_t *)ref, n);
  std::vector<double> outv(n), refv(n);
  bool unwritten = false;
  for (size_t i = 0; i < n; ++i) {
    outv[i] = bf2f(hz[i]);
    refv[i] = bf2f(hr[i]);
    unwritten |= !std::isfinite(outv[i]) || !std::isfinite(refv[i]);
  }
  const double err = rel_err(outv, refv, nan_seen);
  *nan_seen |= unwritten;
  return err;
}

// Random bf16 values (scaled) on the device; the host copy in `h`.
__nv_bfloat16 *random_bf16(std::vector<uint16_t> &h, size_t n, float scale) {
  h.resize(n);
  for (auto &v : h) v = f2bf(rndn() * scale);
  auto *d = (__nv_bfloat16 *)dalloc<uint16_t>(n);
  h2d((uint16_t *)d, h);
  return d;
}

// Poisons both outputs, runs the reference arm then the new one once, and compares them (err, nan_seen); returns the
// new arm's kernel name.
const char *check_arms(__nv_bfloat16 *z, __nv_bfloat16 *z_ref, size_t n, const std::function<void()> &run_ref,
                       const std::function<const char *()> &run, double *err, bool *nan_seen) {
  poison(z_ref, n * 2);
  poison(z, n * 2);
  run_ref();
  const char *variant = run();
  CHK(cudaDeviceSynchronize());
  *err = bf16_err(z, z_ref, n, nan_seen);
  return variant;
}

// Times the new arm and the SIMT reference arm (when timed) and reports both rows, the new one checked against the
// reference (err, nan_seen); `work` per run in the unit's base (FLOP or bytes), divided by unit_div for the rate.
void report_arms(const std::string &what, const char *variant, const char *shape, double err, bool nan_seen, bool timed,
                 const std::function<void()> &run, const std::function<void()> &run_ref, int iters, int ref_iters,
                 double work, double unit_div, const char *unit, double ceiling) {
  double us = 0, us_ref = 0;
  if (timed) {
    us = time_us([&](int) { run(); }, iters, 2);
    us_ref = time_us([&](int) { run_ref(); }, ref_iters, 1);
  }
  auto rate = [&](double t) { return t > 0 ? work / (t * 1e-6) / unit_div : 0; };
  report(what + " [" + variant + " vs attn_dca_simt]", shape, true, err, 1e-2, nan_seen, us, rate(us), unit, ceiling);
  if (timed) report(what + " [attn_dca_simt]", shape, false, 0, 1e-2, false, us_ref, rate(us_ref), unit, ceiling);
}

// One sequence in cache slot 1: rows at positions pos0 .. pos0 + n - 1; chunk / local as the dca toggle's.
void dca_case(int nH, int nKV, int d, int pos0, int n, int chunk, int local, bool timed) {
  const int max_ctx = pos0 + n + 5;
  const size_t cache_n = (size_t)2 * nKV * max_ctx * d, q_n = (size_t)n * nH * d;
  std::vector<uint16_t> h;
  __nv_bfloat16 *dq[3] = {random_bf16(h, q_n, 2.f), random_bf16(h, q_n, 2.f), random_bf16(h, q_n, 2.f)};
  __nv_bfloat16 *dk = random_bf16(h, cache_n, 1.f), *dv = random_bf16(h, cache_n, 1.f);
  __nv_bfloat16 *z_ref = (__nv_bfloat16 *)dalloc<uint16_t>(q_n), *z = (__nv_bfloat16 *)dalloc<uint16_t>(q_n);
  std::vector<int32_t> pos((size_t)n), slot((size_t)n, 1);
  for (int r = 0; r < n; ++r) pos[(size_t)r] = pos0 + r;
  int32_t *dpos = dalloc<int32_t>(n), *dslot = dalloc<int32_t>(n);
  h2d(dpos, pos); h2d(dslot, slot);

  DcaAttnArgs s;  // the SIMT kernel: every row at once
  s.out = z_ref; s.q_intra = dq[0]; s.q_succ = dq[1]; s.q_inter = dq[2]; s.kcache = dk; s.vcache = dv;
  s.row_pos = dpos; s.row_slot = dslot; s.rows = n; s.n_heads = nH; s.n_kv = nKV; s.head_dim = d; s.max_ctx = max_ctx;
  s.chunk = chunk; s.local = local; s.force_simt = true;
  PrefillAttnArgs a;  // the tensor-core kernel: one sequence
  a.out = z; a.q = dq[0]; a.dca.succ = dq[1]; a.dca.inter = dq[2]; a.dca.span = chunk - local;
  a.kcache = dk; a.vcache = dv; a.slot = 1; a.pos0 = pos0; a.n = n; a.n_heads = nH; a.n_kv = nKV; a.head_dim = d;
  a.max_ctx = max_ctx;

  double err;
  bool nan_seen;
  // FLOPs of causal attention (DCA scores every causal pair once, with its part's query)
  const double keys = (double)n * pos0 + (double)n * (n + 1) / 2, flops = 4.0 * d * nH * keys;
  char shape[112];
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d chunk %d local %d", nH, nKV, d, pos0, n, chunk, local);
  if (dca_prefill_mma_supported(d, chunk - local)) {  // the mma.sync kernel (s >= 64), timed with the SIMT reference
    const char *variant = check_arms(z, z_ref, q_n, [&] { launch_dca_attention(s, 0); },
                                     [&] { return launch_prefill_attention_dca(a, 0); }, &err, &nan_seen);
    report_arms("attn dca prefill", variant, shape, err, nan_seen, timed, [&] { launch_prefill_attention_dca(a, 0); },
                [&] { launch_dca_attention(s, 0); }, g_quick ? 5 : 20, g_quick ? 2 : 5, flops, 1e12, "TFLOP/s",
                g_bf16_rate / 1e12);
  }
  if (!*fa3_prefill_unsupported_here(a)) {  // sm_90: the wgmma kernel, one launch per part (any s)
    float *lse = dalloc<float>((size_t)n * nH);
    const char *variant = check_arms(z, z_ref, q_n, [&] { launch_dca_attention(s, 0); },
                                     [&] { return launch_prefill_attention_dca_fa3(a, lse, 0); }, &err, &nan_seen);
    const double us = timed ? time_us([&](int) { launch_prefill_attention_dca_fa3(a, lse, 0); }, g_quick ? 5 : 20, 2) : 0;
    report(std::string("attn dca prefill [") + variant + " vs attn_dca_simt]", shape, true, err, 1e-2, nan_seen, us,
           us > 0 ? flops / (us * 1e-6) / 1e12 : 0, "TFLOP/s", g_bf16_rate / 1e12);
    cudaFree(lse);
  }
  for (auto *p : {dq[0], dq[1], dq[2], dk, dv, z_ref, z}) cudaFree(p);
  cudaFree(dpos); cudaFree(dslot);
}

// Decode: B rows (one per slot) at position len - 1, the session's kernel (the warp layout unless QW_DCA_WARP=0, in
// key windows: n_split from dca_decode_split) and the warp kernel in one block, each against the SIMT kernel in one
// block per row and head.
// ctx > len: a cache longer than the rows' position (more windows than the keys fill: the short windows' floor).
void dca_decode_case(int B, int nH, int nKV, int d, int len, int chunk, int local, bool timed, int ctx = 0) {
  const int max_ctx = std::max(len, ctx), q_n = B * nH * d;
  const size_t cache_n = (size_t)B * nKV * max_ctx * d;
  std::vector<uint16_t> h;
  __nv_bfloat16 *dq[3] = {random_bf16(h, q_n, 2.f), random_bf16(h, q_n, 2.f), random_bf16(h, q_n, 2.f)};
  __nv_bfloat16 *dk = random_bf16(h, cache_n, 1.f), *dv = random_bf16(h, cache_n, 1.f);
  std::vector<int32_t> pos((size_t)B, len - 1), slot((size_t)B);
  for (int b = 0; b < B; ++b) slot[(size_t)b] = b;
  int32_t *dpos = dalloc<int32_t>(B), *dslot = dalloc<int32_t>(B);
  h2d(dpos, pos); h2d(dslot, slot);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int n_split = dca_decode_split(nH, nKV, max_ctx, sms);
  float *ws = dalloc<float>(dca_decode_ws_floats(B, nH, d, n_split));
  __nv_bfloat16 *z1 = (__nv_bfloat16 *)dalloc<uint16_t>(q_n), *zs = (__nv_bfloat16 *)dalloc<uint16_t>(q_n);
  DcaAttnArgs a;
  a.q_intra = dq[0]; a.q_succ = dq[1]; a.q_inter = dq[2]; a.kcache = dk; a.vcache = dv; a.row_pos = dpos;
  a.row_slot = dslot; a.rows = B; a.n_heads = nH; a.n_kv = nKV; a.head_dim = d; a.max_ctx = max_ctx;
  a.chunk = chunk; a.local = local;
  // one: the SIMT kernel, one block per row and head (the reference); split: what a session runs (the warp kernel
  // unless QW_DCA_WARP=0, key windows); whole: the warp kernel in one block per row (its in-block merge of the groups)
  DcaAttnArgs one = a, split = a, whole = a;
  one.out = z1; one.force_simt = true;
  split.out = zs; split.n_split = n_split; split.ws = ws;
  whole.out = zs;
  const double bytes = 2.0 * B * nKV * (double)len * d * 2;  // K and V of every row, once per kv head
  char shape[112];
  snprintf(shape, sizeof shape, "B%d h%d/%d d%d len %d chunk %d local %d, %d windows", B, nH, nKV, d, len, chunk, local,
           n_split);
  for (DcaAttnArgs *arm : {&whole, &split}) {
    double err;
    bool nan_seen;
    const char *variant = check_arms(zs, z1, q_n, [&] { launch_dca_attention(one, 0); },
                                     [&] { return launch_dca_attention(*arm, 0); }, &err, &nan_seen);
    report_arms("attn dca decode", variant, shape, err, nan_seen, timed && arm == &split,
                [&] { launch_dca_attention(*arm, 0); }, [&] { launch_dca_attention(one, 0); }, g_quick ? 10 : 50,
                g_quick ? 5 : 20, bytes, 1e9, "GB/s", g_copy_bw / 1e9);
  }
  for (auto *p : {dq[0], dq[1], dq[2], dk, dv, z1, zs}) cudaFree(p);
  cudaFree(dpos); cudaFree(dslot); cudaFree(ws);
}

}  // namespace

void run_dca_prefill() {
  // the passkey fixture's settings (chunk 512, local 64: s = 448 = 7 tiles), rows starting mid-tile and mid-chunk
  dca_case(4, 1, 64, 0, 1500, 512, 64, false);
  dca_case(14, 2, 64, 50, 1200, 512, 64, false);
  // s = 270: query and key tiles straddle chunk boundaries; a second step over a prefix (chunked prefill)
  dca_case(14, 2, 64, 0, 900, 300, 30, false);
  dca_case(28, 4, 128, 613, 700, 300, 30, false);
  // s < 64 (the wgmma kernel only): a query tile straddles several chunk boundaries
  dca_case(14, 2, 64, 0, 500, 40, 10, false);
  dca_case(28, 4, 128, 37, 400, 25, 5, false);
  // at most one chunk: DCA's parts reduce to intra (and successive past s)
  dca_case(28, 4, 128, 0, 200, 8192, 1024, false);
  // 7B shapes (chunk 8192, local 1024: s = 7168), timed
  dca_case(28, 4, 128, 0, 8192, 8192, 1024, true);
  if (!g_quick) dca_case(28, 4, 128, 0, 32768, 8192, 1024, true);
  // decode (key windows vs one block per row): the passkey settings past a few chunks, 7B shapes at 8k / 32k
  dca_decode_case(2, 14, 2, 64, 3000, 512, 64, false);
  dca_decode_case(3, 4, 1, 32, 1100, 512, 64, false);  // d 32 (one dim per lane), a window edge inside a group
  dca_decode_case(2, 28, 4, 128, 700, 512, 64, false, 32768);  // 64 windows for 700 keys: 6 of >= 128, the rest empty
  dca_decode_case(1, 28, 4, 128, 8192, 8192, 1024, true);
  dca_decode_case(4, 28, 4, 128, 8192, 8192, 1024, true);
  dca_decode_case(1, 28, 4, 128, 32768, 8192, 1024, true);
}
