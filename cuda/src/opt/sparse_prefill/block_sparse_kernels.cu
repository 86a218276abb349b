// block_sparse_kernels.cu — block-sparse prefill kernels and their driver (see block_sparse.cuh). The SIMT estimate and
// attend ran on an H100 (2026-12-05), the mma attend and the device selection (bs_select_kernel) on 2026-12-06 (ninth
// run); the grouped scoring kernel (bs_score_gqa_kernel) is COMPILE-CHECKED ONLY.
#include "block_sparse.cuh"
#include "sparse_attend.cuh"

#include "attention.cuh"

#include "dca_positions.hpp"
#include "sparse_select.hpp"

namespace qwc {
namespace {

constexpr int kMaxD = kSparseMaxD, kB = qw::kSparseBlock;

// Step 1a: grid (nkb, nKV), d threads: kpool[kh][kb][t] = mean of K rows kb*64 .. min(N, kb*64+64) - 1.
__global__ void bs_pool_k_kernel(const SparseAttnArgs a, int N, float *kpool) {
  pdl_wait();
  pdl_trigger();
  const int kb = blockIdx.x, kh = blockIdx.y, t = threadIdx.x, d = a.head_dim, nkb = gridDim.x;
  if (t >= d) return;
  const __nv_bfloat16 *K = a.kcache + ((int64_t)a.slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const int j1 = min(N, kb * kB + kB);
  float s = 0.f;
  for (int j = kb * kB; j < j1; ++j) s += __bfloat162float(K[(int64_t)j * d + t]);
  kpool[((int64_t)kh * nkb + kb) * d + t] = s / (float)(j1 - kb * kB);
}

// Step 1b: grid (nqb, nH, nvar), d threads: qpool[v][h][b][t] = mean of the step's queries in query block qb0 + b.
__global__ void bs_pool_q_kernel(const SparseAttnArgs a, int qb0, float *qpool) {
  pdl_wait();
  pdl_trigger();
  const int b = blockIdx.x, h = blockIdx.y, v = blockIdx.z, t = threadIdx.x, d = a.head_dim, nqb = gridDim.x;
  if (t >= d) return;
  const int N = a.pos0 + a.rows, i0 = max(a.pos0, (qb0 + b) * kB), i1 = min(N, (qb0 + b) * kB + kB);
  float s = 0.f;
  for (int i = i0; i < i1; ++i) s += __bfloat162float(a.q[v][((int64_t)(i - a.pos0) * a.n_heads + h) * d + t]);
  qpool[(((int64_t)v * a.n_heads + h) * nqb + b) * d + t] = s / (float)(i1 - i0);
}

// Step 1c: grid (nqb, nH), one warp: scores[h][b][kb] = qpool[var][h][b] . kpool[kh][kb] for kb <= qb0 + b.
__global__ void __launch_bounds__(32) bs_score_kernel(const SparseAttnArgs a, int qb0, int nkb, const float *kpool,
                                                      const float *qpool, float *scores) {
  pdl_wait();
  pdl_trigger();
  const int b = blockIdx.x, h = blockIdx.y, lane = threadIdx.x, nqb = gridDim.x, d = a.head_dim;
  const int qb = qb0 + b, kh = h / (a.n_heads / a.n_kv), i0 = max(a.pos0, qb * kB);
  for (int kb = lane; kb <= qb; kb += 32) {
    const int v = a.dca_span ? qw::dca::part(i0, kb * kB, a.dca_span) : 0;
    const float *qp = qpool + (((int64_t)v * a.n_heads + h) * nqb + b) * d, *kp = kpool + ((int64_t)kh * nkb + kb) * d;
    float acc = 0.f;
    for (int t = 0; t < d; ++t) acc = fmaf(qp[t], kp[t], acc);
    scores[((int64_t)h * nqb + b) * nkb + kb] = acc;
  }
}

// Step 1c, grouped (the default where its shared memory fits 48 KB): grid (nqb, nKV), 256 threads. The G query heads
// of a kv head share each tile of 32 pooled keys, read once from L2 into shared memory with rows padded to d + 1
// floats (lane l reads row l at one column: conflict free), where bs_score_kernel's warps read every key row from L2
// once per query head, one lane per row (32 scattered rows per load). Warp w scores heads w, w + 8, ..; lane l key
// block kb0 + l. Each score is bs_score_kernel's fmaf chain over t = 0 .. d - 1: the same bits, the same selection.
constexpr int kScoreThreads = 256;
size_t bs_score_gqa_smem(int nvar, int G, int d) { return (size_t(nvar) * G * d + size_t(32) * (d + 1)) * sizeof(float); }
__global__ void __launch_bounds__(kScoreThreads) bs_score_gqa_kernel(const SparseAttnArgs a, int qb0, int nkb,
                                                                     const float *kpool, const float *qpool,
                                                                     float *scores) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ __align__(16) float score_smem[];
  const int b = blockIdx.x, kh = blockIdx.y, nqb = gridDim.x, d = a.head_dim, G = a.n_heads / a.n_kv;
  const int nvar = a.dca_span ? 3 : 1, qb = qb0 + b, i0 = max(a.pos0, qb * kB);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float *qs = score_smem;               // [nvar][G][d]: the pooled queries of the group's heads
  float *ks = score_smem + nvar * G * d;  // [32][d + 1]: one tile of pooled keys
  for (int e = threadIdx.x; e < nvar * G * d; e += kScoreThreads) {
    const int v = e / (G * d), g = (e / d) % G, t = e % d;
    qs[e] = qpool[(((int64_t)v * a.n_heads + kh * G + g) * nqb + b) * d + t];
  }
  for (int kb0 = 0; kb0 <= qb; kb0 += 32) {
    __syncthreads();  // the previous tile is consumed (the first time: qs is written)
    const int nk = min(32, qb + 1 - kb0);
    for (int e = threadIdx.x; e < nk * d; e += kScoreThreads)
      ks[(e / d) * (d + 1) + e % d] = kpool[((int64_t)kh * nkb + kb0) * d + e];
    __syncthreads();
    if (lane >= nk) continue;
    const int kb = kb0 + lane, v = a.dca_span ? qw::dca::part(i0, kb * kB, a.dca_span) : 0;
    const float *kp = ks + lane * (d + 1);
    for (int g = warp; g < G; g += kScoreThreads / 32) {
      const float *qp = qs + (size_t(v) * G + g) * d;
      float acc = 0.f;
      for (int t = 0; t < d; ++t) acc = fmaf(qp[t], kp[t], acc);
      scores[((int64_t)(kh * G + g) * nqb + b) * nkb + kb] = acc;
    }
  }
}

// Step 2 on the device: grid (nqb, nH), kSelThreads threads, dynamic shared memory cap * 9 bytes (cap: a power of two
// >= every query block's candidate count). top_blocks' rule (sparse_select.hpp, the host path's and the CPU's): the
// forced blocks [0, f) and [hi, qb], and the k best-scored of [f, hi). The candidates are sorted by select_key (a
// strict total order, so the chosen set is the host's exactly) with a bitonic sort in shared memory; the k first are
// flagged and written in ascending order after a block scan. The lists' offsets come from the host (the counts do
// not depend on the scores): no synchronization between estimate and attend.
constexpr int kSelThreads = 256, kSelMax = 4096;  // kSelMax candidates (256k positions) in 36 KB; past it, the host
__global__ void __launch_bounds__(kSelThreads) bs_select_kernel(int32_t *lists, const int32_t *offs, const float *scores,
                                                                int qb0, int nkb, int sink_b, int local_b, int extra,
                                                                int cap) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ __align__(16) unsigned char sel_smem[];
  uint64_t *key = reinterpret_cast<uint64_t *>(sel_smem);  // [cap]
  uint8_t *flag = sel_smem + size_t(cap) * 8;              // [cap]
  __shared__ int wsum[kSelThreads / 32];
  const int b = blockIdx.x, h = blockIdx.y, nqb = gridDim.x, t = threadIdx.x, qb = qb0 + b;
  int32_t f, hi, k;
  qw::sparse::top_blocks_split(qb, sink_b, local_b, extra, f, hi, k);
  const int rest = hi - f;
  int32_t *out = lists + offs[h * nqb + b];
  for (int i = t; i < f; i += kSelThreads) out[i] = i;
  for (int i = hi + t; i <= qb; i += kSelThreads) out[f + k + (i - hi)] = i;
  if (k == rest) {  // every candidate (block-uniform exits: no barrier is left waiting)
    for (int i = f + t; i < hi; i += kSelThreads) out[i] = i;
    return;
  }
  if (k == 0) return;
  int P = 1;
  while (P < rest) P <<= 1;
  const float *sc = scores + ((int64_t)h * nqb + b) * nkb;
  for (int i = t; i < P; i += kSelThreads) {
    key[i] = i < rest ? qw::sparse::select_key(sc[f + i], i) : ~0ull;  // padding sorts last
    if (i < rest) flag[i] = 0;
  }
  __syncthreads();
  for (int sz = 2; sz <= P; sz <<= 1)
    for (int j = sz >> 1; j > 0; j >>= 1) {
      for (int i = t; i < P; i += kSelThreads) {
        const int x = i ^ j;
        if (x > i) {
          const uint64_t u = key[i], v = key[x];
          if ((u > v) == ((i & sz) == 0)) key[i] = v, key[x] = u;
        }
      }
      __syncthreads();
    }
  for (int i = t; i < k; i += kSelThreads) flag[uint32_t(key[i])] = 1;  // the low word: the candidate's index
  __syncthreads();
  // ordered compaction: thread t owns flags [s0, s1); an exclusive scan of the counts over the block
  const int seg = (rest + kSelThreads - 1) / kSelThreads, s0 = min(rest, t * seg), s1 = min(rest, s0 + seg);
  int cnt = 0;
  for (int i = s0; i < s1; ++i) cnt += flag[i];
  const int lane = t & 31, warp = t >> 5, incl = warp_scan_incl(cnt);
  if (lane == 31) wsum[warp] = incl;
  __syncthreads();
  int pos = f + incl - cnt;
  for (int w = 0; w < warp; ++w) pos += wsum[w];
  for (int i = s0; i < s1; ++i)
    if (flag[i]) out[pos++] = f + i;
}

// Step 3: grid (rows, nH), one warp; lane c holds output columns c, c + 32, c + 64, c + 96. Keys: the blocks of the
// row's query block, ascending, each clipped to <= i, 32 at a time; online softmax.
__global__ void __launch_bounds__(32) bs_attend_kernel(const SparseAttnArgs a, int qb0, const int32_t *lists,
                                                       const int32_t *offs, int nqb) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y, lane = threadIdx.x, d = a.head_dim, kh = h / (a.n_heads / a.n_kv), i = a.pos0 + (int)r;
  __shared__ float qs[3][kMaxD];
  __shared__ float p[32];
  __shared__ int keys[32];
  sparse_load_q(qs, a, r, h);
  const int slot = h * nqb + (i / kB - qb0);
  const int32_t *blk = lists + offs[slot];
  const int nblk = offs[slot + 1] - offs[slot];
  const int64_t base = ((int64_t)a.slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const __nv_bfloat16 *K = a.kcache + base, *V = a.vcache + base;
  const float scale = rsqrtf((float)d);
  float m = -INFINITY, l = 0.f, o[kMaxD / 32] = {0.f, 0.f, 0.f, 0.f};
  for (int bi = 0; bi < nblk; ++bi) {
    const int j0 = blk[bi] * kB, j1 = min(j0 + kB - 1, i);
    for (int c0 = j0; c0 <= j1; c0 += 32) {
      const int key = c0 + lane <= j1 ? c0 + lane : -1;
      const float sc = key >= 0 ? sparse_qk(qs[a.dca_span ? qw::dca::part(i, key, a.dca_span) : 0], K, key, d) * scale
                                : -INFINITY;
      sparse_softmax_step(sc, key, m, l, o, p, keys, V, d, lane);
    }
  }
  sparse_store_z(a, r, h, o, l, lane);
}

}  // namespace

