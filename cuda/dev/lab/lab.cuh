// lab.cuh — what the kernel lab's files share (cuda/dev/lab.cu is qwlab's main, cuda/dev/lab/*.cu one file per
// kernel family, as llm.c's dev/cuda): random inputs, bf16 helpers, device buffers, timing, the result table, host
// weights in every native type, and the cases and sections each family file defines.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.cuh"

using namespace qwc;

#define CHK(x) cuda_check((x), #x, __FILE__, __LINE__)
extern double g_copy_bw;    // bytes/s, replaced by the measured value in `calib`/`all`
extern double g_bf16_rate;  // FLOP/s
extern bool g_quick;
extern bool g_sweep;  // --sweep: the knob grid of a section that has one (marlin)
extern int g_fail;

struct Row {
  std::string name, shape, check;
  double err, us, rate;
  std::string unit;
  double pct;
};
extern std::vector<Row> g_rows;

extern uint64_t g_rng;
inline uint64_t rnd64() {
  g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
  return g_rng;
}
inline float rndu() { return (float)((rnd64() >> 40) * (1.0 / 16777216.0)); }
inline float rndn() {
  float u1 = std::max(rndu(), 1e-7f), u2 = rndu();
  return sqrtf(-2.f * logf(u1)) * cosf(6.2831853f * u2);
}
inline uint16_t f2bf(float f) {
  __nv_bfloat16 b = __float2bfloat16(f);
  uint16_t u;
  memcpy(&u, &b, 2);
  return u;
}
inline float bf2f(uint16_t u) {
  uint32_t x = (uint32_t)u << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}
inline float bfr(float f) { return bf2f(f2bf(f)); }

