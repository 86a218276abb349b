// tile_tune_cuda.cu — one shape's measurement for the CUDA tuner (tile_tune_cuda.cuh). Compile-checked only.
#include "tile_tune_cuda.cuh"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "gemm.cuh"
#include "gemv.cuh"
#include "swiglu.cuh"

namespace qwc {

namespace {

// A device allocation owned by the measurement (the tuner runs outside any session buffer).
struct Mem {
  void *p = nullptr;
  explicit Mem(size_t n) { if (n) QWC_CHECK(cudaMalloc(&p, n)); }
  Mem(const Mem &) = delete;
  Mem &operator=(const Mem &) = delete;
  Mem(Mem &&o) noexcept : p(o.p) { o.p = nullptr; }
  ~Mem() { if (p) cudaFree(p); }
  template <typename T> T *as() const { return static_cast<T *>(p); }
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    QWC_CHECK(cudaEventCreate(&a));
    QWC_CHECK(cudaEventCreate(&b));
  }
  Events(const Events &) = delete;
  Events &operator=(const Events &) = delete;
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
};

// out[o] = sum_k |w[r, k] x[t, k]| in fp64, o = t * rows + r (the layout of the GEMV / GEMM outputs); a warp per output.
__global__ void abs_dot_kernel(double *out, const WMat w, const __nv_bfloat16 *x, int64_t tokens) {
  pdl_wait();
  pdl_trigger();
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
  for (int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; o < tokens * w.rows; o += warps) {
    const int64_t t = o / w.rows, r = o % w.rows;
    double acc = 0;
    for (int64_t c = lane; c < w.cols; c += 32)
      acc += fabs((double)load_weight(w, r, c) * (double)__bfloat162float(x[t * w.cols + c]));
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) out[o] = acc;
  }
}

