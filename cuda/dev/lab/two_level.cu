// two_level.cu — the lab cases of two-level group scales (src/opt/gemv/two_level.hpp, group_so in common.cuh): W4 /
// W8 matrices whose scales and offsets are K-quant products (a fp16-sized D and M per 256 columns, integer codes per
// group: Q4_K's W4 g32, Q6_K's W8 g16), run by the decode GEMVs once from the fp32 arrays and once from the two levels.
// Checks: the host finds the form, and every output is the same bits both ways (exact arm gemv_q16 and the int8 arm,
// b1 and b16). Timed: both ways on the 7B shapes, GB/s on the bytes each reads (packed weights + its scales). Then
// the same for symmetric W8 (q8 / Q8_0) with one offset for all groups (WMat::off_uniform: the offsets not loaded).
#include <functional>

#include "gemv.cuh"
#include "lab.cuh"
#include "two_level.hpp"

namespace {

// A K-quant-like matrix: random codes, D ~ 2^-12 .. 2^-11 per 256 columns (as fp16 values), scale codes 0..63 (W4,
// Q4_K) or -128..127 (W8, Q6_K), offsets -(M * m) with m 0..63 (W4) or -0 (W8, symmetric).
HostW kquant_w(int type, int64_t rows, int64_t cols, int group) {
  HostW w = make_w(type, rows, cols, group);
  const int64_t gpb = 256 / group, blocks = rows * cols / 256;
  for (int64_t b = 0; b < blocks; ++b) {
    const float D = __half2float(__float2half(ldexpf(1.f + rndu(), -12))), M = __half2float(__float2half(ldexpf(1.f + rndu(), -9)));
    for (int64_t j = 0; j < gpb; ++j) {
      const int64_t g = b * gpb + j;
      const int sc = type == WT_W4 ? (int)(rnd64() % 64) : (int)(rnd64() % 256) - 128;
      w.scale[g] = D * (float)sc;
      w.offset[g] = type == WT_W4 ? -(M * (float)(rnd64() % 64)) : -0.f;
    }
  }
  return w;
}

struct TlW {
  DevW w;
  uint16_t *codes = nullptr;
  float2 *dm = nullptr;
  WMat tl;  // w.m with the two levels
};

TlW upload_tl(const HostW &h, const TwoLevel &t) {
  TlW x;
  x.w = upload_w(h);
  x.codes = dalloc<uint16_t>(t.codes.size());
  h2d(x.codes, t.codes);
  x.dm = reinterpret_cast<float2 *>(dalloc<float>(t.dm.size()));
  h2d(reinterpret_cast<float *>(x.dm), t.dm);
  x.tl = x.w.m;
  x.tl.tl_codes = x.codes;
  x.tl.tl_dm = x.dm;
  x.tl.tl_shift = t.shift;
  return x;
}
void free_tl(TlW &x) { free_w(x.w); cudaFree(x.codes); cudaFree(x.dm); }

struct TlCase { const char *label; int64_t rows, cols; int pro, epi; };

// One A/B of how the decode GEMVs read the same weights: mat(i, way) is copy i of ncopies read way 0 (the fp32
// arrays) or way 1 (the form under test); bytes[way] what each reads of the weights and their scales. The outputs
// must be the same bits; where timed (ncopies > 1: a rotation that leaves nothing in L2) both ways are timed.
struct FormAB {
  const char *what;       // "two-level", "uniform offsets"
  const char *names[2];   // the two ways
  double bytes[2];
};
void compare_forms(const FormAB &f, const TlCase &k, const char *shape, int B, bool i8, int ncopies,
                   const std::function<WMat(int, int)> &mat) {
  char name[256];
  const std::string arm = i8 ? "int8 arm" : "exact arm";
  const int64_t out_cols = k.epi == GEMV_EPI_SWIGLU ? k.rows / 2 : k.rows;
  const GemvInputs in(B, k.rows, k.cols, out_cols);
  float *dout = dalloc<float>(B * out_cols), *dout2 = dalloc<float>(B * out_cols);
  GemvArgs a;
  a.i8 = i8;
  a.i8ws = lab_i8ws();
  a.epi = k.epi;
  a.out_ld = out_cols; a.batch = B; a.pro = k.pro;
  in.into(a);
  const size_t es = k.epi == GEMV_EPI_SWIGLU ? 2 : 4, ob = (size_t)B * out_cols * es;  // bf16 / fp32 outputs
  poison(dout, ob); poison(dout2, ob);
  a.w = mat(0, 0); a.out = dout;
  const char *v1 = launch_gemv(a, 0);
  a.w = mat(0, 1); a.out = dout2;
  const char *v2 = launch_gemv(a, 0);
  CHK(cudaDeviceSynchronize());
  const auto o1 = d2h(reinterpret_cast<uint8_t *>(dout), ob), o2 = d2h(reinterpret_cast<uint8_t *>(dout2), ob);
  int64_t differing = 0;
  for (size_t i = 0; i < ob; i += es) differing += memcmp(&o1[i], &o2[i], es) != 0;
  snprintf(name, sizeof name, "%s %s %s [%s / %s]: differing outputs (%s vs %s)", f.what, k.label, arm.c_str(), v1, v2,
           f.names[0], f.names[1]);
  report(name, shape, true, (double)differing, 0, false, 0, 0, "GB/s", g_copy_bw / 1e9);
  if (ncopies > 1) {
    const double act = (double)B * k.cols * (k.pro == GEMV_PRO_NORM ? 4 : 2) + (double)B * out_cols * 4;
    for (int way : {0, 1}) {
      double lo = 0, hi = 0;
      a.out = dout;
      const double us = time_us([&](int i) { GemvArgs ti = a; ti.w = mat(i % ncopies, way); launch_gemv(ti, 0); },
                                g_quick ? 20 : 100, 5, &lo, &hi);
      snprintf(name, sizeof name, "%s %s %s: %s (%.1f-%.1f us)", f.what, k.label, arm.c_str(), f.names[way], lo, hi);
      report(name, shape, false, 0, 0, false, us, (f.bytes[way] + act) / (us * 1e-6) / 1e9, "GB/s", g_copy_bw / 1e9);
    }
  }
  cudaFree(dout); cudaFree(dout2);
}

void tl_case(const TlCase &k, int type, int group, int B, bool i8, bool timed) {
  const HostW hw = kquant_w(type, k.rows, k.cols, group);
  TwoLevel t;
  char shape[96];
  snprintf(shape, sizeof shape, "%s g%d %lldx%lld b%d", tname(type), group, (long long)k.rows, (long long)k.cols, B);
  if (!make_two_level(hw.scale.data(), hw.offset.data(), k.rows, k.cols, group, &t)) {
    report("two-level " + std::string(k.label) + (i8 ? " int8 arm" : " exact arm") + ": the host found no form", shape,
           true, 1, 0, false, 0, 0, "GB/s", g_copy_bw / 1e9);
    return;
  }
  const int ncopies = timed ? 4 : 1;  // 4 x >= 100 MB: the rotation leaves nothing in the 50 MB L2
  std::vector<TlW> c;
  for (int i = 0; i < ncopies; ++i) c.push_back(upload_tl(hw, t));
  const double w = (double)hw.data.size(), groups = (double)hw.scale.size();
  compare_forms({"two-level", {"fp32 scales", "two levels"}, {w + 8 * groups, w + 2 * groups + 8.0 * k.rows * k.cols / 256}},
                k, shape, B, i8, ncopies, [&](int i, int way) { return way ? c[i].tl : c[i].w.m; });
  for (auto &x : c) free_tl(x);
}

// Symmetric W8 (q8, Q8_0: every offset -0): the decode GEMVs with off_uniform (the offsets not loaded) against the
// fp32 arrays.
void uniform_case(const TlCase &k, int B, bool i8, bool timed) {
  const HostW hw = make_w(WT_W8, k.rows, k.cols, 32);  // offsets -0
  char shape[96];
  snprintf(shape, sizeof shape, "w8 g32 %lldx%lld b%d", (long long)k.rows, (long long)k.cols, B);
  const int ncopies = timed ? 4 : 1;
  std::vector<DevW> c;
  for (int i = 0; i < ncopies; ++i) c.push_back(upload_w(hw));
  const double w = (double)hw.data.size(), groups = (double)hw.scale.size();
  compare_forms({"uniform offsets", {"offsets loaded", "offsets not loaded"}, {w + 8 * groups, w + 4 * groups}}, k, shape,
                B, i8, ncopies, [&](int i, int way) {
                  WMat m = c[i].m;
                  if (way) { m.off_uniform = 1; m.off_value = -0.f; }
                  return m;
                });
  for (auto &x : c) free_w(x);
}

}  // namespace

