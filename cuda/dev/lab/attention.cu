// attention.cu — the lab cases of attention (attention.cuh): split-KV decode (also gqa=broadcast through
// src/opt/gqa/kv_broadcast.cuh; one query head per block and one kv head per block, timed apart) and flash prefill,
// against a CPU reference.
#include "attention.cuh"
#include "kv_broadcast.cuh"
#include "lab.cuh"

static int g_attn_gm = 0;  // decode_case: 0 = the launcher's choice (decode_attn_heads_per_block), 1 / 8 heads per block forced
static int g_attn_group = -1;  // decode_case with g_attn_gm 0: >= 0 runs the adaptive launch with this group_len
constexpr int kAllPerHead = 1 << 30;  // a group_len no sequence reaches

// CPU reference (declared in lab.cuh; fa3.cu uses it too).
void attn_ref(std::vector<double> &out, const std::vector<uint16_t> &q, const std::vector<uint16_t> &kc,
                     const std::vector<uint16_t> &vc, int slot, int q_row, int n_keys, int nH, int nKV, int d, int max_ctx,
                     const std::vector<int> *at) {
  auto kp = [&](int t) { return at ? (*at)[(size_t)t] : t; };
  const int G = nH / nKV;
  for (int h = 0; h < nH; ++h) {
    const int kh = h / G;
    std::vector<double> s(n_keys);
    double mx = -1e300;
    for (int t = 0; t < n_keys; ++t) {
      double acc = 0;
      for (int e = 0; e < d; ++e)
        acc += (double)bf2f(q[(size_t)q_row * nH * d + h * d + e]) *
               bf2f(kc[(((size_t)slot * nKV + kh) * max_ctx + kp(t)) * d + e]);
      s[t] = acc / sqrt((double)d);
      mx = std::max(mx, s[t]);
    }
    double l = 0;
    for (int t = 0; t < n_keys; ++t) { s[t] = exp(s[t] - mx); l += s[t]; }
    for (int e = 0; e < d; ++e) {
      double o = 0;
      for (int t = 0; t < n_keys; ++t) o += s[t] * bf2f(vc[(((size_t)slot * nKV + kh) * max_ctx + kp(t)) * d + e]);
      out.push_back(o / l);
    }
  }
}