template <typename T>
T *dalloc(size_t n) {
  void *p;
  CHK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return (T *)p;
}
template <typename T>
void h2d(T *d, const std::vector<T> &h) { CHK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
template <typename T>
std::vector<T> d2h(const T *d, size_t n) {
  std::vector<T> h(n);
  CHK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}
// NaN for f32/bf16. cudaMemset of device memory may return before it has run, and the lab's kernels launch with
// programmatic dependent launch: wait for it, so no case's output can be overwritten by its own poison (the rmsnorm
// case failed "nan/unwritten" once on an H100, 2026-12-05, after passing on the H200 in every earlier run).
inline void poison(void *d, size_t bytes) {
  CHK(cudaMemset(d, 0xff, bytes));
  CHK(cudaDeviceSynchronize());
}

// median time in microseconds of `iters` launches of f(i) after `warm` warm-ups; lo / hi (when given) get the fastest
// and slowest of them (the spread a reported figure carries)
double time_us(const std::function<void(int)> &f, int iters = 50, int warm = 5, double *lo = nullptr, double *hi = nullptr);
double rel_err(const std::vector<double> &out, const std::vector<double> &ref, bool *nan_seen);
// One result row (printed now, and in the table at the end); a failed check counts in g_fail.
void report(const std::string &name, const std::string &shape, bool checked, double err, double tol, bool nan_seen,
            double us, double rate, const std::string &unit, double ceiling);

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
HostW make_w(int type, int64_t rows, int64_t cols, int group = 32);
// The GEMV's input rows as the CPU reference sees them ([batch][cols]): the bf16 activations (PRO_BF16), or
// bf16(bf16(x * rstd) * norm_w) with rstd from an fp64 sum of squares, eps 1e-6 (PRO_NORM).
std::vector<float> gemv_ref_input(int pro, const std::vector<uint16_t> &act, const std::vector<float> &x,
                                  const std::vector<float> &nw, int batch, int64_t cols);
// fp64 reference of the checked rows (every batch row) through the epilogue epi (bias, residual base, SwiGLU over
// row pairs in the HF rounding order), next to the GEMV's output got [batch][out_cols]: pairs appended to outv/refv.
// An empty bias is no bias (a null a.bias); a short bias / base / got throws std::runtime_error.
// The interval a device-computed fp32 rstd of a row lies in, for a sum of squares with at most n roundings (util.cu).
struct RstdRange { float lo, hi; };
RstdRange device_rstd_range(const float *xb, int64_t cols, double n);
// The inputs the norm prologue can produce for one batch row, within its rstd's rounding bound (util.cu).
std::vector<std::vector<float>> norm_input_candidates(const float *xb, const std::vector<float> &nw, int64_t cols,
                                                      size_t cap = 64);
void gemv_ref_compare(const HostW &hw, const std::vector<float> &ain, int batch, int epi, const std::vector<float> &bias,
                      const std::vector<float> &base, const std::vector<int64_t> &rows_chk, const std::vector<double> &got,
                      int64_t out_cols, std::vector<double> &outv, std::vector<double> &refv);
struct DevW {
  WMat m;
  void *d = nullptr; float *s = nullptr, *o = nullptr;
};
DevW upload_w(const HostW &h);
void free_w(DevW &w);
namespace qwc { struct GemvArgs; struct I8Ws; }  // gemv.cuh (the family files that fill one include it)
// A GEMV case's random inputs, drawn in this order: bf16 activations and fp32 x [tokens][cols], norm weights [cols]
// (0.5 .. 1.5), bias [rows], residual base [tokens][out_cols]; all but the base also on the device (freed with it).
// The cases of gemv.cu, marlin.cu and gemv_i8.cu share it.
struct GemvInputs {
  std::vector<uint16_t> act;
  std::vector<float> x, nw, bias, base;
  __nv_bfloat16 *dact = nullptr;
  float *dx = nullptr, *dnw = nullptr, *db = nullptr;
  GemvInputs(int tokens, int64_t rows, int64_t cols, int64_t out_cols);
  ~GemvInputs();
  GemvInputs(const GemvInputs &) = delete;
  GemvInputs &operator=(const GemvInputs &) = delete;
  // a's inputs: both prologues' (bf16 activations, fp32 x and the norm weights, eps 1e-6), row stride cols
  void into(GemvArgs &a) const;
  int64_t cols;
};
const char *tname(int t);

// ------------------------------------------------------------------------------------------------ families
// gemv.cu
void gemv_case(const char *label, int type, int64_t rows, int64_t cols, int batch, int pro, int epi, bool timed);
void qkv_rope_case(const char *label, int B, int H, int nH, int nKV, int d, bool timed);
void run_gemv();
// gemv_i8.cu: toggle actQuant = int8 on CUDA (src/opt/act_quant/gemv_i8.cu) against the CPU math and the exact GEMV
void run_gemv_i8();
qwc::I8Ws lab_i8ws();  // the int8 arm's pre-pass scratch for K <= 18944, shared by the cases (gemv_i8.cu)
void run_two_level();  // two-level group scales (two_level.cu): the same bits as the fp32 arrays, and their speed
// attention.cu
// CPU reference over a cache [slots][nKV][max_ctx][d] (bf16 values), q [rows][nH*d] bf16, causal: keys 0..n_keys-1,
// or (a tree row, speculative = eagle) the KV positions at[0..n_keys-1]; appends row q_row's nH*d outputs to out.
void attn_ref(std::vector<double> &out, const std::vector<uint16_t> &q, const std::vector<uint16_t> &kc,
              const std::vector<uint16_t> &vc, int slot, int q_row, int n_keys, int nH, int nKV, int d, int max_ctx,
              const std::vector<int> *at = nullptr);
void decode_case(int B, int nH, int nKV, int d, int len, int max_ctx, bool bcast, bool timed);
void prefill_case(int nH, int nKV, int d, int pos0, int n, bool simt, bool timed, int max_check_rows = 96,
                  int tree_fan = 0);  // tree_fan > 0: a tree verification step (opt/speculative/tree_mask.cuh)
void run_attn();
void run_prefill();
// dca.cu: DCA prefill, the tensor-core kernel against the SIMT one (called from run_prefill)
void run_dca_prefill();
// sage.cu: SageAttention prefill (src/opt/attention/sage.cuh) against the CPU arm and exact attention
void sage_case(int nH, int nKV, int d, int pos0, int n, bool fp8, bool timed, int max_blocks);
void run_sage();
// fa3.cu: the sm_90a flash prefill (src/opt/attention/fa3_prefill.cuh) against fp64 and the mma.sync kernel, timed
void run_fa3();
void run_fa3_small();  // small shapes for compute-sanitizer
// gemm.cu
void gemm_case(int backend, int64_t M, int64_t N, int64_t K, int kind, bool timed);
void run_gemm();
// misc.cu: rope + KV write, rmsnorm, embed, argmax, SwiGLU; the device sampler
void run_misc();
void run_sampling();
// fusion.cu: the ffn / norm arms (unfused == fused bitwise, each arm timed)
void run_fusion();
// chain.cu: a whole decode step from the production kernels
void run_chain();
void fill_dev(__nv_bfloat16 *p, int64_t n, float scale);  // device-side random bf16, std = scale (seeded by rnd64)
// persistent.cu: decode = persistent (src/opt/decode) vs the graph path's kernels and fp64, timed next to it
void run_persistent();
// marlin.cu: gemv = marlin (opt/gemv): pack, GEMV vs CPU, 7B shapes M = 1..16, prefill dequantization
void marlin_case(const char *label, int type, int64_t rows, int64_t cols, int group, int batch, int pro, int epi,
                 bool rand_offset, bool timed, int rb = 0);
void run_marlin();
void run_marlin_sweep();
// The elements of the norm prologue's output xn [batch][cols] (bf16 bits) outside the rounding bound of its rstd
// (marlin_norm_kernel); *flips: those that differ from gemv_ref_input's rounding (host rstd).
size_t marlin_norm_bad(const std::vector<float> &x, const std::vector<float> &nw, const std::vector<uint16_t> &xn,
                       int batch, int64_t cols, size_t *flips);
// sparse.cu: vertical-slash sparse prefill (src/opt/sparse_prefill) against fp64 masked attention
void run_sparse();
// sparse.cu too: block-sparse prefill (src/opt/sparse_prefill/block_sparse.cuh) against fp64 masked attention
void run_block_sparse();
// tile.cu: toggle tile's CUDA candidates (src/opt/tile/tile_cuda.cuh), each against fp64 and timed against fixed
void run_tile();
// host.cu: `qwlab host`, the lab's host-side logic (fp64 GEMV reference, toggle tile's CUDA table); no GPU needed
void run_host();
// counters.cu: profiling mode "counters" (src/cuda/range_profiler.cuh) against exactly known bytes
void run_counters();