BlockSparseScratch::~BlockSparseScratch() {
  if (buf_) cudaFree(buf_);
  if (lists_) cudaFree(lists_);
  if (offsets_) cudaFree(offsets_);
}
float *BlockSparseScratch::buf(size_t n) { return sparse_grow(buf_, buf_cap_, n, "cudaMalloc (block-sparse prefill scratch)"); }
int32_t *BlockSparseScratch::lists(size_t n) { return sparse_grow(lists_, lists_cap_, n, "cudaMalloc (block-sparse prefill scratch)"); }
int32_t *BlockSparseScratch::offsets(size_t n) { return sparse_grow(offsets_, offsets_cap_, n, "cudaMalloc (block-sparse prefill scratch)"); }

void BlockSparseScratch::fetch_lists(cudaStream_t stream) const {
  if (lists_on_host) return;
  sparse_fetch(host_lists, lists_, selected(), stream);
  lists_on_host = true;
}

// The switches are read at each call: a notebook may flip them between steps.
bool sparse_select_on_device(SparseSelect sel) {
  return sel == SparseSelect::Device ||
         (sel == SparseSelect::Auto &&
          !env_opt_in("QW_SPARSE_HOST_SELECT", "sparse prefill selects on the device", "on the host"));
}
bool sparse_mma_wanted(SparseAttend arm) {
  return arm == SparseAttend::Mma ||
         (arm == SparseAttend::Auto &&
          env_switch_on("QW_SPARSE_MMA", "sparse prefill attends with the SIMT kernels", "the mma.sync flash kernel"));
}