void decode_case(int B, int nH, int nKV, int d, int len, int max_ctx, bool bcast, bool timed) {
  const int slots = B + 1;
  const size_t cache_n = (size_t)slots * nKV * max_ctx * d;
  std::vector<uint16_t> kc(cache_n), vc(cache_n), q((size_t)B * nH * d);
  for (auto &v : kc) v = f2bf(rndn());
  for (auto &v : vc) v = f2bf(rndn());
  for (auto &v : q) v = f2bf(rndn() * 2.f);
  std::vector<int> slot(B), lens(B);
  for (int b = 0; b < B; ++b) { slot[b] = (b + 1) % slots; lens[b] = std::max(1, len - 3 * b); }
  __nv_bfloat16 *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n), *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
  h2d((uint16_t *)dk, kc); h2d((uint16_t *)dv, vc);
  __nv_bfloat16 *dq = (__nv_bfloat16 *)dalloc<uint16_t>(q.size()), *dz = (__nv_bfloat16 *)dalloc<uint16_t>(q.size());
  h2d((uint16_t *)dq, q);
  int32_t *dslot = dalloc<int32_t>(B), *dlen = dalloc<int32_t>(B), *dident = dalloc<int32_t>(B);
  h2d(dslot, std::vector<int32_t>(slot.begin(), slot.end()));
  h2d(dlen, std::vector<int32_t>(lens.begin(), lens.end()));
  std::vector<int32_t> ident(B);
  for (int b = 0; b < B; ++b) ident[b] = b;
  h2d(dident, ident);
  int sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int ns = decode_attn_pick_split(nH, nKV, max_ctx, sms);
  float *ws = dalloc<float>(decode_attn_ws_floats(B, nH, d, ns));
  int32_t *cnt = dalloc<int32_t>(B * nH);
  CHK(cudaMemset(cnt, 0, B * nH * 4));
  __nv_bfloat16 *bk = nullptr, *bv = nullptr;
  if (bcast) { bk = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)B * nH * max_ctx * d); bv = (__nv_bfloat16 *)dalloc<uint16_t>((size_t)B * nH * max_ctx * d); }
  DecodeAttnArgs a;
  a.out = dz; a.q = dq; a.kcache = dk; a.vcache = dv; a.slot = dslot; a.kv_len = dlen; a.batch = B; a.n_heads = nH;
  a.n_kv = nKV; a.head_dim = d; a.max_ctx = max_ctx; a.n_split = ns; a.ws = ws; a.counters = cnt;
  auto run = [&]() {
    if (bcast) {
      launch_kv_broadcast(bk, bv, dk, dv, dslot, dlen, B, nH, nKV, d, max_ctx, max_ctx, 0);
      DecodeAttnArgs b2 = a; b2.kcache = bk; b2.vcache = bv; b2.slot = dident; b2.n_kv = nH;
      launch_decode_attention(b2, 0);
    } else if (g_attn_gm) {
      launch_decode_attention_gm(a, g_attn_gm, 0);
    } else if (g_attn_group >= 0) {
      launch_decode_attention_adaptive(a, g_attn_group, 0);
    } else {
      launch_decode_attention(a, 0);
    }
  };
  std::vector<double> outv, refv;
  bool nan_seen = false;
  double err = 0;
  for (int rep = 0; rep < 2; ++rep) {  // twice: the split counters must reset themselves
    poison(dz, q.size() * 2);
    run();
    CHK(cudaDeviceSynchronize());
    auto z = d2h((uint16_t *)dz, q.size());
    outv.clear(); refv.clear();
    for (int b = 0; b < B; ++b) {
      std::vector<double> r;
      attn_ref(r, q, kc, vc, slot[b], b, lens[b], nH, nKV, d, max_ctx);
      for (size_t i = 0; i < r.size(); ++i) { refv.push_back(r[i]); outv.push_back(bf2f(z[(size_t)b * nH * d + i])); }
    }
    bool ns2;
    err = std::max(err, rel_err(outv, refv, &ns2));
    nan_seen |= ns2;
  }
  // GM 1, GM 8 and the adaptive launch (every sequence grouped / none) on the same inputs and n_split give the same
  // bits (each head's sums in the same order): the batch-invariance argument of decode_attn_heads_per_block and the
  // adaptive launch's length switch rest on it. err = elements that differ from GM 1's in any of the others.
  if (!bcast && !g_attn_gm && g_attn_group < 0 && nH / nKV <= 8) {
    std::vector<uint16_t> zg[4];
    for (int i = 0; i < 4; ++i) {
      poison(dz, q.size() * 2);
      if (i < 2) launch_decode_attention_gm(a, i == 0 ? 1 : 8, 0);
      else launch_decode_attention_adaptive(a, i == 2 ? 1 : kAllPerHead, 0);
      CHK(cudaDeviceSynchronize());
      zg[i] = d2h((uint16_t *)dz, q.size());
    }
    size_t diff = 0;
    for (size_t i = 0; i < q.size(); ++i) diff += zg[0][i] != zg[1][i] || zg[0][i] != zg[2][i] || zg[0][i] != zg[3][i];
    char sh[96];
    snprintf(sh, sizeof sh, "B%d h%d/%d d%d len%d", B, nH, nKV, d, len);
    report("attn decode gm1 = gm8 = adaptive bitwise", sh, true, (double)diff, 0.5, false, 0, 0, "", 0);
  }
  double us = 0, rate = 0;
  if (timed) {
    us = time_us([&](int) { run(); }, g_quick ? 20 : 100);
    double bytes = 0;
    for (int b = 0; b < B; ++b) bytes += 2.0 * lens[b] * nKV * d * 2;
    rate = bytes / (us * 1e-6) / 1e9;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "B%d h%d/%d d%d len%d", B, nH, nKV, d, len);
  const char *label = bcast ? "attn decode (gqa broadcast)" : g_attn_gm == 1 ? "attn decode splitkv gm1" : g_attn_gm ? "attn decode splitkv gm8"
                      : g_attn_group == 1 ? "attn decode adaptive: grouped" : g_attn_group >= 0 ? "attn decode adaptive: per head"
                      : "attn decode splitkv";
  report(label, shape, true, err, 1e-2, nan_seen, us, rate, "GB/s",
         g_copy_bw / 1e9);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz); cudaFree(dslot); cudaFree(dlen); cudaFree(dident); cudaFree(ws);
  cudaFree(cnt);
  if (bk) { cudaFree(bk); cudaFree(bv); }
}

