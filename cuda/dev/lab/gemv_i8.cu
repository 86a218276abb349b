// gemv_i8.cu — the lab cases of toggle actQuant = int8 on CUDA (src/opt/act_quant/gemv_i8.cu): W4 / W8 decode GEMVs
// with int8 activations against a CPU reference of the same math (the codes and scales quantized on the host as the
// kernel and the CPU arm quantize them, the integer sums exact, fp64 around them), every batch kind and awkward
// shapes, batch invariance bit for bit, the arm's error against the exact GEMV, and the 7B shapes timed against the
// exact kernel (gemv_q16) in the same run, GB/s on the packed bytes.
#include "gemv.cuh"
#include "lab.cuh"

namespace {

// Per token: codes and d per group of G (d = max|x| / 127, xq = nearbyint(x * (1 / d))), as the kernel and
// opt/act_quant/gemm_int8_avx512.cpp quantize_act_int8.
void i8_quantize(const float *x, int64_t cols, int G, std::vector<int> &q, std::vector<float> &d) {
  q.assign(cols, 0);
  d.assign(cols / G, 0.f);
  for (int64_t g = 0; g < cols / G; ++g) {
    float m = 0;
    for (int e = 0; e < G; ++e) m = std::max(m, std::fabs(x[g * G + e]));
    const float dg = m / 127.0f, id = dg > 0 ? 1.0f / dg : 0.0f;
    d[g] = dg;
    for (int e = 0; e < G; ++e) q[g * G + e] = (int)std::nearbyint(x[g * G + e] * id);
  }
}

int code_at(const HostW &w, int64_t r, int64_t c) {
  const int64_t i = r * w.cols + c;
  if (w.type == WT_W8) return (int8_t)w.data[i];
  const uint8_t b = w.data[i >> 1];
  return (i & 1) ? (b >> 4) : (b & 15);
}

// Row r of the int8 arm for one token (ain: its input row, q / d: its codes): sum over chunks of E columns of
// s d (sum q xq) + o (sum x).
double i8_row(const HostW &w, int64_t r, const float *ain, const std::vector<int> &q, const std::vector<float> &d) {
  const int E = w.type == WT_W4 ? 32 : 16;
  const int64_t gpr = w.cols / w.group;
  double y = 0;
  for (int64_t c0 = 0; c0 < w.cols; c0 += E) {
    const int64_t g = c0 / w.group;
    long long is = 0;
    double xs = 0;
    for (int e = 0; e < E; ++e) is += (long long)code_at(w, r, c0 + e) * q[c0 + e], xs += ain[c0 + e];
    y += (double)(w.scale[r * gpr + g] * d[g]) * (double)is + (double)w.offset[r * gpr + g] * xs;
  }
  return y;
}

double exact_row(const HostW &w, int64_t r, const float *ain) {
  double y = 0;
  for (int64_t c = 0; c < w.cols; ++c) y += (double)w.at(r, c) * ain[c];
  return y;
}

// The epilogue on the reference's row values (the exact kernels' rounding order): F32 (+bias), ADD_F32 (base +),
// SWIGLU (rows 2j, 2j + 1; bf16 out).
void epi_ref(int epi, const std::vector<double> &y, const std::vector<float> &bias, const float *base,
             std::vector<double> &out) {
  out.clear();
  if (epi == GEMV_EPI_SWIGLU) {
    for (size_t j = 0; j < y.size() / 2; ++j) {
      const float gb = bfr((float)y[2 * j]), ub = bfr((float)y[2 * j + 1]);
      out.push_back(bfr(bfr(gb / (1.f + expf(-gb))) * ub));
    }
  } else {
    for (size_t r = 0; r < y.size(); ++r)
      out.push_back(epi == GEMV_EPI_ADD_F32 ? (double)base[r] + y[r] : y[r] + (bias.empty() ? 0.0 : bias[r]));
  }
}

}  // namespace