const char *run_block_sparse_attend(const SparseAttnArgs &a, BlockSparseScratch &s, cudaStream_t stream, SparseAttend arm) {
  const bool mma = sparse_mma_wanted(arm) && !a.dca_span &&
                   (a.head_dim == 64 || a.head_dim == 128);
  const char *simt = a.dca_span ? "attn_sparse_bs_dca_simt" : "attn_sparse_bs_simt";
  if (a.rows <= 0) return mma ? "attn_sparse_bs_mma" : simt;
  const int32_t *dl = s.lists(std::max<size_t>(1, s.selected())), *doff = s.offsets(std::max<size_t>(1, s.host_offsets.size()));
  if (mma) {  // the flash prefill kernel over the selected key blocks (attention_prefill.cu, key_blocks.cuh)
    PrefillAttnArgs p;
    p.out = a.out; p.q = a.q[0]; p.kcache = a.kcache; p.vcache = a.vcache;
    p.slot = a.slot; p.pos0 = a.pos0; p.n = a.rows;
    p.n_heads = a.n_heads; p.n_kv = a.n_kv; p.head_dim = a.head_dim; p.max_ctx = a.max_ctx;
    p.blocks.lists = dl; p.blocks.offs = doff; p.blocks.qb0 = s.qb0; p.blocks.nqb = s.nqb;
    return launch_prefill_attention_mma(p, stream);
  }
  launch(bs_attend_kernel, dim3(a.rows, a.n_heads), dim3(32), 0, stream, a, (int)s.qb0, dl, doff, (int)s.nqb);
  QWC_LAUNCH_CHECK("bs_attend_kernel");
  return simt;
}