void prefill_case(int nH, int nKV, int d, int pos0, int n, bool simt, bool timed, int max_check_rows, int tree_fan) {
  const int max_ctx = pos0 + n + 5;
  const size_t cache_n = (size_t)2 * nKV * max_ctx * d;
  std::vector<uint16_t> kc(cache_n), vc(cache_n), q((size_t)n * nH * d);
  for (auto &v : kc) v = f2bf(rndn());
  for (auto &v : vc) v = f2bf(rndn());
  for (auto &v : q) v = f2bf(rndn() * 2.f);
  __nv_bfloat16 *dk = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n), *dv = (__nv_bfloat16 *)dalloc<uint16_t>(cache_n);
  h2d((uint16_t *)dk, kc); h2d((uint16_t *)dv, vc);
  __nv_bfloat16 *dq = (__nv_bfloat16 *)dalloc<uint16_t>(q.size()), *dz = (__nv_bfloat16 *)dalloc<uint16_t>(q.size());
  h2d((uint16_t *)dq, q);
  PrefillAttnArgs a;
  a.out = dz; a.q = dq; a.kcache = dk; a.vcache = dv; a.slot = 1; a.pos0 = pos0; a.n = n; a.n_heads = nH; a.n_kv = nKV;
  a.head_dim = d; a.max_ctx = max_ctx;
  // tree_fan > 0: a tree verification step (opt/speculative/tree_mask.cuh) of n nodes at KV positions pos0.., node i's
  // parent (i - 1) / tree_fan; each row attends to the prefix [0, pos0) and its ancestors and itself
  std::vector<std::vector<int32_t>> tree_keys((size_t)(tree_fan > 0 ? n : 0));
  for (int i = 0; i < (int)tree_keys.size(); ++i) {
    if (i > 0) tree_keys[(size_t)i] = tree_keys[(size_t)((i - 1) / tree_fan)];
    tree_keys[(size_t)i].push_back(i);
  }
  uint32_t *dbits = nullptr;
  if (tree_fan > 0) {
    std::vector<uint32_t> bits;
    const int words = tree_mask_words(n);
    tree_mask_fill(bits, tree_keys, words);
    dbits = dalloc<uint32_t>(bits.size());
    h2d(dbits, bits);
    a.tree.bits = dbits; a.tree.base = pos0; a.tree.words = words;
  }
  std::vector<int> rows;
  const int stride = std::max(1, n / 16);
  for (int r = 0; r < n; ++r) if (n <= max_check_rows || r < 8 || r >= n - 8 || r % stride == 0) rows.push_back(r);
  std::vector<std::vector<double>> refs(rows.size());
  #pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < rows.size(); ++i) {
    if (tree_fan <= 0) { attn_ref(refs[i], q, kc, vc, 1, rows[i], pos0 + rows[i] + 1, nH, nKV, d, max_ctx); continue; }
    std::vector<int> at;
    for (int t = 0; t < pos0; ++t) at.push_back(t);
    for (int32_t k : tree_keys[(size_t)rows[i]]) at.push_back(pos0 + k);
    attn_ref(refs[i], q, kc, vc, 1, rows[i], (int)at.size(), nH, nKV, d, max_ctx, &at);
  }
  // a tree step runs twice: one CTA per head over every key tile, then split over its keys (attention_prefill.cu)
  // with the session's split count and workspace
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const int n_split = tree_fan > 0 && !simt ? prefill_attn_tree_split(n, nH, pos0 + n, sms) : 1;
  float *ws = n_split > 1 ? dalloc<float>(prefill_attn_split_ws_floats(n, nH, d, n_split)) : nullptr;
  for (int arm = 0; arm < (ws ? 2 : 1); ++arm) {
    a.split_ws = arm ? ws : nullptr;
    a.n_split = arm ? n_split : 1;
    poison(dz, q.size() * 2);
    const char *variant = simt ? launch_prefill_attention_simt(a, 0) : launch_prefill_attention(a, 0);
    CHK(cudaDeviceSynchronize());
    auto z = d2h((uint16_t *)dz, q.size());
    bool unwritten = false;
    for (auto u : z) if (!std::isfinite(bf2f(u))) unwritten = true;
    std::vector<double> outv, refv;
    for (size_t ri = 0; ri < rows.size(); ++ri) {
      const int r = rows[ri];
      for (size_t i = 0; i < refs[ri].size(); ++i) { refv.push_back(refs[ri][i]); outv.push_back(bf2f(z[(size_t)r * nH * d + i])); }
    }
    bool nan_seen;
    double err = rel_err(outv, refv, &nan_seen);
    nan_seen |= unwritten;
    double us = 0, rate = 0;
    if (timed) {
      us = time_us([&](int) { simt ? launch_prefill_attention_simt(a, 0) : launch_prefill_attention(a, 0); }, g_quick ? 5 : 20, 2);
      // causal FLOPs: 4 * d * nH * (keys summed over queries)
      const double keys = (double)n * pos0 + (double)n * (n + 1) / 2;
      rate = 4.0 * d * nH * keys / (us * 1e-6) / 1e12;
    }
    char shape[96];
    snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d%s", nH, nKV, d, pos0, n, tree_fan > 0 ? " tree" : "");
    report(std::string("attn prefill [") + variant + "]", shape, true, err, 1e-2, nan_seen, us, rate, "TFLOP/s",
           g_bf16_rate / 1e12);
  }
  if (ws) cudaFree(ws);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz);
  if (dbits) cudaFree(dbits);
}

