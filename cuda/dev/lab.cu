// lab.cu — the kernel lab: every production kernel of src/cuda/ against a CPU reference (fresh random inputs,
// outputs poisoned before each launch) and timed with cudaEvents after warm-up (median of many launches,
// rotating weight copies so that L2 does not serve repeated reads). Build: cuda/dev/Makefile (make -C cuda/dev).
//
//   qwlab [all|gemv|attn|prefill|gemm|misc|chain|sanitize|calib] [--quick] [--json FILE]
//
// Prints one line per case and a table last:  case | shape | check | rel err | time | rate | % of ceiling.
// `calib` prints one JSON line starting with CALIB (device copy bandwidth, L2 read bandwidth, bf16 tensor-core rate), read by
// notebooks/calibrate.ts.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attention.cuh"
#include "attn_decode_dev.cuh"
#include "common.cuh"
#include "cublaslt.cuh"
#include "embed.cuh"
#include "gemm.cuh"
#include "gemv.cuh"
#include "l2bw.cuh"
#include "norm.cuh"
#include "rope.cuh"
#include "sample.cuh"
#include "swiglu.cuh"

using namespace qwc;

// ------------------------------------------------------------------------------------------------ utils
#define CHK(x) cuda_check((x), #x, __FILE__, __LINE__)
static double g_copy_bw = 4.16e12;      // bytes/s, replaced by the measured value in `calib`/`all`
static double g_bf16_rate = 768e12;     // FLOP/s
static bool g_quick = false;
static int g_fail = 0;
static int g_attn_dev_hpb = 0;  // decode_case: 0 = engine kernel, 1 / 8 = dev variant (attn_decode_dev.cu) with that many heads per block

struct Row {
  std::string name, shape, check;
  double err, us, rate;
  std::string unit;
  double pct;
};
static std::vector<Row> g_rows;

static uint64_t g_rng = 0;
static inline uint64_t rnd64() {
  g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
  return g_rng;
}
static inline float rndu() { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)); }
static inline float rndn() {
  float u1 = std::max(rndu(), 1e-7f), u2 = rndu();
  return sqrtf(-2.f * logf(u1)) * cosf(6.2831853f * u2);
}
static inline uint16_t f2bf(float f) {
  __nv_bfloat16 b = __float2bfloat16(f);
  uint16_t u;
  memcpy(&u, &b, 2);
  return u;
}
static inline float bf2f(uint16_t u) {
  uint32_t x = (uint32_t)u << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}
static inline float bfr(float f) { return bf2f(f2bf(f)); }

