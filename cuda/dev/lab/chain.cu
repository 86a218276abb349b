// chain.cu — a whole decode step of a Qwen2.5 shape from the production kernels (eager, graph, graph +
// PDL: the three must agree bit for bit), reported as tok/s against the copy-bandwidth floor.
#include "attention.cuh"
#include "gemv.cuh"
#include "rope.cuh"
#include "sample.cuh"
#include "lab.cuh"

// ------------------------------------------------------------------------------------------------ decode chain
// One decode step of a Qwen2.5 shape built from the production kernels (embed excluded): per layer
// [gemv norm+qkv+bias] [rope+kv] [split-KV attention] [gemv o+res] [gemv norm+gate_up+swiglu] [gemv down+res],
// then [gemv final norm+lm_head] [sample]. Weights random on the device (distinct per layer: no L2 reuse).
// Timed eagerly, as a CUDA graph, and as a graph with programmatic dependent launch; the three must give
// bit-identical x and token (a race would show here). Reports µs per step, tok/s at batch B, and the % of the
// copy-bandwidth floor (weight bytes / measured bandwidth).
__global__ void fill_random_bf16(__nv_bfloat16 *p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint64_t z = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const float u = (float)(z >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2bfloat16((u - 0.5f) * 3.4641f * scale);  // uniform with std = scale
  }
}
void fill_dev(__nv_bfloat16 *p, int64_t n, float scale) {
  fill_random_bf16<<<1024, 256>>>(p, n, rnd64(), scale);
  CHK(cudaGetLastError());
}