void run_attn() {
  struct C { int B, nH, nKV, d, len, max_ctx; bool bcast, timed; };
  static const C cases[] = {
      {1, 28, 4, 128, 300, 4096, false, true},
      {1, 14, 2, 64, 300, 4096, false, true},
      {1, 12, 2, 128, 4097, 8192, false, true},
      {3, 28, 4, 128, 1, 512, false, false},
      {3, 14, 2, 64, 77, 512, false, false},
      {16, 28, 4, 128, 1000, 2048, false, true},
      {1, 14, 2, 64, 128, 4096, false, false},    // exactly one active split (no workspace)
      {1, 14, 2, 64, 129, 4096, false, false},    // two splits, the second with one key
      {1, 12, 2, 128, 16385, 16400, false, true}, // 1.5B shape at depth 16k
      {1, 28, 4, 128, 32768, 32768, false, true}, // 7B at depth 32k (kvqlab's bf16 row: 148 us, L2-bound with GM 1)
      {1, 14, 2, 64, 32768, 32768, false, true},  // 0.5B at depth 32k
      {4, 28, 4, 128, 8192, 8192, false, true},   // a small batch at depth (batch x n_kv < 32: adaptive)
      // where the adaptive launch's two sides cross (a 32k session: n_split as the engine picks it for max_ctx 32768)
      {1, 28, 4, 128, 1024, 32768, false, true},  {1, 28, 4, 128, 2048, 32768, false, true},
      {1, 28, 4, 128, 4096, 32768, false, true},  {1, 28, 4, 128, 8192, 32768, false, true},
      {1, 14, 2, 64, 1024, 32768, false, true},   {1, 14, 2, 64, 4096, 32768, false, true},
      {1, 14, 2, 64, 8192, 32768, false, true},
      {1, 28, 4, 128, 300, 4096, true, true},
      {2, 14, 2, 64, 77, 512, true, false},
  };
  for (const C &c : cases) decode_case(c.B, c.nH, c.nKV, c.d, c.len, c.max_ctx, c.bcast, c.timed);
  // both block layouts forced on the same native-GQA cases (the launcher picks one by batch x n_kv; the default pass
  // above compares their outputs bit for bit)
  for (int gm : {1, 8}) {
    g_attn_gm = gm;
    for (const C &c : cases)
      if (!c.bcast) decode_case(c.B, c.nH, c.nKV, c.d, c.len, c.max_ctx, false, c.timed);
  }
  g_attn_gm = 0;
  // the adaptive launch with every sequence grouped / none: the two sides of its length switch, timed on the same
  // cases (where they cross is the default group_len's evidence, kGroupLenDefault in attention.cu)
  for (int gl : {1, kAllPerHead}) {
    g_attn_group = gl;
    for (const C &c : cases)
      if (!c.bcast && c.nH / c.nKV <= 8) decode_case(c.B, c.nH, c.nKV, c.d, c.len, c.max_ctx, false, c.timed);
  }
  g_attn_group = -1;

}
void run_prefill() {
  prefill_case(7, 1, 128, 0, 1, false, false);
  prefill_case(7, 1, 128, 0, 37, false, false);
  prefill_case(14, 2, 64, 0, 200, false, false);
  prefill_case(14, 2, 64, 50, 77, false, false);
  prefill_case(4, 1, 64, 13, 130, true, false);
  prefill_case(4, 4, 128, 0, 65, false, false);
  prefill_case(28, 4, 128, 0, 512, false, true, 64);
  prefill_case(28, 4, 128, 0, 4096, false, true, 64);
  prefill_case(14, 2, 64, 0, 4096, false, true, 64);
  // tree verification steps (speculative = eagle): fan-out 4 trees over a prefix; 64 nodes span two mask words
  prefill_case(14, 2, 64, 50, 21, false, false, 96, 4);
  prefill_case(4, 1, 64, 13, 30, true, false, 96, 4);
  prefill_case(28, 4, 128, 1024, 16, false, true, 96, 4);
  prefill_case(28, 4, 128, 1024, 64, false, true, 96, 4);
  prefill_case(28, 4, 128, 0, 40, false, false, 96, 2);  // no prefix: the first key of a row is the root
  if (!g_quick) {
    prefill_case(28, 4, 128, 0, 16384, false, true, 40);
    prefill_case(28, 4, 128, 0, 512, true, true, 64);
  }
  run_dca_prefill();
}