template <typename T>
static T *dalloc(size_t n) {
  void *p;
  CHK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return (T *)p;
}
template <typename T>
static void h2d(T *d, const std::vector<T> &h) { CHK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
template <typename T>
static std::vector<T> d2h(const T *d, size_t n) {
  std::vector<T> h(n);
  CHK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
static void poison(void *d, size_t bytes) { CHK(cudaMemset(d, 0xff, bytes)); }  // NaN for f32/bf16

// median time in microseconds of `iters` launches of f(i) after `warm` warm-ups
static double time_us(const std::function<void(int)> &f, int iters = 50, int warm = 5) {
  cudaEvent_t a, b;
  CHK(cudaEventCreate(&a));
  CHK(cudaEventCreate(&b));
  for (int i = 0; i < warm; ++i) f(i);
  CHK(cudaDeviceSynchronize());
  std::vector<float> ts;
  for (int i = 0; i < iters; ++i) {
    CHK(cudaEventRecord(a));
    f(i);
    CHK(cudaEventRecord(b));
    CHK(cudaEventSynchronize(b));
    float ms;
    CHK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms * 1000.f);
  }
  CHK(cudaGetLastError());
  std::sort(ts.begin(), ts.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ts[ts.size() / 2];
}

static double rel_err(const std::vector<double> &out, const std::vector<double> &ref, bool *nan_seen) {
  double num = 0, den = 0;
  *nan_seen = false;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) { *nan_seen = true; continue; }
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void report(const std::string &name, const std::string &shape, bool checked, double err, double tol, bool nan_seen,
                   double us, double rate, const std::string &unit, double ceiling) {
  std::string check = !checked ? "-" : (nan_seen ? "FAIL(nan/unwritten)" : (err <= tol ? "PASS" : "FAIL"));
  if (check.rfind("FAIL", 0) == 0) ++g_fail;
  const double pct = ceiling > 0 && rate > 0 ? 100.0 * rate / ceiling : 0;
  g_rows.push_back({name, shape, check, err, us, rate, unit, pct});
  printf("%-34s %-28s %-8s err %.2e (tol %.0e)  %9.2f us  %9.1f %s  %5.1f%%\n", name.c_str(), shape.c_str(), check.c_str(),
         err, tol, us, rate, unit.c_str(), pct);
  fflush(stdout);
}

// ------------------------------------------------------------------------------------------------ weights
struct HostW {
  int type;
  int64_t rows, cols;
  int group;
  std::vector<uint8_t> data;
  std::vector<float> scale, offset;
  float at(int64_t r, int64_t c) const {
    const int64_t i = r * cols + c;
    switch (type) {
      case WT_F32: { float f; memcpy(&f, &data[i * 4], 4); return f; }
      case WT_F16: { __half h; memcpy(&h, &data[i * 2], 2); return __half2float(h); }
      case WT_BF16: { uint16_t u; memcpy(&u, &data[i * 2], 2); return bf2f(u); }
      case WT_W8: { int64_t g = r * (cols / group) + c / group; return scale[g] * (float)(int8_t)data[i] + offset[g]; }
      default: {
        int64_t g = r * (cols / group) + c / group;
        uint8_t b = data[i >> 1];
        return scale[g] * (float)((i & 1) ? (b >> 4) : (b & 15)) + offset[g];
      }
    }
  }
  size_t bytes() const { return data.size() + 4 * (scale.size() + offset.size()); }
};
static HostW make_w(int type, int64_t rows, int64_t cols, int group = 32) {
  HostW w{type, rows, cols, group, {}, {}, {}};
  const int64_t n = rows * cols;
  const float sd = 1.0f / sqrtf((float)cols);
  switch (type) {
    case WT_F32: w.data.resize(n * 4); for (int64_t i = 0; i < n; ++i) { float f = rndn() * sd; memcpy(&w.data[i * 4], &f, 4); } break;
    case WT_F16: w.data.resize(n * 2); for (int64_t i = 0; i < n; ++i) { __half h = __float2half(rndn() * sd); memcpy(&w.data[i * 2], &h, 2); } break;
    case WT_BF16: w.data.resize(n * 2); for (int64_t i = 0; i < n; ++i) { uint16_t u = f2bf(rndn() * sd); memcpy(&w.data[i * 2], &u, 2); } break;
    case WT_W8: case WT_W4: {
      w.data.resize(type == WT_W8 ? n : n / 2);
      for (auto &b : w.data) b = (uint8_t)(rnd64() & 0xff);
      const int64_t ng = rows * (cols / group);
      w.scale.resize(ng); w.offset.resize(ng);
      for (int64_t i = 0; i < ng; ++i) { w.scale[i] = sd * 0.05f * (0.5f + rndu()); w.offset[i] = type == WT_W4 ? -8 * w.scale[i] : -0.f; }
      break;
    }
  }
  return w;
}
struct DevW {
  WMat m;
  void *d = nullptr; float *s = nullptr, *o = nullptr;
};
static DevW upload_w(const HostW &h) {
  DevW w;
  w.d = dalloc<uint8_t>(h.data.size());
  CHK(cudaMemcpy(w.d, h.data.data(), h.data.size(), cudaMemcpyHostToDevice));
  if (!h.scale.empty()) {
    w.s = dalloc<float>(h.scale.size()); h2d(w.s, h.scale);
    w.o = dalloc<float>(h.offset.size()); h2d(w.o, h.offset);
  }
  w.m.data = w.d; w.m.scale = w.s; w.m.offset = w.o; w.m.rows = h.rows; w.m.cols = h.cols; w.m.group = h.group; w.m.type = h.type;
  return w;
}
static void free_w(DevW &w) { cudaFree(w.d); if (w.s) cudaFree(w.s); if (w.o) cudaFree(w.o); }
static const char *tname(int t) {
  static const char *n[] = {"f32", "f16", "bf16", "w8", "w4"};
  return n[t];
}

// ------------------------------------------------------------------------------------------------ gemv
// Checks rows {0..63, every 7th, last 64} (all rows for small matrices); every output is checked for poison.
static void gemv_case(const char *label, int type, int64_t rows, int64_t cols, int batch, int pro, int epi, bool timed) {
  HostW hw = make_w(type, rows, cols, type == WT_W8 && (cols % 16 == 0) && (rnd64() & 1) ? 16 : 32);
  DevW w = upload_w(hw);
  const int64_t out_cols = epi == GEMV_EPI_SWIGLU ? rows / 2 : rows;
  std::vector<uint16_t> act(batch * cols);
  std::vector<float> x(batch * cols), nw(cols), bias(rows), base(batch * out_cols);
  for (auto &v : act) v = f2bf(rndn());
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : nw) v = 0.5f + rndu();
  for (auto &v : bias) v = rndn() * 0.1f;
  for (auto &v : base) v = rndn();
  __nv_bfloat16 *dact = (__nv_bfloat16 *)dalloc<uint16_t>(act.size());
  h2d((uint16_t *)dact, act);
  float *dx = dalloc<float>(x.size()), *dnw = dalloc<float>(cols), *db = dalloc<float>(rows);
  h2d(dx, x); h2d(dnw, nw); h2d(db, bias);
  const bool out_bf = epi == GEMV_EPI_BF16 || epi == GEMV_EPI_SWIGLU;
  void *dout = dalloc<float>(batch * out_cols);
  __nv_bfloat16 *daux = (__nv_bfloat16 *)dalloc<uint16_t>(batch * out_cols);
  GemvArgs a;
  a.epi = epi; a.out = dout; a.out_ld = out_cols; a.bias = (epi == GEMV_EPI_BF16 || epi == GEMV_EPI_F32) ? db : nullptr;
  a.aux = epi == GEMV_EPI_SWIGLU ? daux : nullptr; a.aux_ld = out_cols;
  a.w = w.m; a.batch = batch; a.pro = pro; a.act = dact; a.act_ld = cols; a.x = dx; a.x_ld = cols; a.norm_w = dnw; a.eps = 1e-6f;
  if (epi == GEMV_EPI_ADD_F32) h2d((float *)dout, base);
  else poison(dout, batch * out_cols * 4);
  const char *variant = launch_gemv(a, 0);
  CHK(cudaDeviceSynchronize());
  // reference
  std::vector<float> ain(batch * cols);
  for (int b = 0; b < batch; ++b) {
    if (pro == GEMV_PRO_BF16) for (int64_t k = 0; k < cols; ++k) ain[b * cols + k] = bf2f(act[b * cols + k]);
    else {
      double ss = 0;
      for (int64_t k = 0; k < cols; ++k) ss += (double)x[b * cols + k] * x[b * cols + k];
      const float rstd = 1.0f / sqrtf((float)(ss / cols) + 1e-6f);
      for (int64_t k = 0; k < cols; ++k) ain[b * cols + k] = bfr(bfr(x[b * cols + k] * rstd) * nw[k]);
    }
  }
  std::vector<int64_t> check_rows;
  for (int64_t r = 0; r < rows; ++r)
    if (rows <= 20000 || r < 64 || r >= rows - 64 || r % 7 == 0) check_rows.push_back(r);
  std::vector<double> acc_ref(rows, 0.0);
  std::vector<double> outv, refv;
  const size_t out_elems = (size_t)batch * out_cols;
  std::vector<float> of(out_elems);
  if (out_bf) { auto o16 = d2h((uint16_t *)dout, out_elems); for (size_t i = 0; i < out_elems; ++i) of[i] = bf2f(o16[i]); }
  else of = d2h((float *)dout, out_elems);
  bool unwritten = false;
  for (float v : of) if (!std::isfinite(v)) unwritten = true;
  for (int b = 0; b < batch; ++b) {
    #pragma omp parallel for schedule(dynamic, 64)
    for (size_t ci = 0; ci < check_rows.size(); ++ci) {
      const int64_t r = check_rows[ci];
      double s = 0;
      for (int64_t k = 0; k < cols; ++k) s += (double)hw.at(r, k) * ain[b * cols + k];
      acc_ref[r] = s;
    }
    for (int64_t r : check_rows) {
      if (epi == GEMV_EPI_SWIGLU) {
        if (r % 2) continue;
        if (std::find(check_rows.begin(), check_rows.end(), r + 1) == check_rows.end()) continue;
        const float g = bfr((float)acc_ref[r]), u = bfr((float)acc_ref[r + 1]);
        const float sv = bfr(g / (1.f + expf(-g)));
        refv.push_back(sv * u);
        outv.push_back(of[b * out_cols + r / 2]);
      } else {
        double ref = acc_ref[r];
        if (epi == GEMV_EPI_BF16 || epi == GEMV_EPI_F32) ref += bias[r];
        if (epi == GEMV_EPI_ADD_F32) ref += base[b * out_cols + r];
        refv.push_back(ref);
        outv.push_back(of[b * out_cols + r]);
      }
    }
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
  cudaFree(dact); cudaFree(dx); cudaFree(dnw); cudaFree(db); cudaFree(dout); cudaFree(daux);
}

// GEMV_EPI_QKV_ROPE: norm + q|k|v (pair-interleaved rows) + bias + RoPE + KV write, against the CPU chain
// norm -> projection (original rows) -> bias -> bf16 -> RoPE (HF rounding order).
static void qkv_rope_case(const char *label, int B, int H, int nH, int nKV, int d, bool timed) {
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
  HostW hw = make_w(type, rows, cols);
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

static void run_gemv() {
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
  // other weight types (simple dequant path): correctness + GB/s of the packed bytes
  for (int t : {WT_F32, WT_F16, WT_W8, WT_W4}) {
    gemv_case("7B o_proj", t, 3584, 3584, 1, GEMV_PRO_BF16, GEMV_EPI_F32, true);
    if (g_quick) gemv_case("1.5B down", t, 1536, 8960, 3, GEMV_PRO_BF16, GEMV_EPI_F32, false);  // 1/5 of the host randoms
    else gemv_case("7B down", t, 3584, 18944, 3, GEMV_PRO_BF16, GEMV_EPI_F32, true);
  }
  // awkward shapes: odd rows, cols not a multiple of 8 (generic kernel), bf16 out with bias
  gemv_case("awkward bf16out", WT_BF16, 77, 896, 5, GEMV_PRO_BF16, GEMV_EPI_BF16, false);
  gemv_case("awkward cols%8!=0", WT_BF16, 301, 900, 3, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  gemv_case("awkward swiglu", WT_F16, 2 * 333, 904, 16, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, false);
  gemv_case("awkward w4 b7", WT_W4, 129, 1024, 7, GEMV_PRO_NORM, GEMV_EPI_F32, false);
}

// ------------------------------------------------------------------------------------------------ attention
// CPU reference over a cache [slots][nKV][max_ctx][d] (bf16 values), q [rows][nH*d] bf16, causal.
static void attn_ref(std::vector<double> &out, const std::vector<uint16_t> &q, const std::vector<uint16_t> &kc,
                     const std::vector<uint16_t> &vc, int slot, int q_row, int n_keys, int nH, int nKV, int d, int max_ctx) {
  const int G = nH / nKV;
  for (int h = 0; h < nH; ++h) {
    const int kh = h / G;
    std::vector<double> s(n_keys);
    double mx = -1e300;
    for (int t = 0; t < n_keys; ++t) {
      double acc = 0;
      for (int e = 0; e < d; ++e)
        acc += (double)bf2f(q[(size_t)q_row * nH * d + h * d + e]) *
               bf2f(kc[(((size_t)slot * nKV + kh) * max_ctx + t) * d + e]);
      s[t] = acc / sqrt((double)d);
      mx = std::max(mx, s[t]);
    }
    double l = 0;
    for (int t = 0; t < n_keys; ++t) { s[t] = exp(s[t] - mx); l += s[t]; }
    for (int e = 0; e < d; ++e) {
      double o = 0;
      for (int t = 0; t < n_keys; ++t) o += s[t] * bf2f(vc[(((size_t)slot * nKV + kh) * max_ctx + t) * d + e]);
      out.push_back(o / l);
    }
  }
}

static void decode_case(int B, int nH, int nKV, int d, int len, int max_ctx, bool bcast, bool timed) {
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
  const int ns = g_attn_dev_hpb ? decode_attn_dev_pick_split(nH, nKV, g_attn_dev_hpb, max_ctx, sms)
                                : decode_attn_pick_split(bcast ? nH : nKV, max_ctx, sms);
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
    } else if (g_attn_dev_hpb) {
      launch_decode_attention_dev(a, g_attn_dev_hpb, 0);
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
  double us = 0, rate = 0;
  if (timed) {
    us = time_us([&](int) { run(); }, g_quick ? 20 : 100);
    double bytes = 0;
    for (int b = 0; b < B; ++b) bytes += 2.0 * lens[b] * nKV * d * 2;
    rate = bytes / (us * 1e-6) / 1e9;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "B%d h%d/%d d%d len%d", B, nH, nKV, d, len);
  const char *label = bcast ? "attn decode (gqa broadcast)" : g_attn_dev_hpb == 1 ? "attn decode dev h1" : g_attn_dev_hpb ? "attn decode dev h8" : "attn decode splitkv";
  report(label, shape, true, err, 1e-2, nan_seen, us, rate, "GB/s",
         g_copy_bw / 1e9);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz); cudaFree(dslot); cudaFree(dlen); cudaFree(dident); cudaFree(ws);
  cudaFree(cnt);
  if (bk) { cudaFree(bk); cudaFree(bv); }
}

static void prefill_case(int nH, int nKV, int d, int pos0, int n, bool simt, bool timed, int max_check_rows = 96) {
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
  poison(dz, q.size() * 2);
  const char *variant = simt ? launch_prefill_attention_simt(a, 0) : launch_prefill_attention(a, 0);
  CHK(cudaDeviceSynchronize());
  auto z = d2h((uint16_t *)dz, q.size());
  bool unwritten = false;
  for (auto u : z) if (!std::isfinite(bf2f(u))) unwritten = true;
  std::vector<double> outv, refv;
  std::vector<int> rows;
  const int stride = std::max(1, n / 16);
  for (int r = 0; r < n; ++r) if (n <= max_check_rows || r < 8 || r >= n - 8 || r % stride == 0) rows.push_back(r);
  std::vector<std::vector<double>> refs(rows.size());
  #pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < rows.size(); ++i) attn_ref(refs[i], q, kc, vc, 1, rows[i], pos0 + rows[i] + 1, nH, nKV, d, max_ctx);
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
  snprintf(shape, sizeof shape, "h%d/%d d%d pos0 %d n %d", nH, nKV, d, pos0, n);
  report(std::string("attn prefill [") + variant + "]", shape, true, err, 1e-2, nan_seen, us, rate, "TFLOP/s",
         g_bf16_rate / 1e12);
  cudaFree(dk); cudaFree(dv); cudaFree(dq); cudaFree(dz);
}

static void run_attn() {
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
      {1, 12, 2, 128, 16385, 16400, false, true}, // 128 allocated, 103 active splits of 160 keys
      {1, 28, 4, 128, 300, 4096, true, true},
      {2, 14, 2, 64, 77, 512, true, false},
  };
  for (const C &c : cases) decode_case(c.B, c.nH, c.nKV, c.d, c.len, c.max_ctx, c.bcast, c.timed);
  // dev variant (attn_decode_dev.cu, NOTES.md §9) on the same native-GQA cases: one query head per block, then 8
  for (int hpb : {1, 8}) {
    g_attn_dev_hpb = hpb;
    for (const C &c : cases)
      if (!c.bcast) decode_case(c.B, c.nH, c.nKV, c.d, c.len, c.max_ctx, false, c.timed);
  }
  g_attn_dev_hpb = 0;
}
static void run_prefill() {
  prefill_case(7, 1, 128, 0, 1, false, false);
  prefill_case(7, 1, 128, 0, 37, false, false);
  prefill_case(14, 2, 64, 0, 200, false, false);
  prefill_case(14, 2, 64, 50, 77, false, false);
  prefill_case(4, 1, 64, 13, 130, true, false);
  prefill_case(4, 4, 128, 0, 65, false, false);
  prefill_case(28, 4, 128, 0, 512, false, true, 64);
  prefill_case(28, 4, 128, 0, 4096, false, true, 64);
  prefill_case(14, 2, 64, 0, 4096, false, true, 64);
  if (!g_quick) {
    prefill_case(28, 4, 128, 0, 16384, false, true, 40);
    prefill_case(28, 4, 128, 0, 512, true, true, 64);
  }
}

// ------------------------------------------------------------------------------------------------ gemm
static void gemm_case(int backend, int64_t M, int64_t N, int64_t K, int kind, bool timed) {
  if (backend == 2 && !cublaslt_available()) {
    printf("gemm cublaslt: skipped (%s)\n", cublaslt_status());
    return;
  }
  std::vector<uint16_t> A(M * K), W(N * K);
  for (auto &v : A) v = f2bf(rndn());
  for (auto &v : W) v = f2bf(rndn() / sqrtf((float)K));
  std::vector<float> base(M * N);
  for (auto &v : base) v = rndn();
  __nv_bfloat16 *da = (__nv_bfloat16 *)dalloc<uint16_t>(A.size()), *dw = (__nv_bfloat16 *)dalloc<uint16_t>(W.size());
  h2d((uint16_t *)da, A); h2d((uint16_t *)dw, W);
  void *dc = dalloc<float>(M * N);
  GemmArgs g;
  g.out_kind = kind; g.c = dc; g.ldc = N; g.a = da; g.lda = K; g.w = dw; g.m = M; g.n = N; g.k = K;
  if (kind == GEMM_OUT_ADD_F32) h2d((float *)dc, base);
  else poison(dc, M * N * 4);
  const char *variant = launch_gemm(g, 0, backend);
  CHK(cudaDeviceSynchronize());
  std::vector<float> of(M * N);
  if (kind == GEMM_OUT_BF16) { auto o = d2h((uint16_t *)dc, M * N); for (size_t i = 0; i < of.size(); ++i) of[i] = bf2f(o[i]); }
  else of = d2h((float *)dc, M * N);
  bool unwritten = false;
  for (float v : of) if (!std::isfinite(v)) unwritten = true;
  std::vector<int64_t> rows;
  for (int64_t r = 0; r < M; ++r) if (M <= 64 || r < 16 || r >= M - 16 || r % 61 == 0) rows.push_back(r);
  std::vector<double> outv(rows.size() * N), refv(rows.size() * N);
  #pragma omp parallel for
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t r = rows[i];
    for (int64_t n = 0; n < N; ++n) {
      double s = kind == GEMM_OUT_ADD_F32 ? base[r * N + n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += (double)bf2f(A[r * K + k]) * bf2f(W[n * K + k]);
      refv[i * N + n] = s;
      outv[i * N + n] = of[r * N + n];
    }
  }
  bool nan_seen;
  double err = rel_err(outv, refv, &nan_seen);
  nan_seen |= unwritten;
  double us = 0, rate = 0;
  if (timed) {
    GemmArgs t = g;
    if (kind == GEMM_OUT_ADD_F32) t.out_kind = GEMM_OUT_F32;
    us = time_us([&](int) { launch_gemm(t, 0, backend); }, g_quick ? 10 : 30, 3);
    rate = 2.0 * M * N * K / (us * 1e-6) / 1e12;
  }
  char shape[96];
  snprintf(shape, sizeof shape, "%lldx%lldx%lld %s", (long long)M, (long long)N, (long long)K,
           kind == GEMM_OUT_BF16 ? "bf16" : kind == GEMM_OUT_F32 ? "f32" : "+=f32");
  report(std::string("gemm [") + variant + "]", shape, true, err, kind == GEMM_OUT_BF16 ? 1e-2 : 1e-4, nan_seen, us, rate,
         "TFLOP/s", g_bf16_rate / 1e12);
  cudaFree(da); cudaFree(dw); cudaFree(dc);
}

static void run_gemm() {
  for (int be : {1, 2}) {
    gemm_case(be, 37, 200, 136, GEMM_OUT_F32, false);
    gemm_case(be, 130, 77, 904, GEMM_OUT_ADD_F32, false);
    gemm_case(be, 65, 512, 256, GEMM_OUT_BF16, false);
    gemm_case(be, 200, 300, 136, GEMM_OUT_ADD_F32, false);   // tails in M, N and K of the 128x128 tile
    // quick: the own kernel's big shapes only when cuBLASLt is absent (then it is the prefill path)
    if (g_quick && be == 1 && cublaslt_available()) continue;
    gemm_case(be, 512, 4608, 3584, GEMM_OUT_F32, true);       // 7B qkv pp512
    if (!g_quick) gemm_case(be, 512, 37888, 3584, GEMM_OUT_BF16, true);  // 7B gate_up pp512
    gemm_case(be, 512, 3584, 18944, GEMM_OUT_ADD_F32, true);  // 7B down pp512
    if (!g_quick) gemm_case(be, 4096, 37888, 3584, GEMM_OUT_BF16, true);
  }
}

// ------------------------------------------------------------------------------------------------ misc
static void run_misc() {
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
    report("rmsnorm", "13x896", true, rel_err(o, r, &ns), 4e-3, ns, 0, 0, "", 0);
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

static void run_sampling() {
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
static void fill_dev(__nv_bfloat16 *p, int64_t n, float scale) {
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
  const int ns = decode_attn_pick_split(nKV, max_ctx, sms);
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
  // graph, no PDL
  cudaGraph_t gr; cudaGraphExec_t ge;
  CHK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed)); step(); CHK(cudaStreamEndCapture(st, &gr));
  CHK(cudaGraphInstantiate(&ge, gr, 0));
  const double us_graph = time_mode([&] { CHK(cudaGraphLaunch(ge, st)); });
  const auto r_graph = result();
  cudaGraphExecDestroy(ge); cudaGraphDestroy(gr);
  // graph with PDL (sm_90)
  set_pdl(true);
  CHK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed)); step(); CHK(cudaStreamEndCapture(st, &gr));
  CHK(cudaGraphInstantiate(&ge, gr, 0));
  const double us_pdl = time_mode([&] { CHK(cudaGraphLaunch(ge, st)); });
  const auto r_pdl = result();
  cudaGraphExecDestroy(ge); cudaGraphDestroy(gr);
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

// Small, untimed cases only: fast enough under compute-sanitizer (memcheck / racecheck / synccheck).
static void run_sanitize() {
  run_misc();
  gemv_case("small bf16 norm", WT_BF16, 96, 256, 1, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  gemv_case("small swiglu b3", WT_BF16, 64, 256, 3, GEMV_PRO_NORM, GEMV_EPI_SWIGLU, false);
  gemv_case("small w4 +res b2", WT_W4, 40, 512, 2, GEMV_PRO_BF16, GEMV_EPI_ADD_F32, false);
  gemv_case("small w8 b9", WT_W8, 33, 256, 9, GEMV_PRO_BF16, GEMV_EPI_BF16, false);
  gemv_case("small cols%8!=0", WT_F16, 20, 100, 2, GEMV_PRO_NORM, GEMV_EPI_F32, false);
  qkv_rope_case("tiny", 2, 256, 4, 1, 64, false);
  decode_case(2, 4, 1, 64, 77, 128, false, false);
  decode_case(1, 4, 2, 64, 300, 512, false, false);  // 3 active splits of 4: the combine
  decode_case(1, 4, 2, 128, 33, 64, true, false);
  prefill_case(4, 1, 64, 0, 70, false, false);
  prefill_case(4, 2, 128, 9, 33, false, false);
  prefill_case(2, 1, 64, 3, 20, true, false);
  gemm_case(1, 37, 72, 40, GEMM_OUT_F32, false);
  gemm_case(1, 130, 136, 72, GEMM_OUT_ADD_F32, false);
}

static void run_chain() {
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

// ------------------------------------------------------------------------------------------------ calibration
// L2 read bandwidth (l2bw.cu): a buffer of half the L2 re-read 400 times per launch, median of 10 launches after
// 2 warm-ups, 3 times; `out` gets the 3 rates sorted (bytes/s). Returns the buffer size.
static size_t l2_calib(std::vector<double> &out) {
  cudaDeviceProp p;
  CHK(cudaGetDeviceProperties(&p, 0));
  const size_t bytes = (size_t(p.l2CacheSize) / 2) & ~size_t(4095);
  const int passes = 400;
  uint8_t *buf = dalloc<uint8_t>(bytes);
  unsigned *sink = dalloc<unsigned>(1);
  CHK(cudaMemset(buf, 1, bytes));
  for (int rep = 0; rep < 3; ++rep) {
    const double us = time_us([&](int) { CHK(launch_l2_read(buf, bytes, passes, sink, 0)); }, 10, 2);
    out.push_back(double(bytes) * passes / (us * 1e-6));
  }
  std::sort(out.begin(), out.end());
  cudaFree(buf); cudaFree(sink);
  return bytes;
}

static void run_calib(bool print_json) {
  cudaDeviceProp p;
  CHK(cudaGetDeviceProperties(&p, 0));
  // copy bandwidth: 2 GiB device-to-device, bytes read + written
  const size_t n = (size_t)2 << 30;
  void *a = dalloc<uint8_t>(n), *b = dalloc<uint8_t>(n);
  CHK(cudaMemset(a, 1, n));
  std::vector<double> bws;
  for (int rep = 0; rep < 3; ++rep) {
    const double us = time_us([&](int) { CHK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0)); }, 10, 2);
    bws.push_back(2.0 * n / (us * 1e-6));
  }
  std::sort(bws.begin(), bws.end());
  cudaFree(a); cudaFree(b);
  g_copy_bw = bws[1];
  std::vector<double> l2s;
  const size_t l2_buf = l2_calib(l2s);
  // bf16 tensor-core rate: 8192^3 through cuBLASLt when present, else our mma kernel (random data)
  const int64_t N = 8192;
  std::vector<uint16_t> h(N * N);
  for (auto &v : h) v = f2bf(rndn());
  __nv_bfloat16 *da = (__nv_bfloat16 *)dalloc<uint16_t>(N * N), *dw = (__nv_bfloat16 *)dalloc<uint16_t>(N * N);
  h2d((uint16_t *)da, h);
  for (auto &v : h) v = f2bf(rndn());
  h2d((uint16_t *)dw, h);
  __nv_bfloat16 *dc = (__nv_bfloat16 *)dalloc<uint16_t>(N * N);
  GemmArgs g;
  g.out_kind = GEMM_OUT_BF16; g.c = dc; g.ldc = N; g.a = da; g.lda = N; g.w = dw; g.m = N; g.n = N; g.k = N;
  const char *variant = launch_gemm(g, 0, 0);
  std::vector<double> rates;
  for (int rep = 0; rep < 3; ++rep) {
    const double us = time_us([&](int) { launch_gemm(g, 0, 0); }, 10, 3);
    rates.push_back(2.0 * N * N * N / (us * 1e-6));
  }
  std::sort(rates.begin(), rates.end());
  cudaFree(da); cudaFree(dw); cudaFree(dc);
  g_bf16_rate = rates[1];
  int clk = 0, mclk = 0, drv = 0, rt = 0;
  cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, 0);
  cudaDeviceGetAttribute(&mclk, cudaDevAttrMemoryClockRate, 0);
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  if (print_json) {
    printf("CALIB {\"device\":\"%s\",\"sms\":%d,\"cc\":\"%d.%d\",\"clock_mhz\":%.0f,\"mem_clock_mhz\":%.0f,"
           "\"memory_bytes\":%.0f,\"driver\":%d,\"runtime\":%d,"
           "\"copy_bw_bytes_per_s\":{\"samples\":[%.6e,%.6e,%.6e],\"median\":%.6e},"
           "\"l2_bw_bytes_per_s\":{\"samples\":[%.6e,%.6e,%.6e],\"median\":%.6e,\"buffer_bytes\":%zu,\"l2_bytes\":%d},"
           "\"bf16_flops_per_s\":{\"samples\":[%.6e,%.6e,%.6e],\"median\":%.6e,\"kernel\":\"%s\",\"shape\":\"8192x8192x8192\"},"
           "\"gemm_library\":\"%s\"}\n",
           p.name, p.multiProcessorCount, p.major, p.minor, clk / 1000.0, mclk / 1000.0, (double)p.totalGlobalMem, drv, rt,
           bws[0], bws[1], bws[2], bws[1], l2s[0], l2s[1], l2s[2], l2s[1], l2_buf, p.l2CacheSize, rates[0], rates[1], rates[2], rates[1], variant, cublaslt_status());
  }
  char s1[64], s2[64];
  snprintf(s1, sizeof s1, "2 GiB D2D (read+write)");
  snprintf(s2, sizeof s2, "8192^3 bf16 [%s]", variant);
  report("ceiling: copy bandwidth", s1, false, 0, 0, false, 0, g_copy_bw / 1e9, "GB/s", 0);
  char s3[64];
  snprintf(s3, sizeof s3, "%.0f MiB re-read (L2 %d MiB)", l2_buf / 1048576.0, p.l2CacheSize >> 20);
  report("ceiling: L2 read bandwidth", s3, false, 0, 0, false, 0, l2s[1] / 1e9, "GB/s", 0);
  report("ceiling: bf16 tensor-core", s2, false, 0, 0, false, 0, g_bf16_rate / 1e12, "TFLOP/s", 0);
}

