// kvq_lab.cu — kernel lab of the quantized KV cache (src/opt/kvcache, kvCache = q8 | kivi4 | kivi2), its own
// binary (build/dev/kvqlab, `make -C cuda/dev kvqlab`; run: ./cuda/build/dev/kvqlab [--quick]).
// Per case, fresh random bf16 K/V/Q:
//   1. the sequence is written as the engine writes it (a prefill step of len-1 rows, then a decode row);
//   2. codes and scales read back and compared BITWISE with the host quantization (kv_format.hpp: the same
//      functions the CPU backend runs) of the same bf16 rows;
//   3. the decode attention output of BOTH kernels (v2, the default, and v1 = QW_KVQ_ATTN=v1) against an fp64
//      dequantize-then-attend reference (keys < nq(len) quantized, the rest bf16; kv_format.hpp), relative L2
//      error, tolerance 1e-2 (bf16 output);
//   4. prefill rows (one step over all positions) of both kernels: each row p against the reference with nq(p+1);
//   5. timed: the decode attention of v1 and v2, GB/s on the packed bytes it reads (codes + scales + bf16
//      residual), and the engine's bf16 split-KV decode kernel on the same shape for the speed ratio.
// Lengths 1, 17, 127, 128, 129, 4095, 4096, 32768; GQA 1, 4, 7, 8; a batch with mixed lengths.
// Host side: random data from per-block seeded generators and the references in OpenMP loops; the prefill
// attention runs (and its q is made) only where it is checked. --quick: 20 timing repetitions instead of 100,
// no prefill check at 4095/4096, the B8 depth-32k case for q8 only.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <omp.h>
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
static uint64_t g_seed = 0x9E3779B97F4A7C15ull;
static uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
// out[i] = bf16(N(0,1) * scale + shift), and every d-th element from index `outlier` on: N(0,1) * 20 (an
// outlier channel). Blocks of 4096 elements draw from their own generator (seeded by the call and the block),
// so the data does not depend on the thread count.
static void fill_normal(std::vector<uint16_t> &out, float scale, float shift, int d = 0, int outlier = -1) {
  const uint64_t seed = splitmix(g_seed++);
  const int64_t n = int64_t(out.size()), nb = (n + 4095) / 4096;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    uint64_t x = splitmix(seed ^ uint64_t(b)) | 1;
    auto u = [&] {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      return ((x >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    };
    for (int64_t i = b * 4096; i < std::min(n, b * 4096 + 4096); ++i) {
      const float z = float(std::sqrt(-2.0 * std::log(u())) * std::cos(6.283185307179586 * u()));
      const bool out_ch = d > 0 && i % d == outlier;
      out[size_t(i)] = kvq::f32_to_bf16_bits(out_ch ? z * 20.0f : z * scale + shift);
    }
  }
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

static const KvqAttnImpl kImpls[2] = {KvqAttnImpl::V2, KvqAttnImpl::V1};
static const char *impl_name(KvqAttnImpl i) { return i == KvqAttnImpl::V1 ? "v1" : "v2"; }

// Largest relative L2 error of z (bf16 rows [.][nH*d]) over the query heads of every (sequence b in [b0, b0+nb),
// item, kv head): q_of the item's query row, row_of its output row, seen_of its stream length (the query at
// position seen - 1 sees the cache of that length).
static double attn_err(KvType t, const std::vector<std::vector<HostStream>> &hs, const std::vector<uint16_t> &z,
                       const std::function<const float *(int b, int item)> &q_of, const std::function<int64_t(int b, int item)> &row_of,
                       const std::function<int64_t(int b, int item)> &seen_of, int b0, int nb, int items, int nH, int nKV, int d) {
  const int64_t qd = int64_t(nH) * d;
  double err = 0;
#pragma omp parallel for collapse(3) reduction(max : err) schedule(dynamic)
  for (int b = b0; b < b0 + nb; ++b)
    for (int it = 0; it < items; ++it)
      for (int h = 0; h < nKV; ++h) {
        const int64_t seen = seen_of(b, it), row = row_of(b, it);
        std::vector<double> K, V, r, o(static_cast<size_t>(d));
        host_deq(t, hs[size_t(b)][size_t(h)], seen, seen, K, V);
        for (int j = 0; j < nH / nKV; ++j) {
          const int hq = h * (nH / nKV) + j;
          const float *q = q_of(b, it) + int64_t(hq) * d;
          attn_ref(std::vector<float>(q, q + d), K, V, seen, d, r);
          for (int c = 0; c < d; ++c) o[size_t(c)] = kvq::bf16_bits_to_f32(z[size_t(row * qd + hq * d + c)]);
          err = std::max(err, rel_l2(o, r));
        }
      }
  return err;
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
  std::vector<std::vector<float>> qlast(static_cast<size_t>(B)), qall(static_cast<size_t>(B));  // q as float (bf16-rounded)
  const int64_t kvd = int64_t(nKV) * d, qd = int64_t(nH) * d;
  double err_codes = 0, err_pre[2] = {0, 0}, err_dec[2] = {0, 0};
  // 1. prefill of len-1 rows per sequence (one step each); its attention runs (and q exists) only where checked
  const int64_t qcap = std::max<int64_t>(B, prefill_check ? ctx : 1);
  __nv_bfloat16 *dk = dalloc<__nv_bfloat16>(static_cast<size_t>(ctx * kvd)), *dv = dalloc<__nv_bfloat16>(static_cast<size_t>(ctx * kvd));
  __nv_bfloat16 *dq = dalloc<__nv_bfloat16>(static_cast<size_t>(qcap * qd)), *dz = dalloc<__nv_bfloat16>(static_cast<size_t>(qcap * qd));
  int32_t *dpos = dalloc<int32_t>(static_cast<size_t>(ctx)), *dslot = dalloc<int32_t>(static_cast<size_t>(ctx));
  for (int b = 0; b < B; ++b) {
    const int len = lens[size_t(b)];
    std::vector<uint16_t> k(static_cast<size_t>(len * kvd)), v(static_cast<size_t>(len * kvd));
    std::vector<uint16_t> q(static_cast<size_t>((prefill_check ? len : 1) * qd));  // every row, or the decode row
    fill_normal(k, 2.0f, 0.5f, d, 3);  // channel 3 of every head: an outlier channel
    fill_normal(v, 1.0f, 0.0f);
    fill_normal(q, 1.0f, 0.0f);
#pragma omp parallel for
    for (int h = 0; h < nKV; ++h) {
      HostStream &s = hs[size_t(b)][size_t(h)];
      s.d = d;
      s.k.resize(static_cast<size_t>(len * d));
      s.v.resize(static_cast<size_t>(len * d));
      for (int64_t p = 0; p < len; ++p) {
        std::memcpy(&s.k[size_t(p * d)], &k[size_t(p * kvd + h * d)], size_t(d) * 2);
        std::memcpy(&s.v[size_t(p * d)], &v[size_t(p * kvd + h * d)], size_t(d) * 2);
      }
    }
    qlast[size_t(b)].resize(size_t(qd));
    for (int64_t i = 0; i < qd; ++i) qlast[size_t(b)][size_t(i)] = kvq::bf16_bits_to_f32(q[q.size() - size_t(qd) + size_t(i)]);
    if (prefill_check) {
      qall[size_t(b)].resize(q.size());
      for (size_t i = 0; i < q.size(); ++i) qall[size_t(b)][i] = kvq::bf16_bits_to_f32(q[i]);
      h2d(reinterpret_cast<uint16_t *>(dq), q);
    }
    h2d(reinterpret_cast<uint16_t *>(dk), k);
    h2d(reinterpret_cast<uint16_t *>(dv), v);
    std::vector<int32_t> pos(static_cast<size_t>(len)), slot(static_cast<size_t>(len), b);
    for (int p = 0; p < len; ++p) pos[size_t(p)] = p;
    h2d(dpos, pos);
    h2d(dslot, slot);
    if (len > 1) {
      KvqStep st;
      st.k = dk; st.v = dv; st.row_pos = dpos; st.row_slot = dslot; st.rows = len - 1; st.layer = 0;
      cache.write(st, 0);
      if (prefill_check) {  // both kernels on the same step (before the ring: a long prefill overwrites slots it reads)
        const std::vector<int64_t> rows = {0, len / 3, len / 2, len - 2};
        for (int ii = 0; ii < 2; ++ii) {
          cache.set_impl(kImpls[ii]);
          CHK(cudaMemset(dz, 0xff, size_t((len - 1) * qd) * 2));
          cache.attend(st, dq, dz, 0);
          CHK(cudaDeviceSynchronize());
          const auto z = d2h(reinterpret_cast<uint16_t *>(dz), size_t((len - 1) * qd));
          const auto &qa = qall[size_t(b)];
          err_pre[ii] = std::max(err_pre[ii], attn_err(t, hs, z, [&](int, int it) { return &qa[size_t(rows[size_t(it)] * qd)]; },
                                                       [&](int, int it) { return rows[size_t(it)]; }, [&](int, int it) { return rows[size_t(it)] + 1; },
                                                       b, 1, 4, nH, nKV, d));
        }
      }
      cache.ring(st, 0);
      CHK(cudaDeviceSynchronize());
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
    for (int64_t i = 0; i < qd; ++i) q1[size_t(b * qd + i)] = kvq::f32_to_bf16_bits(qlast[size_t(b)][size_t(i)]);
  }
  h2d(reinterpret_cast<uint16_t *>(dk), k1);
  h2d(reinterpret_cast<uint16_t *>(dv), v1);
  h2d(reinterpret_cast<uint16_t *>(dq), q1);
  h2d(dpos, pos1);
  h2d(dslot, slot1);
  KvqStep st;
  st.k = dk; st.v = dv; st.row_pos = dpos; st.row_slot = dslot; st.rows = B; st.layer = 0;
  cache.write(st, 0);
  for (int ii = 0; ii < 2; ++ii) {  // 4. decode output of both kernels vs the reference
    cache.set_impl(kImpls[ii]);
    CHK(cudaMemset(dz, 0xff, size_t(B * qd) * 2));
    cache.attend(st, dq, dz, 0);
    CHK(cudaDeviceSynchronize());
    const auto z = d2h(reinterpret_cast<uint16_t *>(dz), size_t(B * qd));
    err_dec[ii] = attn_err(t, hs, z, [&](int b, int) { return qlast[size_t(b)].data(); }, [&](int b, int) { return int64_t(b); },
                           [&](int b, int) { return int64_t(lens[size_t(b)]); }, 0, B, 1, nH, nKV, d);
  }
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
  char shape[96];
  std::string ls;
  for (int l : lens) ls += (ls.empty() ? "" : ",") + std::to_string(l);
  if (B > 3) ls = std::to_string(B) + "x" + std::to_string(lens[0]);
  snprintf(shape, sizeof shape, "B%d h%d/%d d%d len%s", B, nH, nKV, d, ls.c_str());
  line("codes vs host", t, shape, err_codes, 0, 0, 0, 0);
  for (int ii = 0; ii < 2 && prefill_check; ++ii)
    line((std::string("prefill attention ") + impl_name(kImpls[ii])).c_str(), t, shape, err_pre[ii], 1e-2, 0, 0, 0);
  double us[2] = {0, 0}, us16 = 0, bytes = 0, bytes16 = 0;
  if (timed) {  // the decode attention alone (the write of one row is not the bandwidth story)
    for (int ii = 0; ii < 2; ++ii) {
      cache.set_impl(kImpls[ii]);
      us[ii] = time_us([&] { cache.attend(st, dq, dz, 0); }, g_quick ? 20 : 100);
    }
    for (int l : lens) {
      const int64_t nq = t == KvType::Q8 ? l : kvq::kivi_nq(l);
      bytes += double(nKV) * (double(nq) * kv.lay.bytes_per_token_stream() + double(l - nq) * 4.0 * d);
      bytes16 += double(nKV) * double(l) * 4.0 * d;
    }
    // the engine's bf16 split-KV kernel on the same shape (contents irrelevant for the time)
    __nv_bfloat16 *kb = dalloc<__nv_bfloat16>(static_cast<size_t>(B) * nKV * ctx * d), *vb = dalloc<__nv_bfloat16>(static_cast<size_t>(B) * nKV * ctx * d);
    CHK(cudaMemset(kb, 0, size_t(B) * nKV * ctx * d * 2));
    CHK(cudaMemset(vb, 0, size_t(B) * nKV * ctx * d * 2));
    int32_t *dlen = dalloc<int32_t>(static_cast<size_t>(B)), *cnt = dalloc<int32_t>(static_cast<size_t>(B * nH));
    std::vector<int32_t> lv(lens.begin(), lens.end());
    h2d(dlen, lv);
    CHK(cudaMemset(cnt, 0, size_t(B * nH) * 4));
    const int ns = decode_attn_pick_split(nH, nKV, ctx, sms);  // as the engine (backend_cuda.cu) picks it
    float *ws = dalloc<float>(decode_attn_ws_floats(B, nH, d, ns));
    DecodeAttnArgs a;
    a.out = dz; a.q = dq; a.kcache = kb; a.vcache = vb; a.slot = dslot; a.kv_len = dlen; a.batch = B; a.n_heads = nH;
    a.n_kv = nKV; a.head_dim = d; a.max_ctx = ctx; a.n_split = ns; a.ws = ws; a.counters = cnt;
    us16 = time_us([&] { launch_decode_attention(a, 0); }, g_quick ? 20 : 100);
    cudaFree(kb); cudaFree(vb); cudaFree(dlen); cudaFree(cnt); cudaFree(ws);
  }
  for (int ii = 0; ii < 2; ++ii)
    line((std::string("decode attention ") + impl_name(kImpls[ii])).c_str(), t, shape, err_dec[ii], 1e-2, us[ii],
         us[ii] > 0 ? bytes / (us[ii] * 1e-6) / 1e9 : 0, us[ii] > 0 ? us16 / us[ii] : 0);
  if (timed)
    printf("%-22s %-6s %-34s %9.2f us  %8.1f GB/s of bf16 K/V   v2 = x%.2f v1\n", "  bf16 split-KV kernel", kvq::kv_type_name(t), shape, us16,
           bytes16 / (us16 * 1e-6) / 1e9, us[0] > 0 ? us[1] / us[0] : 0);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz); cudaFree(dpos); cudaFree(dslot);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") g_quick = true;
    else {
      fprintf(stderr, "kvqlab: unknown argument '%s' (usage: kvqlab [--quick])\n", argv[i]);
      return 2;
    }
  }
  const double t0 = omp_get_wtime();
  cudaDeviceProp prop;
  CHK(cudaGetDeviceProperties(&prop, 0));
  printf("kvqlab on %s (%d SMs)%s, %d host threads; v2 resident blocks per SM at d128 gq7 (4 warps each): q8 %d, kivi4 %d, kivi2 %d\n",
         prop.name, prop.multiProcessorCount, g_quick ? " --quick" : "", omp_get_max_threads(), kvq_attn2_blocks_per_sm(KvType::Q8, 128, 7),
         kvq_attn2_blocks_per_sm(KvType::KIVI4, 128, 7), kvq_attn2_blocks_per_sm(KvType::KIVI2, 128, 7));
  for (KvType t : {KvType::Q8, KvType::KIVI4, KvType::KIVI2}) {
    for (int len : {1, 17, 127, 128, 129, 4095, 4096}) run_case(t, {len}, 4, 4, 128, false, len > 1 && !(g_quick && len >= 4095));
    run_case(t, {300}, 16, 4, 128, false, true);   // GQA 4
    run_case(t, {200}, 28, 4, 128, false, true);   // GQA 7 (Qwen2.5-7B)
    run_case(t, {161}, 32, 4, 64, false, true);    // GQA 8, d 64
    run_case(t, {70}, 8, 8, 32, false, true);      // GQA 1, d 32
    run_case(t, {17, 129, 4096}, 28, 4, 128, false, false);  // mixed lengths in one decode step
    run_case(t, {32768}, 28, 4, 128, true, false);           // 7B shape, depth 32k, B 1
    if (!g_quick || t == KvType::Q8) run_case(t, std::vector<int>(8, 32768), 28, 4, 128, true, false);  // B 8
  }
  printf("kvqlab: %d failure(s), %.1f s\n", g_fail, omp_get_wtime() - t0);
  return g_fail ? 1 : 0;
}