// The pre pass's scratch (qwc::I8Ws) for K <= 18944, shared by every case (the session's is per session).
I8Ws lab_i8ws() {
  static I8Ws w;
  if (!w.q) {
    const int64_t kmax = 18944;
    w.q_bytes = i8ws_q_bytes(kmax);
    w.dx_floats = i8ws_dx_floats(kmax);
    w.q = dalloc<int8_t>(w.q_bytes);
    w.dx = dalloc<float>(w.dx_floats);
  }
  return w;
}

namespace {

struct I8Case {
  const char *label;
  int type;
  int64_t rows, cols;
  int group, batch, pro, epi;
};

// One case: the arm against its reference (checked rows: all of a small matrix, else the first / last 64 and every
// 7th), its error against the exact GEMV (printed), and where timed the arm and the exact kernel on the same weights.
void i8_case(const I8Case &k, bool timed) {
  HostW hw = make_w(k.type, k.rows, k.cols, k.group);
  if (k.type == WT_W8) for (auto &o : hw.offset) o = 0.f;  // q8 / Q8_0: symmetric
  DevW w = upload_w(hw);
  const int B = k.batch;
  const int64_t out_cols = k.epi == GEMV_EPI_SWIGLU ? k.rows / 2 : k.rows;
  const GemvInputs in(B, k.rows, k.cols, out_cols);
  const std::vector<uint16_t> &act = in.act;
  const std::vector<float> &x = in.x, &nw = in.nw, &bias = in.bias, &base = in.base;
  void *dout = dalloc<float>(B * out_cols);
  GemvArgs a;
  a.i8 = true;
  a.i8ws = lab_i8ws();
  a.epi = k.epi; a.out = dout; a.out_ld = out_cols; a.bias = k.epi == GEMV_EPI_F32 ? in.db : nullptr;
  a.w = w.m; a.batch = B; a.pro = k.pro;
  in.into(a);
  if (k.epi == GEMV_EPI_ADD_F32) h2d((float *)dout, base);
  else poison(dout, B * out_cols * 4);
  const char *variant = launch_gemv(a, 0);
  CHK(cudaDeviceSynchronize());
  const bool out_bf = k.epi == GEMV_EPI_SWIGLU;
  std::vector<double> got(B * out_cols);
  if (out_bf) { auto o = d2h((uint16_t *)dout, got.size()); for (size_t i = 0; i < got.size(); ++i) got[i] = bf2f(o[i]); }
  else { auto o = d2h((float *)dout, got.size()); for (size_t i = 0; i < got.size(); ++i) got[i] = o[i]; }
  // The norm prologue's rstd is the device's (one ulp from the host's at most): the reference takes, per token, the
  // candidate input (norm_input_candidates) closest to the output, as the exact GEMV's lab case does.
  std::vector<double> outv, refv, exo, exr;
  const int step = k.rows <= 20000 ? 1 : 7;
  const int64_t per = k.epi == GEMV_EPI_SWIGLU ? 2 : 1;
  const int bchk = k.rows * k.cols > 10000000 ? std::min(B, 2) : B;  // the 7B shapes: the first two tokens checked
  for (int b = 0; b < bchk; ++b) {
    std::vector<std::vector<float>> cands;
    if (k.pro == GEMV_PRO_NORM) cands = norm_input_candidates(x.data() + b * k.cols, nw, k.cols, 4);
    else cands.push_back(gemv_ref_input(k.pro, std::vector<uint16_t>(act.begin() + b * k.cols, act.begin() + (b + 1) * k.cols), x, nw, 1, k.cols));
    double best = INFINITY;
    std::vector<double> bo, br, be;
    for (const auto &ain : cands) {
      std::vector<int> q;
      std::vector<float> d;
      i8_quantize(ain.data(), k.cols, k.group, q, d);
      std::vector<double> o, rf, ex;
      for (int64_t j = 0; j < out_cols; ++j) {
        if (!(j < 64 || j >= out_cols - 64 || j % step == 0)) continue;
        std::vector<double> y, ye, e, ee;
        for (int64_t p = 0; p < per; ++p) y.push_back(i8_row(hw, j * per + p, ain.data(), q, d)), ye.push_back(exact_row(hw, j * per + p, ain.data()));
        const std::vector<float> bj = k.epi == GEMV_EPI_F32 ? std::vector<float>{bias[j]} : std::vector<float>{};
        epi_ref(k.epi, y, bj, &base[b * out_cols + j], e);
        epi_ref(k.epi, ye, bj, &base[b * out_cols + j], ee);
        o.push_back(got[b * out_cols + j]);
        rf.push_back(e[0]);
        ex.push_back(ee[0]);
      }
      double sse = 0;
      for (size_t i = 0; i < o.size(); ++i) sse += (o[i] - rf[i]) * (o[i] - rf[i]);
      if (!(sse >= best)) { best = sse; bo = o; br = rf; be = ex; }
    }
    outv.insert(outv.end(), bo.begin(), bo.end());
    refv.insert(refv.end(), br.begin(), br.end());
    exr.insert(exr.end(), be.begin(), be.end());
  }
  bool nan_seen;
  const double err = rel_err(outv, refv, &nan_seen);
  bool nan2;
  const double qerr = rel_err(outv, exr, &nan2);  // the arm's error against the exact GEMV (same rows)
  double dot = 0, n1 = 0, n2 = 0;
  for (size_t i = 0; i < outv.size(); ++i) dot += outv[i] * exr[i], n1 += outv[i] * outv[i], n2 += exr[i] * exr[i];
  const double cosv = dot / std::sqrt(std::max(n1 * n2, 1e-300));
  double us = 0, rate = 0, us_x = 0, rate_x = 0, us_b = 0, rate_b = 0, us_l = 0, rate_l = 0, us_r = 0, rate_r = 0;
  const char *variant_x = "", *variant_p = "", *variant_b = "", *variant_l = "", *variant_r = "";
  int64_t ring_differ = -1;  // outputs of the ring variant that differ from the loop variant's (bits); -1: not run
  if (timed) {
    const size_t wb = hw.bytes();
    const int ncopies = (int)std::min<size_t>(256, std::max<size_t>(1, ((512u << 20) + wb - 1) / std::max<size_t>(wb, 1)));
    std::vector<DevW> copies{w};
    for (int i = 1; i < ncopies; ++i) copies.push_back(upload_w(hw));
    const double bytes = (double)wb + (double)B * k.cols * (k.pro == GEMV_PRO_NORM ? 4 : 2) + (double)B * out_cols * (out_bf ? 2 : 4);
    // arms: 0 exact, 1 int8 with the pre pass, 2 int8 quantizing in each block, 3 the rule's pre choice with the
    // loop variant (QW_GEMV_I8_LOOP), 4 the same on the ring (QW_GEMV_I8_RING: sm_90, where its plan fits)
    std::vector<uint8_t> bits[2];  // the loop and ring arms' outputs on copy 0
    for (int arm : {1, 2, 3, 4, 0}) {
      GemvArgs t = a;
      t.i8 = arm != 0;
      gemv_i8_force_pre(arm == 1 ? 1 : arm >= 3 ? -1 : 0);
      gemv_i8_force_loop(arm >= 3 ? 1 : 0);
      gemv_i8_force_ring(arm == 4 ? 1 : 0);
      if (k.epi == GEMV_EPI_ADD_F32) t.epi = GEMV_EPI_F32;
      const char *v = launch_gemv(t, 0);
      if (arm >= 3) {
        CHK(cudaDeviceSynchronize());
        bits[arm - 3] = d2h((uint8_t *)dout, (size_t)B * out_cols * (out_bf ? 2 : 4));
      }
      (arm == 0 ? variant_x : arm == 1 ? variant_p : arm == 2 ? variant_b : arm == 3 ? variant_l : variant_r) = v;
      const double u = time_us([&](int i) { GemvArgs ti = t; ti.w = copies[i % ncopies].m; launch_gemv(ti, 0); }, g_quick ? 20 : 100, 5);
      (arm == 0 ? us_x : arm == 1 ? us : arm == 2 ? us_b : arm == 3 ? us_l : us_r) = u;
      (arm == 0 ? rate_x : arm == 1 ? rate : arm == 2 ? rate_b : arm == 3 ? rate_l : rate_r) = bytes / (u * 1e-6) / 1e9;
    }
    gemv_i8_force_pre(-1);
    gemv_i8_force_loop(-1);
    gemv_i8_force_ring(-1);
    if (std::strstr(variant_r, "_ring")) {
      ring_differ = 0;
      for (size_t i = 0; i < bits[0].size(); i += out_bf ? 2 : 4)
        ring_differ += std::memcmp(bits[0].data() + i, bits[1].data() + i, out_bf ? 2 : 4) != 0;
    }
    for (int i = 1; i < ncopies; ++i) free_w(copies[i]);
  }
  char shape[96], name[256];
  snprintf(shape, sizeof shape, "%s g%d %lldx%lld b%d", tname(k.type), k.group, (long long)k.rows, (long long)k.cols, B);
  snprintf(name, sizeof name, "gemv i8 %s [%s] (vs exact: rel %.2e, cos %.6f)", k.label, variant, qerr, cosv);
  // the checked launch ran the rule's arm (pre pass or not); timed rows: the pre pass, then in-block quantization
  report(name, shape, true, err, k.epi == GEMV_EPI_SWIGLU ? 1e-2 : 1e-5, nan_seen, 0, 0, "GB/s", g_copy_bw / 1e9);
  if (timed) {
    snprintf(name, sizeof name, "gemv i8 %s: pre pass [%s]", k.label, variant_p);
    report(name, shape, false, 0, 0, false, us, rate, "GB/s", g_copy_bw / 1e9);
    snprintf(name, sizeof name, "gemv i8 %s: in-block [%s]", k.label, variant_b);
    report(name, shape, false, 0, 0, false, us_b, rate_b, "GB/s", g_copy_bw / 1e9);
    snprintf(name, sizeof name, "gemv i8 %s: loop [%s]", k.label, variant_l);
    report(name, shape, false, 0, 0, false, us_l, rate_l, "GB/s", g_copy_bw / 1e9);
    if (ring_differ >= 0) {  // the ring ran this shape: its bits against the register path's (arm 3), then its time
      snprintf(name, sizeof name, "gemv i8 %s: ring = register path, bits [%s]: %lld differing", k.label, variant_r, (long long)ring_differ);
      report(name, shape, true, (double)ring_differ, 0, false, 0, 0, "GB/s", g_copy_bw / 1e9);
      snprintf(name, sizeof name, "gemv i8 %s: ring [%s]", k.label, variant_r);
      report(name, shape, false, 0, 0, false, us_r, rate_r, "GB/s", g_copy_bw / 1e9);
    }
    snprintf(name, sizeof name, "gemv i8 %s: exact arm [%s]", k.label, variant_x);
    report(name, shape, false, 0, 0, false, us_x, rate_x, "GB/s", g_copy_bw / 1e9);
  }
  free_w(w);
  cudaFree(dout);
}

// Row 0 of a batch-B launch must equal the batch-1 result bit for bit (slot 0 the same input, others random), with
// and without the pre pass and the loop variant (the same codes and sums either way).
void i8_invariance(const char *label, int type, int64_t rows, int64_t cols, int group, int pro) {
  HostW hw = make_w(type, rows, cols, group);
  DevW w = upload_w(hw);
  std::vector<uint16_t> act(16 * cols);
  std::vector<float> x(16 * cols), nw(cols);
  for (auto &v : act) v = f2bf(rndn());
  for (auto &v : x) v = rndn() * 3.f;
  for (auto &v : nw) v = 0.5f + rndu();
  __nv_bfloat16 *dact = (__nv_bfloat16 *)dalloc<uint16_t>(act.size());
  float *dx = dalloc<float>(x.size()), *dnw = dalloc<float>(cols), *dout = dalloc<float>(16 * rows);
  h2d((uint16_t *)dact, act); h2d(dx, x); h2d(dnw, nw);
  GemvArgs a;
  a.i8 = true;
  a.i8ws = lab_i8ws();
  a.epi = GEMV_EPI_F32; a.out = dout; a.out_ld = rows; a.w = w.m; a.pro = pro; a.act = dact; a.act_ld = cols;
  a.x = dx; a.x_ld = cols; a.norm_w = dnw; a.eps = 1e-6f;
  std::vector<float> ref;
  int64_t diff = 0;
  std::string variants;
  for (int B : {1, 2, 3, 4, 8, 16})
    for (int mode : {0, 1, 2, 3}) {  // pre pass off / on, x the loop variant off / on
      const int pre = mode & 1;
      a.batch = B;
      gemv_i8_force_pre(pre);
      gemv_i8_force_loop(mode >> 1);
      poison(dout, 16 * rows * 4);
      const char *v = launch_gemv(a, 0);
      CHK(cudaDeviceSynchronize());
      const std::vector<float> got = d2h(dout, rows);
      if (B == 1 && mode == 0) ref = got;
      else for (int64_t i = 0; i < rows; ++i) diff += memcmp(&got[i], &ref[i], 4) != 0;
      if (B == 1 || B == 16) variants += std::string(variants.empty() ? "" : "/") + v;
    }
  gemv_i8_force_pre(-1);
  gemv_i8_force_loop(-1);
  char shape[96];
  snprintf(shape, sizeof shape, "%s g%d %lldx%lld b1..16", tname(type), group, (long long)rows, (long long)cols);
  report(std::string("gemv i8 batch-invariance ") + label + " [" + variants + "]", shape, true, (double)diff, 0, false, 0,
         0, "GB/s", g_copy_bw / 1e9);
  free_w(w);
  cudaFree(dact); cudaFree(dx); cudaFree(dnw); cudaFree(dout);
}

// The 7B shapes timed (q4: W4 g128, as weights = q4; Q4_K: W4 g32; q8 / Q8_0: W8 g32), every one or those whose
// key ("w4 7B gate_up norm+swiglu g128 b1") has every word of `only` ("gate_up g128 b1"); returns how many ran.
struct S7 { const char *label; int64_t rows, cols; int pro, epi; };
constexpr S7 s7[] = {{"7B gate_up norm+swiglu", 37888, 3584, GEMV_PRO_NORM, GEMV_EPI_SWIGLU},
                     {"7B down +res", 3584, 18944, GEMV_PRO_BF16, GEMV_EPI_ADD_F32},
                     {"7B qkv norm", 4608, 3584, GEMV_PRO_NORM, GEMV_EPI_F32},
                     {"7B o_proj +res", 3584, 3584, GEMV_PRO_BF16, GEMV_EPI_ADD_F32}};
// Every space-separated word of `words` is a whole word of `key`.
bool has_words(const std::string &key, const std::string &words) {
  const auto split = [](const std::string &t) {
    std::vector<std::string> v;
    for (size_t i = 0, j; i < t.size(); i = j + 1) {
      j = t.find(' ', i);
      if (j == std::string::npos) j = t.size();
      if (j > i) v.push_back(t.substr(i, j - i));
    }
    return v;
  };
  const std::vector<std::string> kw = split(key);
  for (const std::string &w : split(words))
    if (std::find(kw.begin(), kw.end(), w) == kw.end()) return false;
  return true;
}

int for_7b_cases(const char *only) {
  struct T { int type, group, batch; };
  int n = 0;
  for (const T t : {T{WT_W4, 128, 1}, T{WT_W4, 128, 4}, T{WT_W4, 128, 8}, T{WT_W4, 128, 16}, T{WT_W4, 32, 1},
                    T{WT_W4, 32, 16}, T{WT_W8, 32, 1}, T{WT_W8, 32, 16}}) {
    if (!only && g_quick && (t.batch == 4 || t.batch == 8 || t.group == 32)) continue;
    for (const S7 &s : s7) {
      char label[96], key[128];
      snprintf(label, sizeof label, "%s %s", t.type == WT_W4 ? "w4" : "w8", s.label);
      snprintf(key, sizeof key, "%s g%d b%d", label, t.group, t.batch);
      if (only && !has_words(key, only)) continue;
      i8_case({label, t.type, s.rows, s.cols, t.group, t.batch, s.pro, s.epi}, true);
      ++n;
    }
  }
  return n;
}

void run_gemv_i8_only(const char *only) {
  if (!for_7b_cases(only)) {
    fprintf(stderr, "QW_LAB_I8_ONLY=%s matches no timed case: give words of a key, e.g. \"w4 gate_up g128 b1\" (keys: \"w4 7B gate_up norm+swiglu g128 b1\")\n", only);
    exit(2);
  }
}

}  // namespace