uint16_t bf16_bits(float f) {  // round to nearest even (inputs are finite)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace

TunedShapeResult tune_cuda_shape(bool gemv, const TuneWeight &tw, const std::vector<const CudaTileCandidate *> &cands,
                                 const TuneParams &p, cudaStream_t s) {
  if (cands.empty() || cands[0]->name != "fixed") throw CudaError("tune_cuda_shape: the first candidate must be fixed");
  const int64_t rows = tw.m.rows, cols = tw.m.cols, T = gemv ? 1 : std::max<int64_t>(1, p.tokens);
  const size_t n_out = (size_t)(T * rows);

  // Inputs: activations [T, cols] bf16, fixed seed.
  std::vector<uint16_t> hx((size_t)(T * cols));
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (auto &v : hx) v = bf16_bits(uni(rng));
  Mem x(hx.size() * 2), out(n_out * 4);
  QWC_CHECK(cudaMemcpyAsync(x.p, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice, s));

  // Weights: a GEMV's rotating copies (the first is the session's own); a GEMM's bf16 matrix.
  std::vector<Mem> owned;
  std::vector<WMat> mats{tw.m};
  WMat wbf = tw.m;  // what the bound reads: the weight as the measured kernel loads it
  if (gemv) {
    const size_t bytes = tw.data_bytes + tw.scale_bytes + tw.offset_bytes;
    const size_t want = bytes ? (2 * p.l2_bytes + bytes - 1) / bytes : 1;
    const size_t copies = std::min<size_t>(256, std::max<size_t>(1, want));  // as qwlab tile
    for (size_t i = 1; i < copies; ++i) {
      WMat c = tw.m;
      auto dup = [&](const void *src, size_t n) -> const void * {
        if (!src || !n) return src;
        owned.emplace_back(n);
        QWC_CHECK(cudaMemcpyAsync(owned.back().p, src, n, cudaMemcpyDeviceToDevice, s));
        return owned.back().p;
      };
      c.data = dup(tw.m.data, tw.data_bytes);
      c.scale = static_cast<const float *>(dup(tw.m.scale, tw.scale_bytes));
      c.offset = static_cast<const float *>(dup(tw.m.offset, tw.offset_bytes));
      mats.push_back(c);
    }
  } else if (tw.m.type != WT_BF16) {
    owned.emplace_back((size_t)(rows * cols) * 2);
    launch_dequant_bf16(owned.back().as<__nv_bfloat16>(), tw.m, s);
    wbf.data = owned.back().p;
    wbf.scale = wbf.offset = nullptr;
    wbf.type = WT_BF16;
    wbf.group = 0;
    mats[0] = wbf;
  }

  const std::string key = gemv ? cuda_gemv_key(tw.m) : cuda_gemm_key(rows, cols);
  std::vector<CudaTileTable> tables(cands.size());
  for (size_t c = 0; c < cands.size(); ++c) tables[c].set({{key, cands[c]->name}});
  auto launch_one = [&](size_t c, size_t copy) {
    CudaTileScope scope(&tables[c]);
    if (gemv) {
      GemvArgs a;
      a.epi = GEMV_EPI_F32;
      a.out = out.p;
      a.out_ld = rows;
      a.w = mats[copy % mats.size()];
      a.batch = 1;
      a.pro = GEMV_PRO_BF16;
      a.act = x.as<__nv_bfloat16>();
      a.act_ld = cols;
      launch_gemv(a, s);
    } else {
      GemmArgs g;
      g.out_kind = GEMM_OUT_F32;
      g.c = out.p;
      g.ldc = rows;
      g.a = x.as<__nv_bfloat16>();
      g.lda = cols;
      g.w = static_cast<const __nv_bfloat16 *>(mats[0].data);
      g.m = T;
      g.n = rows;
      g.k = cols;
      launch_gemm(g, s);
    }
  };
  Events ev;
  auto timed = [&](size_t c, int64_t inner) {  // ns per launch
    QWC_CHECK(cudaEventRecord(ev.a, s));
    for (int64_t i = 0; i < inner; ++i) launch_one(c, (size_t)i);
    QWC_CHECK(cudaEventRecord(ev.b, s));
    QWC_CHECK(cudaEventSynchronize(ev.b));
    float ms = 0;
    QWC_CHECK(cudaEventElapsedTime(&ms, ev.a, ev.b));
    return double(ms) * 1e6 / double(inner);
  };
  auto run_checked = [&](size_t c) {  // unmeasured runs into a NaN-poisoned output; returns the last output
    QWC_CHECK(cudaMemsetAsync(out.p, 0xff, n_out * 4, s));
    for (int i = 0; i < std::max(1, p.warmup); ++i) launch_one(c, 0);
    std::vector<float> h(n_out);
    QWC_CHECK(cudaMemcpyAsync(h.data(), out.p, n_out * 4, cudaMemcpyDeviceToHost, s));
    QWC_CHECK(cudaStreamSynchronize(s));
    return h;
  };

  TunedShapeResult res;
  res.cands.resize(cands.size());
  const std::vector<float> ref = run_checked(0);
  for (float v : ref)
    if (!std::isfinite(v)) throw CudaError("tile tune: fixed gave a non-finite output for " + key + " on random inputs");
  const double one = std::max(1.0, timed(0, 8));  // a first timing of fixed sets inner
  res.inner = std::min<int64_t>(1000000, std::max<int64_t>(1, (int64_t)std::ceil(p.rep_ms * 1e6 / one)));

  std::vector<double> bound;  // per output, filled when first needed
  const double u = std::ldexp(1.0, -24), gamma = double(cols) * u / (1.0 - double(cols) * u);
  for (size_t c = 0; c < cands.size(); ++c) {
    TunedCandidate &r = res.cands[c];
    r.cand = cands[c];
    if (c == 0) continue;  // the reference
    const std::vector<float> got = run_checked(c);
    bool finite = true;
    for (float v : got) finite &= std::isfinite(v);
    if (finite && std::memcmp(got.data(), ref.data(), n_out * 4) == 0) continue;
    r.bitwise = false;
    if (bound.empty()) {
      Mem a(n_out * 8);
      const int64_t blocks = std::min<int64_t>((int64_t)(n_out + 7) / 8, 132 * 64);
      launch(abs_dot_kernel, dim3((unsigned)blocks), dim3(256), 0, s, a.as<double>(), wbf, x.as<__nv_bfloat16>(), T);
      QWC_LAUNCH_CHECK("abs_dot_kernel");
      bound.resize(n_out);
      QWC_CHECK(cudaMemcpyAsync(bound.data(), a.p, n_out * 8, cudaMemcpyDeviceToHost, s));
      QWC_CHECK(cudaStreamSynchronize(s));
      for (double &b : bound) b = 2.0 * gamma * b + 2.0 * u * b;
    }
    for (size_t i = 0; i < n_out; ++i) {
      const double d = std::fabs(double(got[i]) - double(ref[i]));
      const bool bad = !std::isfinite(d);
      r.max_abs = std::max(r.max_abs, bad ? 1e30 : d);
      if (bad || d > bound[i]) r.within = false;
    }
  }
  // Repetitions interleaved over the candidates: a clock or load change hits them all alike.
  for (int rep = 0; rep < p.reps; ++rep)
    for (size_t c = 0; c < cands.size(); ++c) res.cands[c].samples_ns.push_back(timed(c, res.inner));
  return res;
}

}  // namespace qwc