static void decode_chain(const char *name, int H, int I, int L, int nH, int nKV, int V, int B, int ctx,
                         bool fused_rope = true) {
  const int d = H / nH, QKV = (nH + 2 * nKV) * d, max_ctx = ctx + 8;
  struct LayerW { __nv_bfloat16 *qkv, *o, *gu, *down; float *bias, *n1, *n2; };
  std::vector<LayerW> lw(L);
  double wbytes = 0;
  for (auto &l : lw) {
    l.qkv = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)QKV * H); fill_dev(l.qkv, (int64_t)QKV * H, 1.f / sqrtf((float)H));
    l.o = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)H * nH * d); fill_dev(l.o, (int64_t)H * nH * d, 1.f / sqrtf((float)H));
    l.gu = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)2 * I * H); fill_dev(l.gu, (int64_t)2 * I * H, 1.f / sqrtf((float)H));
    l.down = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)H * I); fill_dev(l.down, (int64_t)H * I, 1.f / sqrtf((float)I));
    std::vector<float> bias(QKV), ones(H, 1.f);
    for (auto &v : bias) v = rndn() * 0.02f;
    l.bias = dalloc<float>(QKV); h2d(l.bias, bias);
    l.n1 = dalloc<float>(H); h2d(l.n1, ones);
    l.n2 = dalloc<float>(H); h2d(l.n2, ones);
    wbytes += 2.0 * ((double)QKV * H + (double)H * nH * d + 2.0 * I * H + (double)H * I);
  }
  __nv_bfloat16 *lm = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)V * H);
  fill_dev(lm, (int64_t)V * H, 1.f / sqrtf((float)H));
  wbytes += 2.0 * V * H;
  std::vector<float> ones(H, 1.f);
  float *fn = dalloc<float>(H); h2d(fn, ones);
  // state
  const size_t kv_layer = (size_t)B * nKV * max_ctx * d;
  __nv_bfloat16 *kc = (__nv_bfloat16 *)dalloc<uint16_t>(kv_layer * L), *vc = (__nv_bfloat16 *)dalloc<uint16_t>(kv_layer * L);
  fill_dev(kc, (int64_t)(kv_layer * L), 1.f);
  fill_dev(vc, (int64_t)(kv_layer * L), 1.f);
  float *x = dalloc<float>((size_t)B * H), *x0 = dalloc<float>((size_t)B * H), *qkvf = dalloc<float>((size_t)B * QKV);
  std::vector<float> hx((size_t)B * H);
  for (auto &v : hx) v = rndn();
  h2d(x0, hx);
  __nv_bfloat16 *q = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)B * nH * d), *z = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)B * nH * d);
  __nv_bfloat16 *h = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)B * I);
  float *logits = dalloc<float>((size_t)B * V);
  double *wb = dalloc<double>((size_t)B * V);
  std::vector<int32_t> pos(B, ctx - 1), slot(B), len(B, ctx);
  for (int b = 0; b < B; ++b) slot[b] = b;
  int32_t *dpos = dalloc<int32_t>(B), *dslot = dalloc<int32_t>(B), *dlen = dalloc<int32_t>(B), *dtok = dalloc<int32_t>(B);
  h2d(dpos, pos); h2d(dslot, slot); h2d(dlen, len);
  std::vector<SampleRow> sr(B, SampleRow{0.f, 0, 1.f, 0.f});
  SampleRow *dsr = dalloc<SampleRow>(B);
  h2d(dsr, sr);
  std::vector<float> inv(d / 2);
  for (int i = 0; i < d / 2; ++i) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)d);
  float *dinv = dalloc<float>(d / 2); h2d(dinv, inv);
  int sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int ns = decode_attn_pick_split(nH, nKV, max_ctx, sms);
  float *ws = dalloc<float>(decode_attn_ws_floats(B, nH, d, ns));
  int32_t *cnt = dalloc<int32_t>(B * nH);
  CHK(cudaMemset(cnt, 0, B * nH * 4));
  cudaStream_t st;
  CHK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  auto step = [&]() {
    CHK(cudaMemcpyAsync(x, x0, (size_t)B * H * 4, cudaMemcpyDeviceToDevice, st));
    for (int l = 0; l < L; ++l) {
      const LayerW &w = lw[l];
      GemvArgs a;
      a.batch = B; a.pro = GEMV_PRO_NORM; a.x = x; a.x_ld = H; a.norm_w = w.n1; a.eps = 1e-6f;
      a.w.data = w.qkv; a.w.rows = QKV; a.w.cols = H; a.w.type = WT_BF16;
      a.bias = w.bias;
      if (fused_rope) {  // the backend default: norm + qkv + bias + RoPE + KV write in one GEMV
        a.epi = GEMV_EPI_QKV_ROPE;
        a.rope.q_out = q; a.rope.kcache = kc + kv_layer * l; a.rope.vcache = vc + kv_layer * l; a.rope.pos = dpos;
        a.rope.slot = dslot; a.rope.inv_freq = dinv; a.rope.n_heads = nH; a.rope.n_kv = nKV; a.rope.head_dim = d;
        a.rope.max_ctx = max_ctx;
        launch_gemv(a, st);
      } else {
        a.epi = GEMV_EPI_F32; a.out = qkvf; a.out_ld = QKV;
        launch_gemv(a, st);
        RopeKvArgs r;
        r.q_out = q; r.kcache = kc + kv_layer * l; r.vcache = vc + kv_layer * l; r.qkv = qkvf; r.qkv_ld = QKV;
        r.row_pos = dpos; r.row_slot = dslot; r.inv_freq = dinv; r.rows = B; r.n_heads = nH; r.n_kv = nKV; r.head_dim = d; r.max_ctx = max_ctx;
        launch_rope_kv(r, st);
      }
      DecodeAttnArgs da;
      da.out = z; da.q = q; da.kcache = kc + kv_layer * l; da.vcache = vc + kv_layer * l; da.slot = dslot; da.kv_len = dlen; da.batch = B;
      da.n_heads = nH; da.n_kv = nKV; da.head_dim = d; da.max_ctx = max_ctx; da.n_split = ns; da.ws = ws; da.counters = cnt;
      launch_decode_attention(da, st);
      GemvArgs o;
      o.batch = B; o.act = z; o.act_ld = nH * d; o.epi = GEMV_EPI_ADD_F32; o.out = x; o.out_ld = H;
      o.w.data = w.o; o.w.rows = H; o.w.cols = nH * d; o.w.type = WT_BF16;
      launch_gemv(o, st);
      GemvArgs g;
      g.batch = B; g.pro = GEMV_PRO_NORM; g.x = x; g.x_ld = H; g.norm_w = w.n2; g.eps = 1e-6f;
      g.epi = GEMV_EPI_SWIGLU; g.out = h; g.out_ld = I;
      g.w.data = w.gu; g.w.rows = 2 * I; g.w.cols = H; g.w.type = WT_BF16;
      launch_gemv(g, st);
      GemvArgs dn;
      dn.batch = B; dn.act = h; dn.act_ld = I; dn.epi = GEMV_EPI_ADD_F32; dn.out = x; dn.out_ld = H;
      dn.w.data = w.down; dn.w.rows = H; dn.w.cols = I; dn.w.type = WT_BF16;
      launch_gemv(dn, st);
    }
    GemvArgs lh;
    lh.batch = B; lh.pro = GEMV_PRO_NORM; lh.x = x; lh.x_ld = H; lh.norm_w = fn; lh.eps = 1e-6f;
    lh.epi = GEMV_EPI_F32; lh.out = logits; lh.out_ld = V;
    lh.w.data = lm; lh.w.rows = V; lh.w.cols = H; lh.w.type = WT_BF16;
    launch_gemv(lh, st);
    launch_sample(dtok, logits, dsr, wb, B, V, V, st);
  };
  auto result = [&]() {
    CHK(cudaStreamSynchronize(st));
    auto hxv = d2h(x, (size_t)B * H);
    auto t = d2h(dtok, B);
    std::vector<float> r(hxv);
    for (int b = 0; b < B; ++b) r.push_back((float)t[b]);
    return r;
  };
  auto time_mode = [&](const std::function<void()> &f) {
    cudaEvent_t e0, e1;
    CHK(cudaEventCreate(&e0)); CHK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; ++i) f();
    CHK(cudaStreamSynchronize(st));
    std::vector<float> ts;
    for (int i = 0; i < (g_quick ? 10 : 30); ++i) {
      CHK(cudaEventRecord(e0, st)); f(); CHK(cudaEventRecord(e1, st));
      CHK(cudaEventSynchronize(e1));
      float ms; CHK(cudaEventElapsedTime(&ms, e0, e1)); ts.push_back(ms * 1000.f);
    }
    std::sort(ts.begin(), ts.end());
    cudaEventDestroy(e0); cudaEventDestroy(e1);
    return (double)ts[ts.size() / 2];
  };
  const bool pdl0 = pdl_enabled();
  // eager
  set_pdl(false);
  const double us_eager = time_mode(step);
  const auto r_eager = result();
  // the step captured as a graph (with PDL edges when pdl), timed; r gets its result
  auto graph_mode = [&](bool pdl, std::vector<float> &r) {
    set_pdl(pdl);
    cudaGraph_t gr; cudaGraphExec_t ge;
    CHK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed)); step(); CHK(cudaStreamEndCapture(st, &gr));
    CHK(cudaGraphInstantiate(&ge, gr, 0));
    const double t = time_mode([&] { CHK(cudaGraphLaunch(ge, st)); });
    r = result();
    cudaGraphExecDestroy(ge); cudaGraphDestroy(gr);
    return t;
  };
  std::vector<float> r_graph, r_pdl;
  const double us_graph = graph_mode(false, r_graph);  // graph, no PDL
  const double us_pdl = graph_mode(true, r_pdl);       // graph with PDL (sm_90)
  set_pdl(pdl0);
  bool same = r_eager == r_graph && r_eager == r_pdl;
  const double floor_us = wbytes / g_copy_bw * 1e6;
  char shape[96];
  const char *modes[3] = {"eager", "graph", "graph+pdl"};
  const double us[3] = {us_eager, us_graph, us_pdl};
  for (int m = 0; m < 3; ++m) {
    snprintf(shape, sizeof shape, "B%d ctx%d %.2f GB, %s", B, ctx, wbytes / 1e9, modes[m]);
    report(std::string("decode step ") + name + (fused_rope ? "" : " unfused-rope") + " (tok/s in rate)", shape, true, same ? 0 : 1, 0, false, us[m],
           B * 1e6 / us[m], "tok/s", B * 1e6 / floor_us);
  }
  printf("  decode step %s: floor %.1f us (weights %.3f GB at %.0f GB/s); launches per step %d\n", name, floor_us,
         wbytes / 1e9, g_copy_bw / 1e9, (fused_rope ? 5 : 6) * L + 2);
  for (auto &l : lw) { cudaFree(l.qkv); cudaFree(l.o); cudaFree(l.gu); cudaFree(l.down); cudaFree(l.bias); cudaFree(l.n1); cudaFree(l.n2); }
  cudaFree(lm); cudaFree(fn); cudaFree(kc); cudaFree(vc); cudaFree(x); cudaFree(x0); cudaFree(qkvf); cudaFree(q); cudaFree(z);
  cudaFree(h); cudaFree(logits); cudaFree(wb); cudaFree(dpos); cudaFree(dslot); cudaFree(dlen); cudaFree(dtok); cudaFree(dsr);
  cudaFree(dinv); cudaFree(ws); cudaFree(cnt);
  cudaStreamDestroy(st);
}


void run_chain() {
  decode_chain("0.5B", 896, 4864, 24, 14, 2, 151936, 1, 256);
  decode_chain("0.5B", 896, 4864, 24, 14, 2, 151936, 1, 256, false);
  decode_chain("1.5B", 1536, 8960, 28, 12, 2, 151936, 1, 256);
  decode_chain("1.5B", 1536, 8960, 28, 12, 2, 151936, 1, 4096);
  gemv_force_ksplit(1);  // A/B: the GEMVs without the in-block K-split
  decode_chain("0.5B ks=1", 896, 4864, 24, 14, 2, 151936, 1, 256);
  decode_chain("1.5B ks=1", 1536, 8960, 28, 12, 2, 151936, 1, 256);
  gemv_force_ksplit(0);
  decode_chain("7B", 3584, 18944, 28, 28, 4, 152064, 1, 256);
  decode_chain("7B", 3584, 18944, 28, 28, 4, 152064, 16, 256);
  if (!g_quick) decode_chain("0.5B", 896, 4864, 24, 14, 2, 151936, 8, 256);
}
