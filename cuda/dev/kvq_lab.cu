// kvq_lab.cu — kernel lab of the quantized KV cache (src/opt/kvcache, kvCache = q8 | kivi4 | kivi2), its own
// binary (build/dev/kvqlab, `make -C cuda/dev kvqlab`; run: ./cuda/build/dev/kvqlab [--quick]).
// Per case, fresh random bf16 K/V/Q:
//   1. the sequence is written as the engine writes it (a prefill step of len-1 rows, then a decode row);
//   2. codes and scales read back and compared BITWISE with the host quantization (kv_format.hpp: the same
//      functions the CPU backend runs) of the same bf16 rows;
//   3. the decode attention output against an fp64 dequantize-then-attend reference (keys < nq(len)
//      quantized, the rest bf16; kv_format.hpp), relative L2 error, tolerance 1e-2 (bf16 output);
//   4. prefill rows (one step over all positions): each row p against the reference with nq(p + 1);
//   5. timed: the decode attention, GB/s on the packed bytes it reads (codes + scales + bf16 residual), and
//      the engine's bf16 split-KV decode kernel on the same shape for the speed ratio.
// Lengths 1, 17, 127, 128, 129, 4095, 4096, 32768; GQA 1, 4, 7, 8; a batch with mixed lengths.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attention.cuh"
#include "kv_quant.cuh"

using namespace qwc;
namespace kvq = qw::kvq;
using kvq::KvType;