const float *run_block_sparse_estimate(const SparseAttnArgs &a, BlockSparseScratch &s, cudaStream_t stream,
                                       bool warp_scores) {
  if (a.head_dim > kMaxD || a.head_dim % 2) throw CudaError("block-sparse prefill: head_dim must be even and <= 128");
  const int32_t N = a.pos0 + a.rows, H = a.n_heads, d = a.head_dim, nvar = a.dca_span ? 3 : 1;
  const int32_t qb0 = a.pos0 / kB, nqb = (N - 1) / kB - qb0 + 1, nkb = (N - 1) / kB + 1;
  s.qb0 = qb0;
  s.nqb = nqb;
  // pooled k | pooled q | scores in one buffer
  const size_t nk = size_t(a.n_kv) * nkb * d, nq = size_t(nvar) * H * nqb * d, ns = size_t(H) * nqb * nkb;
  float *kpool = s.buf(nk + nq + ns), *qpool = kpool + nk, *sc = qpool + nq;
  const int threads = (d + 31) / 32 * 32;
  launch(bs_pool_k_kernel, dim3(nkb, a.n_kv), dim3(threads), 0, stream, a, (int)N, kpool);
  QWC_LAUNCH_CHECK("bs_pool_k_kernel");
  launch(bs_pool_q_kernel, dim3(nqb, H, nvar), dim3(threads), 0, stream, a, (int)qb0, qpool);
  QWC_LAUNCH_CHECK("bs_pool_q_kernel");
  const size_t gsm = bs_score_gqa_smem(nvar, H / a.n_kv, d);
  if (gsm <= 48 * 1024 && !warp_scores &&
      !env_opt_in("QW_SPARSE_SCORE_WARP", "one block per (query block, kv head) scores", "one warp per (query block, head)")) {
    launch(bs_score_gqa_kernel, dim3(nqb, a.n_kv), dim3(kScoreThreads), gsm, stream, a, (int)qb0, (int)nkb,
           (const float *)kpool, (const float *)qpool, sc);
    QWC_LAUNCH_CHECK("bs_score_gqa_kernel");
  } else {
    launch(bs_score_kernel, dim3(nqb, H), dim3(32), 0, stream, a, (int)qb0, (int)nkb, (const float *)kpool,
           (const float *)qpool, sc);
    QWC_LAUNCH_CHECK("bs_score_kernel");
  }
  return sc;
}