int main(int argc, char **argv) {
  std::string what = "all", json;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") g_quick = true;
    else if (a == "--json" && i + 1 < argc) json = argv[++i];
    else what = a;
  }
  g_rng = (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count() | 1;
  if (const char *s = getenv("QW_LAB_SEED")) g_rng = strtoull(s, nullptr, 10) | 1;
  const uint64_t seed = g_rng;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    printf("qwlab: no CUDA device; nothing to run (SKIP)\n");
    return 0;
  }
  cudaDeviceProp p;
  CHK(cudaGetDeviceProperties(&p, 0));
  printf("qwlab on %s (%d SMs, cc %d.%d), seed %llu, gemm library: %s\n", p.name, p.multiProcessorCount, p.major, p.minor,
         (unsigned long long)seed, cublaslt_status());
  try {
    if (what == "calib") { run_calib(true); return 0; }
    if (what == "sanitize") run_sanitize();
    // decode first (chain right after the kernels it is made of), prefill/GEMM last; seconds per section
    const auto t_start = std::chrono::steady_clock::now();
    auto t_prev = t_start;
    auto section = [&](const char *name, bool on, const std::function<void()> &f) {
      if (!on) return;
      f();
      const auto t = std::chrono::steady_clock::now();
      printf("qwlab: section %s %.1f s (total %.1f s)\n", name, std::chrono::duration<double>(t - t_prev).count(),
             std::chrono::duration<double>(t - t_start).count());
      fflush(stdout);
      t_prev = t;
    };
    section("calib", what == "all", [] { run_calib(true); });
    section("misc", what == "all" || what == "misc", [] { run_misc(); });
    section("gemv", what == "all" || what == "gemv", run_gemv);
    section("attn", what == "all" || what == "attn", run_attn);
    section("chain", what == "all" || what == "chain", run_chain);
    section("sampling", what == "all" || what == "misc", run_sampling);
    section("prefill", what == "all" || what == "prefill", run_prefill);
    section("gemm", what == "all" || what == "gemm", run_gemm);
  } catch (const std::exception &e) {
    printf("qwlab: FATAL %s\n", e.what());
    ++g_fail;
  }
  printf("\n| case | shape | check | rel err | time (us) | rate | %% of ceiling |\n|---|---|---|---|---|---|---|\n");
  for (const Row &r : g_rows)
    printf("| %s | %s | %s | %.1e | %.2f | %.1f %s | %.1f |\n", r.name.c_str(), r.shape.c_str(), r.check.c_str(), r.err, r.us,
           r.rate, r.unit.c_str(), r.pct);
  if (!json.empty()) {
    FILE *f = fopen(json.c_str(), "w");
    if (f) {
      fprintf(f, "{\"device\":\"%s\",\"seed\":%llu,\"copy_bw\":%.6e,\"bf16_rate\":%.6e,\"rows\":[", p.name,
              (unsigned long long)seed, g_copy_bw, g_bf16_rate);
      for (size_t i = 0; i < g_rows.size(); ++i) {
        const Row &r = g_rows[i];
        fprintf(f, "%s{\"case\":\"%s\",\"shape\":\"%s\",\"check\":\"%s\",\"err\":%.3e,\"us\":%.3f,\"rate\":%.3f,\"unit\":\"%s\",\"pct\":%.2f}",
                i ? "," : "", r.name.c_str(), r.shape.c_str(), r.check.c_str(), r.err, r.us, r.rate, r.unit.c_str(), r.pct);
      }
      fprintf(f, "]}\n");
      fclose(f);
    }
  }
  printf("\nqwlab: %d failure(s)\n", g_fail);
  return g_fail ? 1 : 0;
}