// QW_LAB_I8_ONLY="WORDS": only the timed 7B cases whose key has every word (keys: "w4 7B gate_up norm+swiglu g128 b1"),
// for ncu (scripts/gpu-owed.sh ncu-i8: one kernel's counters without the correctness cases' launches before it).
void run_gemv_i8() {
  if (const char *only = getenv("QW_LAB_I8_ONLY"); only && *only) return run_gemv_i8_only(only);
  // correctness: every batch kind, both prologues, the epilogues, groups 16 .. 256, K split (few rows), two K tiles;
  // each case with the pre pass off and on
  for (int mode : {0, 1, 2, 3}) {  // pre pass off / on, x the loop variant off / on
    const int pre = mode & 1, loop = mode >> 1;
    gemv_i8_force_pre(pre);
    gemv_i8_force_loop(loop);
    const std::string tag = std::string(pre ? " pre" : "") + (loop ? " loop" : "");
    const auto run = [&](I8Case k) {
      const std::string l = k.label + tag;
      k.label = l.c_str();
      i8_case(k, false);
    };
    for (int b : {1, 2, 3, 8, 16}) {
      run({"w4 g128 norm", WT_W4, 520, 1024, 128, b, GEMV_PRO_NORM, GEMV_EPI_F32});
      run({"w8 g32 bf16+bias", WT_W8, 300, 896, 32, b, GEMV_PRO_BF16, GEMV_EPI_F32});
    }
    run({"w4 g32 swiglu", WT_W4, 2 * 333, 2080, 32, 5, GEMV_PRO_NORM, GEMV_EPI_SWIGLU});
    run({"w8 g16 +res", WT_W8, 46, 2048, 16, 7, GEMV_PRO_BF16, GEMV_EPI_ADD_F32});
    run({"w4 g256 (2 K tiles at b16)", WT_W4, 96, 18944 / 2, 256, 16, GEMV_PRO_BF16, GEMV_EPI_F32});
    run({"w4 g64 ks (few rows)", WT_W4, 40, 4864, 64, 1, GEMV_PRO_NORM, GEMV_EPI_F32});
    run({"w8 g128 down 2 K tiles", WT_W8, 200, 18944, 128, 16, GEMV_PRO_BF16, GEMV_EPI_ADD_F32});
    run({"w4 g32 norm odd batch 13", WT_W4, 264, 2080, 32, 13, GEMV_PRO_NORM, GEMV_EPI_F32});
    // more row tiles than resident blocks (where the loop variant runs): no K split, then K split
    run({"w4 g32 swiglu many rows", WT_W4, 2 * 12000, 1024, 32, 1, GEMV_PRO_NORM, GEMV_EPI_SWIGLU});
    run({"w4 g128 many rows b3", WT_W4, 24000, 2048, 128, 3, GEMV_PRO_BF16, GEMV_EPI_F32});
    run({"w8 g16 ks many tiles +res", WT_W8, 3584, 4096, 16, 2, GEMV_PRO_BF16, GEMV_EPI_ADD_F32});
  }
  // the ring variant (QW_GEMV_I8_RING, sm_90) where it runs: more row tiles than SMs, whole 16-byte units of codes and
  // scales a row, the whole K's activations in the opt-in shared memory (the variant name says whether it ran: _ring)
  gemv_i8_force_loop(1);
  gemv_i8_force_ring(1);
  for (int pre : {0, 1}) {
    gemv_i8_force_pre(pre);
    const std::string tag = pre ? " pre ring" : " ring";
    const auto run = [&](I8Case k) {
      const std::string l = k.label + tag;
      k.label = l.c_str();
      i8_case(k, false);
    };
    run({"w4 g32 swiglu many rows", WT_W4, 2 * 12000, 1024, 32, 1, GEMV_PRO_NORM, GEMV_EPI_SWIGLU});
    run({"w4 g128 many rows b3", WT_W4, 24000, 2048, 128, 3, GEMV_PRO_BF16, GEMV_EPI_F32});
    run({"w8 g16 ks many tiles +res", WT_W8, 3584, 4096, 16, 2, GEMV_PRO_BF16, GEMV_EPI_ADD_F32});
    run({"w4 g64 partial last tile", WT_W4, 4500, 1536, 64, 1, GEMV_PRO_NORM, GEMV_EPI_F32});
    // K chunks (a whole-row tile does not fit two stages): down's K, and W8 at batch 4 (8 chunks a row)
    run({"w4 g128 K chunks (K 18944) +res", WT_W4, 4500, 18944, 128, 1, GEMV_PRO_BF16, GEMV_EPI_ADD_F32});
    run({"w8 g32 K chunks b4 norm", WT_W8, 4608, 8192, 32, 4, GEMV_PRO_NORM, GEMV_EPI_F32});
  }
  gemv_i8_force_ring(-1);
  gemv_i8_force_pre(-1);
  gemv_i8_force_loop(-1);
  i8_invariance("w4 g128 7B o_proj", WT_W4, 3584, 3584, 128, GEMV_PRO_BF16);
  i8_invariance("w4 g32 norm (K 2080)", WT_W4, 130, 2080, 32, GEMV_PRO_NORM);
  i8_invariance("w8 g32 7B down (K 18944)", WT_W8, 3584, 18944, 32, GEMV_PRO_BF16);
  // the 7B shapes timed: the arm with and without the pre pass against the exact kernel (q4: W4 g128, as weights =
  // q4; Q4_K: W4 g32; q8 / Q8_0: W8 g32)
  for_7b_cases(nullptr);
  // QW_GEMV_I8_R4=0 (R = 2 where the K split asks for it; the default is R = 4 at batch <= 4): the b1 W4 g128 rows
  // again, for the A/B, then its invariance
  setenv("QW_GEMV_I8_R4", "0", 1);
  for (const S7 &s : s7) {
    char label[96];
    snprintf(label, sizeof label, "w4 %s (R2)", s.label);
    i8_case({label, WT_W4, s.rows, s.cols, 128, 1, s.pro, s.epi}, true);
  }
  i8_invariance("w4 g128 7B o_proj (R2 at every batch)", WT_W4, 3584, 3584, 128, GEMV_PRO_BF16);
  unsetenv("QW_GEMV_I8_R4");
}
