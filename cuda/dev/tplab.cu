// tplab.cu — the multi-GPU lab of tensor parallelism (toggle "parallel", src/opt/parallel/): NCCL loaded at run time
// (src/cuda/nccl.cuh), the rank group (tp_group.cuh), the sharding plan (tp_plan.hpp) on real devices, checked
// against the CPU: the same plan's rank-order sum (the CPU emulation's all-reduce) and an fp64 full-matrix product.
// Its own binary: make -C cuda/dev tplab -> cuda/build/dev/tplab. Needs >= 2 GPUs and libnccl.so.2 (QW_NCCL=path).
//
//   tplab [ranks] [--preset 72b|32b|7b] [--quick] [--json FILE]
//
// --json FILE also writes the timings of step 4 as JSON (notebooks/tp-scaling.ts reads it): {preset, ranks, hidden,
// all_reduce: [{type, rows, bytes, us, busbw_gb_s}], layer_replay_us, checks_passed}.
//
// 1. plan + upload: one layer of the preset's shapes, bf16 random weights, sharded per rank by tp_shard and uploaded
//    to that rank's device only; bytes per rank printed (1/N of the sharded tensors).
// 2. row-parallel o_proj and down, vocab-parallel lm_head: each rank multiplies its shard (an fp32-accumulating
//    bf16 matvec of this file), then NCCL all-reduce (o, down) / all-gather (logits). Checks: NCCL's sum vs the
//    rank-order sum of the same partials within 4 ulp-ish (1e-6 relative: the orders differ), and vs the fp64 product
//    of the unsharded weights (1e-5 relative); the gathered logits equal the ranks' slices bit for bit.
// 3. graph: the layer's [o matvec, all-reduce, down matvec, all-reduce] captured once per rank and replayed; the
//    replay equals the eager run within 1e-6.
// 5. the per-rank forward's own kernels (src/opt/parallel/tp_kernels.cuh, used by libqwen_cuda at parallel = tpN):
//    the vocab-parallel embedding of 7 tokens (rank boundaries included) + fp32 all-reduce equals the unsharded
//    gather bit for bit; 3 rows of per-rank logits slices + all-gather + unpack equal the tp1 layout bit for bit.
// 4. timing (median of 5 x 20 after warm-up, host clock around a synchronized batch): NCCL all-reduce of bf16 and fp32 [B, H]
//    for B = 1, 16, 512, 4096 (latency and bus bandwidth 2(N-1)/N * bytes / t: the floor one layer pays twice), and
//    the captured layer's replay time.
// Prints "tplab: FAIL ..." and exits 1 on a failed check.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.cuh"
#include "half.hpp"
#include "nccl.cuh"
#include "tp_group.cuh"
#include "tp_kernels.cuh"
#include "tp_plan.hpp"

using namespace qwc;

