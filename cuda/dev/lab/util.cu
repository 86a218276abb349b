#include <algorithm>
// util.cu — the lab's shared state and helpers (lab.cuh).
#include <stdexcept>

#include "gemv.cuh"
#include "lab.cuh"

double g_copy_bw = 4.16e12;
double g_bf16_rate = 768e12;
bool g_quick = false;
bool g_sweep = false;  // qwlab marlin --sweep
int g_fail = 0;
std::vector<Row> g_rows;
uint64_t g_rng = 0;

double time_us(const std::function<void(int)> &f, int iters, int warm, double *lo, double *hi) {
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
  if (lo) *lo = ts.front();
  if (hi) *hi = ts.back();
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ts[ts.size() / 2];
}

double rel_err(const std::vector<double> &out, const std::vector<double> &ref, bool *nan_seen) {
  double num = 0, den = 0;
  *nan_seen = false;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) { *nan_seen = true; continue; }
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

void report(const std::string &name, const std::string &shape, bool checked, double err, double tol, bool nan_seen,
                   double us, double rate, const std::string &unit, double ceiling) {
  std::string check = !checked ? "-" : (nan_seen ? "FAIL(nan/unwritten)" : (err <= tol ? "PASS" : "FAIL"));
  if (check.rfind("FAIL", 0) == 0) ++g_fail;
  const double pct = ceiling > 0 && rate > 0 ? 100.0 * rate / ceiling : 0;
  g_rows.push_back({name, shape, check, err, us, rate, unit, pct});
  printf("%-34s %-28s %-8s err %.2e (tol %.0e)  %9.2f us  %9.1f %s  %5.1f%%\n", name.c_str(), shape.c_str(), check.c_str(),
         err, tol, us, rate, unit.c_str(), pct);
  fflush(stdout);
}