const char *run_block_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, BlockSparseScratch &s,
                                     cudaStream_t stream, std::vector<std::vector<std::vector<int32_t>>> *blocks,
                                     SparseAttend arm, SparseSelect sel) {
  if (a.head_dim > kMaxD || a.head_dim % 2) throw CudaError("block-sparse prefill: head_dim must be even and <= 128");
  if (a.rows <= 0) return run_block_sparse_attend(a, s, stream, arm);  // nothing to run: the name alone
  const int32_t N = a.pos0 + a.rows, H = a.n_heads;
  const int32_t qb0 = a.pos0 / kB, nqb = (N - 1) / kB - qb0 + 1, nkb = (N - 1) / kB + 1;
  const size_t ns = size_t(H) * nqb * nkb;
  const float *sc = run_block_sparse_estimate(a, s, stream);  // 1. estimate
  // 2. select: the lists' layout from the counts alone (host), the lists on the device, or on the host (past
  // kSelMax candidates, QW_SPARSE_HOST_SELECT=1, or the lab's Host arm)
  const int32_t sink_b = qw::sparse::blocks_of(b.sink, kB), local_b = qw::sparse::blocks_of(b.local, kB);
  s.host_offsets.assign(size_t(H) * nqb + 1, 0);
  int32_t cap = 1;
  {
    std::vector<int32_t> per(size_t(nqb) + 1, 0);  // the blocks of query block bq, the same for every head
    for (int32_t bq = 0; bq < nqb; ++bq) {
      per[size_t(bq) + 1] = per[size_t(bq)] + qw::sparse::top_blocks_count(qb0 + bq, sink_b, local_b, b.blocks);
      int32_t f, hi, k;
      qw::sparse::top_blocks_split(qb0 + bq, sink_b, local_b, b.blocks, f, hi, k);
      while (cap < hi - f) cap <<= 1;
    }
    for (int32_t h = 0; h < H; ++h)
      for (int32_t bq = 0; bq <= nqb; ++bq) s.host_offsets[size_t(h) * nqb + bq] = h * per[size_t(nqb)] + per[size_t(bq)];
  }
  int32_t *dl = s.lists(std::max<size_t>(1, s.selected())), *doff = s.offsets(s.host_offsets.size());
  cuda_check(cudaMemcpyAsync(doff, s.host_offsets.data(), s.host_offsets.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                             stream),
             "cudaMemcpyAsync", __FILE__, __LINE__);
  const bool on_device = sparse_select_on_device(sel);
  if (on_device && cap <= kSelMax) {
    launch(bs_select_kernel, dim3(nqb, H), dim3(kSelThreads), size_t(cap) * 9, stream, dl, (const int32_t *)doff,
           (const float *)sc, (int)qb0, (int)nkb, (int)sink_b, (int)local_b, (int)b.blocks, (int)cap);
    QWC_LAUNCH_CHECK("bs_select_kernel");
    s.lists_on_host = false;
    if (blocks) s.fetch_lists(stream);
  } else {
    s.host_scores.resize(ns);
    cuda_check(cudaMemcpyAsync(s.host_scores.data(), sc, ns * sizeof(float), cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync", __FILE__, __LINE__);
    cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __FILE__, __LINE__);
    s.host_lists.clear();
    for (int32_t h = 0; h < H; ++h)
      for (int32_t bq = 0; bq < nqb; ++bq) {
        const auto pick = qw::sparse::top_blocks(s.host_scores.data() + (size_t(h) * nqb + bq) * nkb, qb0 + bq, sink_b,
                                                 local_b, b.blocks);
        s.host_lists.insert(s.host_lists.end(), pick.begin(), pick.end());
      }
    cuda_check(cudaMemcpyAsync(dl, s.host_lists.data(), s.host_lists.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                               stream),
               "cudaMemcpyAsync", __FILE__, __LINE__);
    s.lists_on_host = true;
  }
  if (blocks) {
    blocks->assign(size_t(H), std::vector<std::vector<int32_t>>(size_t(nqb)));
    for (int32_t h = 0; h < H; ++h)
      for (int32_t bq = 0; bq < nqb; ++bq)
        (*blocks)[size_t(h)][size_t(bq)].assign(s.host_lists.begin() + s.host_offsets[size_t(h) * nqb + bq],
                                                s.host_lists.begin() + s.host_offsets[size_t(h) * nqb + bq + 1]);
  }
  // 3. attend (the host vectors stay alive in the scratch until the next call: the copies above read them)
  return run_block_sparse_attend(a, s, stream, arm);
}

}  // namespace qwc