void run_two_level() {
  // small shapes: every batch kind, both arms, both prologues and the epilogues (bits only)
  for (int B : {1, 3, 8, 16})
    for (bool i8 : {false, true}) {
      tl_case({"w4 norm", 520, 1024, GEMV_PRO_NORM, GEMV_EPI_F32}, WT_W4, 32, B, i8, false);
      tl_case({"w8 bf16", 300, 2048, GEMV_PRO_BF16, GEMV_EPI_F32}, WT_W8, 16, B, i8, false);
      tl_case({"w4 swiglu", 2 * 264, 2048, GEMV_PRO_NORM, GEMV_EPI_SWIGLU}, WT_W4, 32, B, i8, false);
    }
  // the 7B Q4_K_M shapes (Q4_K: W4 g32; Q6_K: W8 g16 — down and v on half the layers, the lm_head), b1 and b16
  const TlCase s7[] = {{"7B gate_up", 37888, 3584, GEMV_PRO_NORM, GEMV_EPI_SWIGLU},
                       {"7B down", 3584, 18944, GEMV_PRO_BF16, GEMV_EPI_F32},
                       {"7B qkv", 4608, 3584, GEMV_PRO_NORM, GEMV_EPI_F32},
                       {"7B o_proj", 3584, 3584, GEMV_PRO_BF16, GEMV_EPI_F32}};
  for (int B : {1, 16})
    for (bool i8 : {false, true}) {
      if (g_quick && B == 16) continue;
      for (const TlCase &s : s7) tl_case(s, WT_W4, 32, B, i8, true);
      tl_case({"7B down (Q6_K)", 3584, 18944, GEMV_PRO_BF16, GEMV_EPI_F32}, WT_W8, 16, B, i8, true);
    }
  // symmetric W8 (q8 / Q8_0): bits on small shapes at every batch kind, then the 7B shapes timed at b1 / b16
  for (int B : {1, 3, 8, 16})
    for (bool i8 : {false, true}) uniform_case({"w8 norm", 520, 1024, GEMV_PRO_NORM, GEMV_EPI_F32}, B, i8, false);
  for (int B : {1, 16})
    for (bool i8 : {false, true}) {
      if (g_quick && B == 16) continue;
      for (const TlCase &s : s7) uniform_case(s, B, i8, true);
    }
}