HostW make_w(int type, int64_t rows, int64_t cols, int group) {
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
std::vector<float> gemv_ref_input(int pro, const std::vector<uint16_t> &act, const std::vector<float> &x,
                                  const std::vector<float> &nw, int batch, int64_t cols) {
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
  return ain;
}
// The interval a device-computed fp32 rstd of the row xb [cols] lies in: a sum of squares in fp32 with at most n
// roundings on any path (per-thread fmaf chains, a 5-level warp tree, the warps' sums in order; squares are >= 0, so
// the relative error is <= gamma_n ~ n u), "/ K" and "+ eps" (2 roundings), then rsqrtf (<= 2 ulp <= 4 u, CUDA
// Programming Guide): |rstd - r| <= ((n + 2) / 2 + 4) u r, u = 2^-24, r the exact 1 / sqrt(mean + eps) (fp64 here).
RstdRange device_rstd_range(const float *xb, int64_t cols, double n) {
  const double rel = ((n + 2) / 2 + 4) * std::ldexp(1.0, -24);
  double ss = 0;
  for (int64_t k = 0; k < cols; ++k) ss += (double)xb[k] * xb[k];
  const double r = 1.0 / std::sqrt(ss / (double)cols + (double)1e-6f);
  return {std::nextafter((float)(r * (1 - rel)), 0.f), std::nextafter((float)(r * (1 + rel)), INFINITY)};
}

// The norm prologue's inputs the device can produce for one batch row xb [cols]. Its fp32 rstd (gemv_parts.cuh
// norm_rstd: per-thread fmaf chains of <= ceil(K / 256) + 3 squares with the float4 loads, the warp tree, the warps'
// sums) is within device_rstd_range with n = ceil(K / 256) + 16 (generous). One rstd serves the whole row, and each
// element bf16(bf16(x s) w) is a monotone step function of
// s with at most one step inside so narrow an interval; so the inputs the device can have used are the interval's low
// end with the first j stepping elements (in order of where they step) switched, j = 0..|A|. A host rstd a few ulp
// from the device's flips ~1 in 3e4 roundings, and one flip moves an fp32 output by ~1e-4 relative: the check against
// a single host rounding failed spuriously (the marlin qkv M16 case of the first H100 run; estimated ~2 % of the simple
// GEMV's batch-1 norm cases). More than `cap` stepping elements: only the two ends.
std::vector<std::vector<float>> norm_input_candidates(const float *xb, const std::vector<float> &nw, int64_t cols,
                                                      size_t cap) {
  const auto [lo, hi] = device_rstd_range(xb, cols, (double)((cols + 255) / 256) + 16);
  auto val = [&](int64_t k, float sc) { return bfr(bfr(xb[k] * sc) * nw[k]); };
  std::vector<float> low(cols);
  for (int64_t k = 0; k < cols; ++k) low[k] = val(k, lo);
  std::vector<std::pair<float, int64_t>> steps;  // (first s at which element k takes its high-end value, k)
  for (int64_t k = 0; k < cols; ++k) {
    if (val(k, hi) == low[k]) continue;
    float a = lo, b = hi;  // val(k, a) == low[k] != val(k, b)
    for (int it = 0; it < 64; ++it) {
      const float m = a + (b - a) / 2;
      if (m <= a || m >= b) break;
      (val(k, m) == low[k] ? a : b) = m;
    }
    steps.push_back({b, k});
  }
  std::sort(steps.begin(), steps.end());
  std::vector<std::vector<float>> out{low};
  if (steps.size() > cap) {
    std::vector<float> high(cols);
    for (int64_t k = 0; k < cols; ++k) high[k] = val(k, hi);
    out.push_back(std::move(high));
    return out;
  }
  for (const auto &st : steps) {
    out.push_back(out.back());
    out.back()[st.second] = val(st.second, hi);
  }
  return out;
}
void gemv_ref_compare(const HostW &hw, const std::vector<float> &ain, int batch, int epi, const std::vector<float> &bias,
                      const std::vector<float> &base, const std::vector<int64_t> &rows_chk, const std::vector<double> &got,
                      int64_t out_cols, std::vector<double> &outv, std::vector<double> &refv) {
  // bias / base empty = none, as a null a.bias on the device (qwlab tile passes {}: indexing the empty vector
  // was a null read, the host SIGSEGV of its first case on the H100, 2026-12-05); a short one is the caller's bug.
  const int64_t cols = hw.cols;
  const bool has_bias = (epi == GEMV_EPI_BF16 || epi == GEMV_EPI_F32) && !bias.empty();
  auto need = [](bool ok, const char *what) {
    if (!ok) throw std::runtime_error(std::string("gemv_ref_compare: ") + what);
  };
  need(!has_bias || (int64_t)bias.size() >= hw.rows, "bias has fewer entries than the weight has rows");
  need(epi != GEMV_EPI_ADD_F32 || (int64_t)base.size() >= batch * out_cols, "EPI_ADD_F32 needs base [batch][out_cols]");
  need((int64_t)ain.size() >= batch * cols, "ain has fewer than batch x cols entries");
  need((int64_t)got.size() >= batch * out_cols, "got has fewer than batch x out_cols entries");
  for (int64_t r : rows_chk) need(r >= 0 && r < hw.rows, "a checked row is outside the weight");
  std::vector<double> acc(hw.rows, 0.0);
  for (int b = 0; b < batch; ++b) {
#pragma omp parallel for schedule(dynamic, 64)
    for (size_t i = 0; i < rows_chk.size(); ++i) {
      double s = 0;
      for (int64_t k = 0; k < cols; ++k) s += (double)hw.at(rows_chk[i], k) * ain[b * cols + k];
      acc[rows_chk[i]] = s;
    }
    for (int64_t r : rows_chk) {
      if (epi == GEMV_EPI_SWIGLU) {
        if (r % 2 || std::find(rows_chk.begin(), rows_chk.end(), r + 1) == rows_chk.end()) continue;
        const float g = bfr((float)acc[r]), u = bfr((float)acc[r + 1]);
        refv.push_back(bfr(g / (1.f + expf(-g))) * u);
        outv.push_back(got[b * out_cols + r / 2]);
      } else {
        double ref = acc[r];
        if (has_bias) ref += bias[r];
        if (epi == GEMV_EPI_ADD_F32) ref += base[b * out_cols + r];
        refv.push_back(ref);
        outv.push_back(got[b * out_cols + r]);
      }
    }
  }
}
DevW upload_w(const HostW &h) {
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
void free_w(DevW &w) { cudaFree(w.d); if (w.s) cudaFree(w.s); if (w.o) cudaFree(w.o); }

GemvInputs::GemvInputs(int tokens, int64_t rows, int64_t cols_, int64_t out_cols)
    : act(tokens * cols_), x(tokens * cols_), nw(cols_), bias(rows), base(tokens * out_cols), cols(cols_) {
  for (auto &v : act) v = f2bf(rndn());
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : nw) v = 0.5f + rndu();
  for (auto &v : bias) v = rndn() * 0.1f;
  for (auto &v : base) v = rndn();
  dact = (__nv_bfloat16 *)dalloc<uint16_t>(act.size());
  h2d((uint16_t *)dact, act);
  dx = dalloc<float>(x.size()); dnw = dalloc<float>(cols); db = dalloc<float>(rows);
  h2d(dx, x); h2d(dnw, nw); h2d(db, bias);
}
GemvInputs::~GemvInputs() { cudaFree(dact); cudaFree(dx); cudaFree(dnw); cudaFree(db); }
void GemvInputs::into(GemvArgs &a) const {
  a.act = dact; a.act_ld = cols; a.x = dx; a.x_ld = cols; a.norm_w = dnw; a.eps = 1e-6f;
}
const char *tname(int t) {
  static const char *n[] = {"f32", "f16", "bf16", "w8", "w4"};
  return n[t];
}