#define CHK(x)                                                                                     \
  do {                                                                                             \
    cudaError_t e_ = (x);                                                                          \
    if (e_ != cudaSuccess) {                                                                       \
      fprintf(stderr, "FATAL %s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));     \
      exit(2);                                                                                     \
    }                                                                                              \
  } while (0)

static int g_fail = 0;
static bool g_quick = false;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static float rndn() {
  auto u = [] {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return ((g_rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  };
  return float(std::sqrt(-2.0 * std::log(u())) * std::cos(6.283185307179586 * u()));
}
template <class T>
static T *dalloc(size_t n) {
  void *p;
  CHK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return static_cast<T *>(p);
}
template <class T>
static std::vector<T> d2h(const T *d, size_t n) {
  std::vector<T> h(n);
  CHK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
template <class T>
static void h2d(T *d, const std::vector<T> &h) { CHK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }

// Host mirror of one stream: bf16 K/V rows and their reference quantization (kv_format.hpp).
struct HostStream {
  int d;
  std::vector<uint16_t> k, v;  // [len][d] bf16 bits
  float kf(int64_t p, int c) const { return kvq::bf16_bits_to_f32(k[size_t(p * d + c)]); }
  float vf(int64_t p, int c) const { return kvq::bf16_bits_to_f32(v[size_t(p * d + c)]); }
};

// Dequantized K and V of positions [0, len) as a query with stream length `seen` sees them.
static void host_deq(KvType t, const HostStream &h, int64_t len, int64_t seen, std::vector<double> &K, std::vector<double> &V,
                     std::vector<uint8_t> *codes_k = nullptr, std::vector<uint16_t> *scales_k = nullptr) {
  const int d = h.d, bits = kvq::kv_bits(t);
  K.assign(static_cast<size_t>(len * d), 0);
  V.assign(static_cast<size_t>(len * d), 0);
  const int64_t nq = t == KvType::Q8 ? len : kvq::kivi_nq(seen);
  std::vector<float> x(static_cast<size_t>(std::max(32 * d, d)));
  for (int64_t p = 0; p < len; ++p) {
    if (p >= nq) {
      for (int c = 0; c < d; ++c) {
        K[size_t(p * d + c)] = h.kf(p, c);
        V[size_t(p * d + c)] = h.vf(p, c);
      }
      continue;
    }
    if (t == KvType::Q8) {
      std::vector<int8_t> c8(static_cast<size_t>(d));
      std::vector<uint16_t> sc(static_cast<size_t>(d / 32));
      for (int c = 0; c < d; ++c) x[size_t(c)] = h.kf(p, c);
      kvq::q8_quant_row(x.data(), d, c8.data(), sc.data());
      for (int c = 0; c < d; ++c) K[size_t(p * d + c)] = kvq::q8_deq(c8.data(), sc.data(), c);
      if (codes_k) {
        codes_k->insert(codes_k->end(), reinterpret_cast<uint8_t *>(c8.data()), reinterpret_cast<uint8_t *>(c8.data()) + d);
        scales_k->insert(scales_k->end(), sc.begin(), sc.end());
      }
      for (int c = 0; c < d; ++c) x[size_t(c)] = h.vf(p, c);
      kvq::q8_quant_row(x.data(), d, c8.data(), sc.data());
      for (int c = 0; c < d; ++c) V[size_t(p * d + c)] = kvq::q8_deq(c8.data(), sc.data(), c);
      continue;
    }
    if (p % 32 == 0) {  // a key group: per channel over 32 tokens
      for (int tk = 0; tk < 32; ++tk)
        for (int c = 0; c < d; ++c) x[size_t(tk * d + c)] = h.kf(p + tk, c);
      std::vector<uint8_t> cod(static_cast<size_t>(32 * d * bits / 8), 0);
      for (int c = 0; c < d; ++c) {
        uint16_t s, z;
        kvq::kivi_quant_key_channel(x.data(), d, c, bits, cod.data(), d * bits / 8, &s, &z);
        for (int tk = 0; tk < 32; ++tk)
          K[size_t((p + tk) * d + c)] = kvq::kivi_deq(kvq::kivi_get(cod.data() + tk * d * bits / 8, c, bits), kvq::f16_to_f32(s), kvq::f16_to_f32(z));
        if (scales_k) scales_k->push_back(s);
      }
      if (codes_k) codes_k->insert(codes_k->end(), cod.begin(), cod.end());
    }
    std::vector<uint8_t> cod(static_cast<size_t>(d * bits / 8), 0);
    std::vector<uint16_t> s(static_cast<size_t>(d / 32)), z(static_cast<size_t>(d / 32));
    for (int c = 0; c < d; ++c) x[size_t(c)] = h.vf(p, c);
    kvq::kivi_quant_value_row(x.data(), d, bits, cod.data(), s.data(), z.data());
    for (int c = 0; c < d; ++c) V[size_t(p * d + c)] = kvq::kivi_deq(kvq::kivi_get(cod.data(), c, bits), kvq::f16_to_f32(s[size_t(c / 32)]), kvq::f16_to_f32(z[size_t(c / 32)]));
  }
}

static void attn_ref(const std::vector<float> &q, const std::vector<double> &K, const std::vector<double> &V, int64_t n, int d,
                     std::vector<double> &out) {
  std::vector<double> s(static_cast<size_t>(n));
  double mx = -1e300;
  for (int64_t k = 0; k < n; ++k) {
    double a = 0;
    for (int c = 0; c < d; ++c) a += double(q[size_t(c)]) * K[size_t(k * d + c)];
    s[size_t(k)] = a / std::sqrt(double(d));
    mx = std::max(mx, s[size_t(k)]);
  }
  double sum = 0;
  for (auto &x : s) sum += (x = std::exp(x - mx));
  out.assign(static_cast<size_t>(d), 0);
  for (int64_t k = 0; k < n; ++k)
    for (int c = 0; c < d; ++c) out[size_t(c)] += s[size_t(k)] / sum * V[size_t(k * d + c)];
}

static double rel_l2(const std::vector<double> &o, const std::vector<double> &r) {
  double num = 0, den = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!std::isfinite(o[i])) return INFINITY;
    num += (o[i] - r[i]) * (o[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

static void line(const char *what, KvType t, const char *shape, double err, double tol, double us, double gbs, double ratio) {
  const bool ok = err <= tol;
  if (!ok) ++g_fail;
  printf("%-22s %-6s %-34s %-5s err %.2e (tol %.0e)", what, kvq::kv_type_name(t), shape, ok ? "PASS" : "FAIL", err, tol);
  if (us > 0) printf("  %9.2f us  %8.1f GB/s packed  x%.2f vs bf16 kernel", us, gbs, ratio);
  printf("\n");
  fflush(stdout);
}

static double time_us(const std::function<void()> &f, int iters) {
  cudaEvent_t a, b;
  CHK(cudaEventCreate(&a));
  CHK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) f();
  std::vector<float> ts;
  for (int i = 0; i < iters; ++i) {
    CHK(cudaEventRecord(a));
    f();
    CHK(cudaEventRecord(b));
    CHK(cudaEventSynchronize(b));
    float ms;
    CHK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms * 1000.f);
  }
  std::sort(ts.begin(), ts.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ts[ts.size() / 2];
}

// One case: B sequences (slot b, lengths lens[b]), nH query heads over nKV kv heads, head_dim d.
static void run_case(KvType t, const std::vector<int> &lens, int nH, int nKV, int d, bool timed, bool prefill_check) {
  const int B = int(lens.size());
  const int ctx = *std::max_element(lens.begin(), lens.end()) + 1;
  int sms = 132;
  CHK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  KvqCache cache;
  cache.configure(t, 1, B, nKV, ctx, d, nH, sms);
  const KvqDev &kv = cache.dev();
  std::vector<std::vector<HostStream>> hs(static_cast<size_t>(B), std::vector<HostStream>(static_cast<size_t>(nKV)));
  std::vector<std::vector<float>> qrows(static_cast<size_t>(B));  // [len][nH*d] as float (bf16-rounded)
  const int64_t kvd = int64_t(nKV) * d, qd = int64_t(nH) * d;
  double err_codes = 0, err_pre = 0;
  // 1. prefill of len-1 rows per sequence (one step each), keeping prefill outputs for the check
  int64_t maxrows = ctx;
  __nv_bfloat16 *dk = dalloc<__nv_bfloat16>(static_cast<size_t>(maxrows * kvd)), *dv = dalloc<__nv_bfloat16>(static_cast<size_t>(maxrows * kvd));
  __nv_bfloat16 *dq = dalloc<__nv_bfloat16>(static_cast<size_t>(maxrows * qd)), *dz = dalloc<__nv_bfloat16>(static_cast<size_t>(maxrows * qd));
  int32_t *dpos = dalloc<int32_t>(static_cast<size_t>(maxrows)), *dslot = dalloc<int32_t>(static_cast<size_t>(maxrows));
  for (int b = 0; b < B; ++b) {
    const int len = lens[size_t(b)];
    std::vector<uint16_t> k(static_cast<size_t>(len * kvd)), v(static_cast<size_t>(len * kvd)), q(static_cast<size_t>(len * qd));
    for (auto &x : k) x = kvq::f32_to_bf16_bits(rndn() * 2.0f + 0.5f);
    for (size_t i = 0; i < k.size(); i += size_t(d)) k[i + 3] = kvq::f32_to_bf16_bits(rndn() * 20.0f);  // an outlier channel
    for (auto &x : v) x = kvq::f32_to_bf16_bits(rndn());
    for (auto &x : q) x = kvq::f32_to_bf16_bits(rndn());
    for (int h = 0; h < nKV; ++h) {
      HostStream &s = hs[size_t(b)][size_t(h)];
      s.d = d;
      for (int p = 0; p < len; ++p)
        for (int c = 0; c < d; ++c) {
          s.k.push_back(k[size_t(p * kvd + h * d + c)]);
          s.v.push_back(v[size_t(p * kvd + h * d + c)]);
        }
    }
    qrows[size_t(b)].resize(q.size());
    for (size_t i = 0; i < q.size(); ++i) qrows[size_t(b)][i] = kvq::bf16_bits_to_f32(q[i]);
    h2d(reinterpret_cast<uint16_t *>(dk), k);
    h2d(reinterpret_cast<uint16_t *>(dv), v);
    h2d(reinterpret_cast<uint16_t *>(dq), q);
    std::vector<int32_t> pos(static_cast<size_t>(len)), slot(static_cast<size_t>(len), b);
    for (int p = 0; p < len; ++p) pos[size_t(p)] = p;
    h2d(dpos, pos);
    h2d(dslot, slot);
    if (len > 1) {
      KvqStep st;
      st.k = dk; st.v = dv; st.row_pos = dpos; st.row_slot = dslot; st.rows = len - 1; st.layer = 0;
      cache.write(st, 0);
      cache.attend(st, dq, dz, 0);
      cache.ring(st, 0);
      CHK(cudaDeviceSynchronize());
      if (prefill_check) {  // rows spread over the step, each with its own nq(p + 1)
        const auto z = d2h(reinterpret_cast<uint16_t *>(dz), size_t((len - 1) * qd));
        std::vector<double> o, r, K, V;
        for (int p : {0, len / 3, len / 2, len - 2}) {
          for (int h = 0; h < nKV; ++h) {
            host_deq(t, hs[size_t(b)][size_t(h)], p + 1, p + 1, K, V);
            for (int j = 0; j < nH / nKV; ++j) {
              const int hq = h * (nH / nKV) + j;
              std::vector<float> qv(&qrows[size_t(b)][size_t(p * qd + hq * d)], &qrows[size_t(b)][size_t(p * qd + hq * d + d)]);
              attn_ref(qv, K, V, p + 1, d, r);
              o.clear();
              for (int c = 0; c < d; ++c) o.push_back(kvq::bf16_bits_to_f32(z[size_t(p * qd + hq * d + c)]));
              err_pre = std::max(err_pre, rel_l2(o, r));
            }
          }
        }
      }
    }
  }
  // 2. the decode row of every sequence in one step (row b = sequence b at position len-1)
  std::vector<uint16_t> k1(static_cast<size_t>(B * kvd)), v1(static_cast<size_t>(B * kvd)), q1(static_cast<size_t>(B * qd));
  std::vector<int32_t> pos1(static_cast<size_t>(B)), slot1(static_cast<size_t>(B));
  for (int b = 0; b < B; ++b) {
    const int p = lens[size_t(b)] - 1;
    pos1[size_t(b)] = p;
    slot1[size_t(b)] = b;
    for (int h = 0; h < nKV; ++h)
      for (int c = 0; c < d; ++c) {
        k1[size_t(b * kvd + h * d + c)] = hs[size_t(b)][size_t(h)].k[size_t(p * d + c)];
        v1[size_t(b * kvd + h * d + c)] = hs[size_t(b)][size_t(h)].v[size_t(p * d + c)];
      }
    for (int64_t i = 0; i < qd; ++i) q1[size_t(b * qd + i)] = kvq::f32_to_bf16_bits(qrows[size_t(b)][size_t(p * qd + i)]);
  }
  h2d(reinterpret_cast<uint16_t *>(dk), k1);
  h2d(reinterpret_cast<uint16_t *>(dv), v1);
  h2d(reinterpret_cast<uint16_t *>(dq), q1);
  h2d(dpos, pos1);
  h2d(dslot, slot1);
  KvqStep st;
  st.k = dk; st.v = dv; st.row_pos = dpos; st.row_slot = dslot; st.rows = B; st.layer = 0;
  CHK(cudaMemset(dz, 0xff, size_t(B * qd) * 2));
  cache.write(st, 0);
  cache.attend(st, dq, dz, 0);
  CHK(cudaDeviceSynchronize());
  // 3. codes / scales of stream (sequence 0, kv head 0) bitwise against the host quantization
  {
    const int len = lens[0];
    std::vector<double> K, V;
    std::vector<uint8_t> hc;
    std::vector<uint16_t> hsc;
    host_deq(t, hs[0][0], len, len, K, V, &hc, &hsc);
    const int64_t st0 = kv.lay.stream(0, 0, 0);
    const int64_t nq = t == KvType::Q8 ? len : kvq::kivi_nq(len);
    const auto dc = d2h(kv.kc + kv.lay.code_off(st0, 0), size_t(nq * kv.lay.code_row()));
    int bad = 0;
    for (size_t i = 0; i < hc.size() && i < dc.size(); ++i) bad += hc[i] != dc[i];
    const size_t nsc = t == KvType::Q8 ? size_t(nq * (d / 32)) : size_t(nq / 32 * d);
    const auto ds = d2h(kv.ks + (t == KvType::Q8 ? kv.lay.q8_scale_off(st0, 0) : kv.lay.kk_sz_off(st0, 0)), nsc);
    for (size_t i = 0; i < hsc.size() && i < ds.size(); ++i) bad += hsc[i] != ds[i];
    err_codes = bad;
  }
  // 4. decode output vs reference
  double err_dec = 0;
  {
    const auto z = d2h(reinterpret_cast<uint16_t *>(dz), size_t(B * qd));
    std::vector<double> o, r, K, V;
    for (int b = 0; b < B; ++b) {
      const int len = lens[size_t(b)];
      for (int h = 0; h < nKV; ++h) {
        host_deq(t, hs[size_t(b)][size_t(h)], len, len, K, V);
        for (int j = 0; j < nH / nKV; ++j) {
          const int hq = h * (nH / nKV) + j;
          std::vector<float> qv(&qrows[size_t(b)][size_t((len - 1) * qd + hq * d)], &qrows[size_t(b)][size_t((len - 1) * qd + hq * d + d)]);
          attn_ref(qv, K, V, len, d, r);
          o.clear();
          for (int c = 0; c < d; ++c) o.push_back(kvq::bf16_bits_to_f32(z[size_t(b * qd + hq * d + c)]));
          err_dec = std::max(err_dec, rel_l2(o, r));
        }
      }
    }
  }
  char shape[96];
  std::string ls;
  for (int l : lens) ls += (ls.empty() ? "" : ",") + std::to_string(l);
  snprintf(shape, sizeof shape, "B%d h%d/%d d%d len%s", B, nH, nKV, d, ls.c_str());
  line("codes vs host", t, shape, err_codes, 0, 0, 0, 0);
  if (prefill_check) line("prefill attention", t, shape, err_pre, 1e-2, 0, 0, 0);
  double us = 0, gbs = 0, ratio = 0;
  if (timed) {  // the decode attention alone (the write of one row is not the bandwidth story)
    us = time_us([&] { cache.attend(st, dq, dz, 0); }, g_quick ? 20 : 100);
    double bytes = 0;
    for (int l : lens) {
      const int64_t nq = t == KvType::Q8 ? l : kvq::kivi_nq(l);
      bytes += double(nKV) * (double(nq) * kv.lay.bytes_per_token_stream() + double(l - nq) * 4.0 * d);
    }
    gbs = bytes / (us * 1e-6) / 1e9;
    // the engine's bf16 split-KV kernel on the same shape (contents irrelevant for the time)
    __nv_bfloat16 *kb = dalloc<__nv_bfloat16>(static_cast<size_t>(B) * nKV * ctx * d), *vb = dalloc<__nv_bfloat16>(static_cast<size_t>(B) * nKV * ctx * d);
    CHK(cudaMemset(kb, 0, size_t(B) * nKV * ctx * d * 2));
    CHK(cudaMemset(vb, 0, size_t(B) * nKV * ctx * d * 2));
    int32_t *dlen = dalloc<int32_t>(static_cast<size_t>(B)), *cnt = dalloc<int32_t>(static_cast<size_t>(B * nH));
    std::vector<int32_t> lv(lens.begin(), lens.end());
    h2d(dlen, lv);
    CHK(cudaMemset(cnt, 0, size_t(B * nH) * 4));
    const int ns = decode_attn_pick_split(nKV, ctx, sms);
    float *ws = dalloc<float>(decode_attn_ws_floats(B, nH, d, ns));
    DecodeAttnArgs a;
    a.out = dz; a.q = dq; a.kcache = kb; a.vcache = vb; a.slot = dslot; a.kv_len = dlen; a.batch = B; a.n_heads = nH;
    a.n_kv = nKV; a.head_dim = d; a.max_ctx = ctx; a.n_split = ns; a.ws = ws; a.counters = cnt;
    const double us16 = time_us([&] { launch_decode_attention(a, 0); }, g_quick ? 20 : 100);
    ratio = us16 / us;
    cudaFree(kb); cudaFree(vb); cudaFree(dlen); cudaFree(cnt); cudaFree(ws);
  }
  line("decode attention", t, shape, err_dec, 1e-2, us, gbs, ratio);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz); cudaFree(dpos); cudaFree(dslot);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) g_quick |= std::string(argv[i]) == "--quick";
  cudaDeviceProp prop;
  CHK(cudaGetDeviceProperties(&prop, 0));
  printf("kvqlab on %s (%d SMs)%s\n", prop.name, prop.multiProcessorCount, g_quick ? " --quick" : "");
  for (KvType t : {KvType::Q8, KvType::KIVI4, KvType::KIVI2}) {
    for (int len : {1, 17, 127, 128, 129, 4095, 4096}) run_case(t, {len}, 4, 4, 128, false, len <= 4096 && len > 1);
    run_case(t, {300}, 16, 4, 128, false, true);   // GQA 4
    run_case(t, {200}, 28, 4, 128, false, true);   // GQA 7 (Qwen2.5-7B)
    run_case(t, {161}, 32, 4, 64, false, true);    // GQA 8, d 64
    run_case(t, {17, 129, 4096}, 28, 4, 128, false, false);  // mixed lengths in one decode step
    run_case(t, {32768}, 28, 4, 128, true, false);           // 7B shape, depth 32k, B 1
    if (!g_quick) run_case(t, std::vector<int>(8, 32768), 28, 4, 128, true, false);  // B 8
  }
  printf("kvqlab: %d failure(s)\n", g_fail);
  return g_fail ? 1 : 0;
}