namespace {

int g_fail = 0;
#define CHK(x) cuda_check((x), #x, __FILE__, __LINE__)

uint64_t g_rng = 0x9E3779B97F4A7C15ull;
float rnd() {  // uniform in [-1, 1)
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return float((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

qw::NativeTensor random_bf16(const std::string &name, int64_t rows, int64_t cols, float scale) {
  qw::NativeTensor t;
  t.name = name;
  t.type = qw::NativeType::BF16;
  t.rows = rows;
  t.cols = cols;
  t.data.resize(size_t(rows * cols) * 2);
  for (int64_t i = 0; i < rows * cols; ++i) {
    const uint16_t b = qw::float_to_bf16(scale * rnd());
    std::memcpy(&t.data[size_t(i) * 2], &b, 2);
  }
  return t;
}
double w_at(const qw::NativeTensor &t, int64_t r, int64_t c) {
  uint16_t b;
  std::memcpy(&b, &t.data[size_t(r * t.cols + c) * 2], 2);
  return qw::bf16_to_float(b);
}

// y[r] = sum_c W[r, c] x[c], W bf16 row-major, fp32 accumulation: one warp per row.
__global__ void matvec_bf16(const __nv_bfloat16 *w, const float *x, float *y, int64_t rows, int64_t cols) {
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  float s = 0.f;
  for (int64_t c = threadIdx.x % 32; c < cols; c += 32) s += __bfloat162float(w[row * cols + c]) * x[c];
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (threadIdx.x % 32 == 0) y[row] = s;
}
void matvec(const void *w, const float *x, float *y, int64_t rows, int64_t cols, cudaStream_t s) {
  matvec_bf16<<<unsigned((rows + 7) / 8), 256, 0, s>>>(static_cast<const __nv_bfloat16 *>(w), x, y, rows, cols);
  QWC_LAUNCH_CHECK("matvec_bf16");
}

template <class T>
T *upload(const void *src, size_t bytes) {
  void *p = nullptr;
  CHK(cudaMalloc(&p, std::max<size_t>(bytes, 4)));
  if (src) CHK(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
  return static_cast<T *>(p);
}
std::vector<float> download(const float *d, size_t n) {
  std::vector<float> h(n);
  CHK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
  return h;
}
double rel(const std::vector<float> &a, const std::vector<double> &b) {
  double m = 1e-30, e = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    m = std::max(m, std::fabs(b[i]));
    e = std::max(e, std::fabs(double(a[i]) - b[i]));
  }
  return e / m;
}
void check(const char *what, double err, double tol) {
  const bool ok = err <= tol && std::isfinite(err);
  std::printf("  %-52s rel err %.2e (tol %.0e) %s\n", what, err, tol, ok ? "ok" : "FAIL");
  if (!ok) ++g_fail;
}
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
// Median seconds per call of f over 5 batches of `iters` calls after 3 warm-ups (sync after each batch).
double time_per_call(TpGroup &g, int iters, const std::function<void()> &f) {
  for (int i = 0; i < 3; ++i) f();
  g.sync();
  std::vector<double> t;
  for (int b = 0; b < 5; ++b) {
    const double t0 = now_s();
    for (int i = 0; i < iters; ++i) f();
    g.sync();
    t.push_back((now_s() - t0) / iters);
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

// 5. (see the header) vocab-parallel embedding + all-reduce, and the logits all-gather + unpack, vs the host.
void ranks_kernels(TpGroup &g, const qw::NativeTensor &emb, const qw::TpPlan &vplan, const qw::Config &cv) {
  const int n = g.ranks();
  const int64_t H = emb.cols, V = emb.rows, P = vplan.vocab_part;
  std::vector<int32_t> toks = {0, int32_t(V - 1), int32_t(P - 1), int32_t(P), 1, int32_t(V / 2), int32_t((n - 1) * P)};
  const int32_t T = int32_t(toks.size()), rows = 3;
  std::vector<double> want_x(size_t(T * H));
  for (int32_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < H; ++k) want_x[size_t(t * H + k)] = w_at(emb, toks[size_t(t)], k);
  // per-rank logits slices [rows, P]: value = row * V + global vocab id (exact in fp32 for these sizes)
  std::vector<double> want_l(size_t(rows * V));
  for (int32_t r = 0; r < rows; ++r)
    for (int64_t v = 0; v < V; ++v) want_l[size_t(r * V + v)] = double(r * V + v);
  const size_t nr = static_cast<size_t>(n);
  std::vector<float *> xs(nr), parts(nr), gathered(nr), logits(nr);
  std::vector<void *> shards(nr);
  std::vector<int32_t *> dtok(nr);
  g.each([&](int r) {
    const qw::NativeTensor s = qw::tp_shard(vplan, cv, emb, r);
    const qw::TpRank &k = vplan.rank[size_t(r)];
    shards[size_t(r)] = upload<void>(s.data.data(), s.data.size());
    dtok[size_t(r)] = upload<int32_t>(toks.data(), toks.size() * 4);
    xs[size_t(r)] = upload<float>(nullptr, size_t(T * H) * 4);
    std::vector<float> part(size_t(rows * P), -1.0f);  // padding columns: -1, never read
    for (int32_t row = 0; row < rows; ++row)
      for (int32_t j = 0; j < k.vocab; ++j) part[size_t(row * P + j)] = float(row * V + k.vocab0 + j);
    parts[size_t(r)] = upload<float>(part.data(), part.size() * 4);
    gathered[size_t(r)] = upload<float>(nullptr, size_t(n * rows * P) * 4);
    logits[size_t(r)] = upload<float>(nullptr, size_t(rows * V) * 4);
    qwc::WMat m;
    m.data = shards[size_t(r)];
    m.rows = s.rows;
    m.cols = s.cols;
    m.type = qwc::WT_BF16;
    qwc::launch_embed_vocab_part(xs[size_t(r)], m, dtok[size_t(r)], T, k.vocab0, g.stream(r));
  });
  std::vector<void *> xb(xs.begin(), xs.end()), gb(gathered.begin(), gathered.end());
  std::vector<const void *> pb(parts.begin(), parts.end());
  g.all_reduce_sum(xb.data(), size_t(T * H), NCCL_FLOAT32);
  g.all_gather(pb.data(), gb.data(), size_t(rows * P), NCCL_FLOAT32);
  g.each([&](int r) {
    qwc::launch_tp_logits_unpack(logits[size_t(r)], V, gathered[size_t(r)], rows, int32_t(P), int32_t(V), g.stream(r));
  });
  g.sync();
  for (int r = 0; r < n; ++r) {
    CHK(cudaSetDevice(g.device(r)));
    const std::string tag = " (rank " + std::to_string(r) + ")";
    check(("vocab-parallel embedding + all-reduce vs gather" + tag).c_str(),
          rel(download(xs[size_t(r)], size_t(T * H)), want_x), 0.0);
    check(("logits all-gather + unpack vs tp1 layout" + tag).c_str(),
          rel(download(logits[size_t(r)], size_t(rows * V)), want_l), 0.0);
  }
  g.each([&](int r) {
    for (void *p : {shards[size_t(r)], (void *)dtok[size_t(r)], (void *)xs[size_t(r)], (void *)parts[size_t(r)],
                    (void *)gathered[size_t(r)], (void *)logits[size_t(r)]})
      cudaFree(p);
  });
}

qw::Config preset(const std::string &p) {
  qw::Config c;
  c.num_layers = 1;
  c.head_dim = 128;
  c.vocab_size = 152064;
  if (p == "7b") { c.hidden_size = 3584; c.intermediate_size = 18944; c.num_heads = 28; c.num_kv_heads = 4; }
  else if (p == "32b") { c.hidden_size = 5120; c.intermediate_size = 27648; c.num_heads = 40; c.num_kv_heads = 8; }
  else { c.hidden_size = 8192; c.intermediate_size = 29568; c.num_heads = 64; c.num_kv_heads = 8; }
  return c;
}

}  // namespace

int main(int argc, char **argv) {
  int n = 0;
  std::string pre = "72b";
  bool quick = false;
  std::string json_path;
  std::string json_rows;  // the all-reduce timings as JSON objects, comma-separated (written with --json)
  double json_layer_us = -1;
  int64_t json_hidden = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") quick = true;
    else if (a == "--preset" && i + 1 < argc) pre = argv[++i];
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else n = std::atoi(a.c_str());
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count < 2) {
    std::printf("tplab: needs >= 2 CUDA devices (found %d)\n", count);
    return 2;
  }
  if (n == 0) n = count >= 8 ? 8 : count >= 4 ? 4 : 2;
  std::printf("tplab: %s; %d of %d devices; preset %s\n", nccl_status(), n, count, pre.c_str());
  if (!nccl_available()) return 2;
  try {
    const qw::Config c = preset(pre);
    const qw::TpPlan plan = qw::tp_plan(c, n);  // throws with the reason when the preset cannot split n ways
    const int64_t H = c.hidden_size, Q = c.q_dim(), F = c.intermediate_size, V = quick ? 8192 * n : c.vocab_size;
    qw::Config cv = c;
    cv.vocab_size = int32_t(V);
    const qw::TpPlan vplan = qw::tp_plan(cv, n);
    TpGroup g(n);

    // 1. one layer's row-parallel weights and the lm_head, sharded and uploaded per rank
    const qw::NativeTensor wo = random_bf16("blk.0.attn_output.weight", H, Q, 0.02f);
    const qw::NativeTensor wd = random_bf16("blk.0.ffn_down.weight", H, F, 0.02f);
    const qw::NativeTensor wl = random_bf16("output.weight", V, H, 0.02f);
    std::vector<float> z(static_cast<size_t>(Q)), a(static_cast<size_t>(F)), h(static_cast<size_t>(H));
    for (auto *v : {&z, &a, &h})
      for (auto &x : *v) x = rnd();
    struct Rank { void *wo, *wd, *wl; float *z, *a, *h, *o, *d, *lg, *lg_all; size_t bytes; int64_t zq, af, vp; };
    std::vector<Rank> rk(static_cast<size_t>(n));
    g.each([&](int r) {
      Rank &k = rk[size_t(r)];
      const qw::NativeTensor so = qw::tp_shard(plan, c, wo, r), sd = qw::tp_shard(plan, c, wd, r),
                             sl = qw::tp_shard(vplan, cv, wl, r);
      const qw::TpRank &p = plan.rank[size_t(r)];
      k.zq = so.cols;
      k.af = sd.cols;
      k.vp = sl.rows;
      k.wo = upload<void>(so.data.data(), so.data.size());
      k.wd = upload<void>(sd.data.data(), sd.data.size());
      k.wl = upload<void>(sl.data.data(), sl.data.size());
      k.bytes = so.data.size() + sd.data.size() + sl.data.size();
      k.z = upload<float>(&z[size_t(p.head0) * c.head_dim], size_t(k.zq) * 4);
      k.a = upload<float>(&a[size_t(p.ffn0)], size_t(k.af) * 4);
      k.h = upload<float>(h.data(), size_t(H) * 4);
      k.o = upload<float>(nullptr, size_t(H) * 4);
      k.d = upload<float>(nullptr, size_t(H) * 4);
      k.lg = upload<float>(nullptr, size_t(vplan.vocab_part) * 4);
      k.lg_all = upload<float>(nullptr, size_t(vplan.vocab_part) * n * 4);
      CHK(cudaMemset(k.lg, 0, size_t(vplan.vocab_part) * 4));  // the last rank's padding stays 0
    });
    const size_t whole = wo.data.size() + wd.data.size() + wl.data.size();
    std::printf("plan+upload: o_proj [%lld, %lld], down [%lld, %lld], lm_head [%lld, %lld] bf16 = %.1f MB; rank 0 holds "
                "%.1f MB (1/%d = %.1f)\n", (long long)H, (long long)Q, (long long)H, (long long)F, (long long)V,
                (long long)H, whole / 1e6, rk[0].bytes / 1e6, n, whole / 1e6 / n);

    // 2. eager: partial products, then the collectives
    auto partials = [&] {
      g.each([&](int r) {
        Rank &k = rk[size_t(r)];
        matvec(k.wo, k.z, k.o, H, k.zq, g.stream(r));
        matvec(k.wd, k.a, k.d, H, k.af, g.stream(r));
        matvec(k.wl, k.h, k.lg, k.vp, H, g.stream(r));
      });
    };
    partials();
    g.sync();
    std::vector<std::vector<float>> po, pd;
    for (int r = 0; r < n; ++r) {
      CHK(cudaSetDevice(g.device(r)));
      po.push_back(download(rk[size_t(r)].o, size_t(H)));
      pd.push_back(download(rk[size_t(r)].d, size_t(H)));
    }
    std::vector<void *> ob, db;
    std::vector<const void *> ls;
    std::vector<void *> lr;
    for (auto &k : rk) { ob.push_back(k.o); db.push_back(k.d); ls.push_back(k.lg); lr.push_back(k.lg_all); }
    g.all_reduce_sum(ob.data(), size_t(H), NCCL_FLOAT32);
    g.all_reduce_sum(db.data(), size_t(H), NCCL_FLOAT32);
    g.all_gather(ls.data(), lr.data(), size_t(vplan.vocab_part), NCCL_FLOAT32);
    g.sync();
    auto rank_order = [&](const std::vector<std::vector<float>> &p) {
      std::vector<const float *> ptr;
      for (auto &v : p) ptr.push_back(v.data());
      std::vector<float> out(static_cast<size_t>(H));
      qw::tp_sum_in_rank_order(out.data(), ptr.data(), n, H);
      return std::vector<double>(out.begin(), out.end());
    };
    auto full = [&](const qw::NativeTensor &w, const std::vector<float> &x) {
      std::vector<double> y(static_cast<size_t>(w.rows));
      for (int64_t r = 0; r < w.rows; ++r) {
        double s = 0;
        for (int64_t k2 = 0; k2 < w.cols; ++k2) s += w_at(w, r, k2) * x[size_t(k2)];
        y[size_t(r)] = s;
      }
      return y;
    };
    const std::vector<double> o64 = full(wo, z), d64 = full(wd, a), l64 = full(wl, h);
    const std::vector<double> o_emul = rank_order(po), d_emul = rank_order(pd);
    std::vector<float> o_got, d_got, lg_got;
    for (int r = 0; r < n; ++r) {
      CHK(cudaSetDevice(g.device(r)));
      o_got = download(rk[size_t(r)].o, size_t(H));
      d_got = download(rk[size_t(r)].d, size_t(H));
      lg_got = download(rk[size_t(r)].lg_all, size_t(vplan.vocab_part) * n);
      const std::string tag = " (rank " + std::to_string(r) + ")";
      check(("o_proj all-reduce vs rank-order sum" + tag).c_str(), rel(o_got, o_emul), 1e-6);
      check(("o_proj all-reduce vs fp64 unsharded" + tag).c_str(), rel(o_got, o64), 1e-5);
      check(("down all-reduce vs rank-order sum" + tag).c_str(), rel(d_got, d_emul), 1e-6);
      check(("down all-reduce vs fp64 unsharded" + tag).c_str(), rel(d_got, d64), 1e-5);
      std::vector<float> lg(static_cast<size_t>(V));
      for (int q = 0; q < n; ++q)
        std::memcpy(&lg[size_t(vplan.rank[size_t(q)].vocab0)], &lg_got[size_t(q) * vplan.vocab_part],
                    size_t(vplan.rank[size_t(q)].vocab) * 4);
      check(("lm_head all-gather vs fp64 unsharded" + tag).c_str(), rel(lg, l64), 1e-5);
    }

    // 3. the layer's collectives captured as a graph per rank
    auto layer = [&] {
      g.each([&](int r) {
        matvec(rk[size_t(r)].wo, rk[size_t(r)].z, rk[size_t(r)].o, H, rk[size_t(r)].zq, g.stream(r));
      });
      g.all_reduce_sum(ob.data(), size_t(H), NCCL_FLOAT32);
      g.each([&](int r) {
        matvec(rk[size_t(r)].wd, rk[size_t(r)].a, rk[size_t(r)].d, H, rk[size_t(r)].af, g.stream(r));
      });
      g.all_reduce_sum(db.data(), size_t(H), NCCL_FLOAT32);
    };
    g.capture(layer);
    for (int i = 0; i < 3; ++i) g.replay();
    g.sync();
    for (int r = 0; r < n; ++r) {
      CHK(cudaSetDevice(g.device(r)));
      const std::vector<float> o = download(rk[size_t(r)].o, size_t(H)), d = download(rk[size_t(r)].d, size_t(H));
      check(("graph replay: o_proj vs rank-order sum (rank " + std::to_string(r) + ")").c_str(), rel(o, o_emul), 1e-6);
      check(("graph replay: down vs rank-order sum (rank " + std::to_string(r) + ")").c_str(), rel(d, d_emul), 1e-6);
    }

    ranks_kernels(g, wl, vplan, cv);  // wl ([V, H] bf16) serves as the embedding table

    // 4. timing: the all-reduce a layer pays twice, and the captured layer
    // bf16: the activations' type; fp32: the partial sums of the design in docs/ARCHITECTURE.md §Tensor parallelism
    std::vector<void *> big(static_cast<size_t>(n));
    const int64_t max_rows = quick ? 512 : 4096;
    g.each([&](int r) { big[size_t(r)] = upload<void>(nullptr, size_t(max_rows * H) * 4); CHK(cudaMemset(big[size_t(r)], 0, size_t(max_rows * H) * 4)); });
    for (const NcclType type : {NCCL_BFLOAT16, NCCL_FLOAT32}) {
      const int esz = type == NCCL_FLOAT32 ? 4 : 2;
      std::printf("\nall-reduce %s [B, %lld] over %d ranks (median of 5 x 20 after warm-up):\n", esz == 4 ? "fp32" : "bf16",
                  (long long)H, n);
      std::printf("  %6s %10s %10s %12s\n", "B", "bytes", "us", "busbw GB/s");
      for (int64_t B : {int64_t(1), int64_t(16), int64_t(512), int64_t(4096)}) {
        if (B > max_rows) continue;
        const double t = time_per_call(g, 20, [&] { g.all_reduce_sum(big.data(), size_t(B * H), type); });
        const double bytes = double(B * H) * esz;
        std::printf("  %6lld %10.0f %10.1f %12.1f\n", (long long)B, bytes, t * 1e6, 2.0 * (n - 1) / n * bytes / t / 1e9);
        char row[200];
        std::snprintf(row, sizeof row, "%s{\"type\": \"%s\", \"rows\": %lld, \"bytes\": %.0f, \"us\": %.3f, \"busbw_gb_s\": %.3f}",
                      json_rows.empty() ? "" : ", ", esz == 4 ? "fp32" : "bf16", (long long)B, bytes, t * 1e6,
                      2.0 * (n - 1) / n * bytes / t / 1e9);
        json_rows += row;
      }
    }
    const double tl = time_per_call(g, 20, [&] { g.replay(); });
    std::printf("captured layer (o matvec + all-reduce + down matvec + all-reduce, fp32 B = 1): %.1f us per replay\n", tl * 1e6);
    json_layer_us = tl * 1e6;
    json_hidden = H;
    g.each([&](int r) {
      Rank &k = rk[size_t(r)];
      for (void *p : {k.wo, k.wd, k.wl, (void *)k.z, (void *)k.a, (void *)k.h, (void *)k.o, (void *)k.d, (void *)k.lg,
                      (void *)k.lg_all, big[size_t(r)]})
        cudaFree(p);
    });
  } catch (const std::exception &e) {
    std::printf("tplab: FAIL %s\n", e.what());
    return 1;
  }
  std::printf("tplab: %s\n", g_fail ? "FAIL" : "all checks passed");
  if (!json_path.empty()) {
    FILE *f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::printf("tplab: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f, "{\"preset\": \"%s\", \"ranks\": %d, \"hidden\": %lld, \"all_reduce\": [%s], \"layer_replay_us\": %.3f, \"checks_passed\": %s}\n",
                 pre.c_str(), n, (long long)json_hidden, json_rows.c_str(), json_layer_us, g_fail ? "false" : "true");
    std::fclose(f);
    std::printf("tplab: wrote %s\n", json_path.c_str());
  }
  return g_fail ? 1 : 0;
}
