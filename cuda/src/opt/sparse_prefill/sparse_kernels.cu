// sparse_kernels.cu — vertical-slash sparse prefill kernels and their driver (see sparse_prefill.cuh). The SIMT kernels
// ran on an H100 (2026-12-05: lab and test/gpu/sparse.test.ts); the mma attend's driver (bitmaps, launch) is
// COMPILE-CHECKED ONLY.
#include "sparse_attend.cuh"

#include "attention.cuh"
#include "dca_positions.hpp"
#include "sparse_select.hpp"
#include "vs_tiles.hpp"

namespace qwc {
namespace {

constexpr int kMaxD = kSparseMaxD;

__device__ __forceinline__ int variant(const SparseAttnArgs &a, int i, int k) {
  return a.dca_span ? qw::dca::part(i, k, a.dca_span) : 0;
}

// Step 1: grid (lq, nH), one warp. scores = [vert: nH x N | slash: nH x N], zeroed before.
__global__ void __launch_bounds__(32) sparse_estimate_kernel(const SparseAttnArgs a, int lq, float *scores) {
  pdl_wait();
  pdl_trigger();
  const int t = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
  const int N = a.pos0 + a.rows, d = a.head_dim, kh = h / (a.n_heads / a.n_kv);
  const int64_t r = a.rows - lq + t;
  const int i = a.pos0 + (int)r;
  __shared__ float qs[3][kMaxD];
  sparse_load_q(qs, a, r, h);
  const __nv_bfloat16 *K = a.kcache + ((int64_t)a.slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const float scale = rsqrtf((float)d);
  float m = -INFINITY, l = 0.f;
  for (int k = lane; k <= i; k += 32) {
    const float sc = sparse_qk(qs[variant(a, i, k)], K, k, d) * scale;
    const float mn = fmaxf(m, sc);
    l = l * __expf(m - mn) + __expf(sc - mn);
    m = mn;
  }
  const float M = warp_max(m);
  const float Lsum = warp_sum(m == -INFINITY ? 0.f : l * __expf(m - M));
  float *vert = scores + (int64_t)h * N, *slash = scores + ((int64_t)a.n_heads + h) * N;
  for (int k = lane; k <= i; k += 32) {
    const float p = __expf(sparse_qk(qs[variant(a, i, k)], K, k, d) * scale - M) / Lsum;
    atomicAdd(vert + k, p);
    atomicAdd(slash + (i - k), p);
  }
}

using qw::sparse::count_le;

// Step 2 on the device: grid (2, nH), part 0 the head's columns (vertical scores), part 1 its diagonals (slash
// scores); kVsSelThreads threads. top_lines' rule (sparse_select.hpp, the host's and the CPU's): the forced [0, f)
// and the k best of [f, N) by select_key, ascending. The k-th smallest key's high word T is found by a radix select
// (4 passes of 8 bits, a 256-bin histogram in shared memory, radix_pick); then one ordered pass takes each index whose
// high word is below T, or equal to it and among the first `need` such indices (the ties that select_key breaks by
// index), as top_lines_radix does on the host (test_sparse_prefill: = top_lines), and writes the list in ascending order (block scans over chunks of kVsSelThreads x kVsSelItems indices) and the
// bitmap words of the mma attend. The list's length (f + k) depends on the budget alone: the host lays out the
// offsets, and nothing waits for the GPU.
constexpr int kVsSelThreads = 1024, kVsSelItems = 8;  // a thread's 8 consecutive indices: a byte of bitmap
__device__ __forceinline__ int block_scan_excl(int v, int *wsum, int &total) {  // kVsSelThreads threads
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, incl = warp_scan_incl(v);
  __syncthreads();  // wsum's previous use is over
  if (lane == 31) wsum[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
  for (int w = 0; w < kVsSelThreads / 32; ++w) {
    before += w < warp ? wsum[w] : 0;
    total += wsum[w];
  }
  return before + incl - v;
}
__global__ void __launch_bounds__(kVsSelThreads) vs_select_kernel(int32_t *lists, const int32_t *offs, uint32_t *bits,
                                                                  const float *scores, int N, int words, int sink,
                                                                  int vertical, int local, int slash) {
  pdl_wait();
  pdl_trigger();
  __shared__ uint32_t hist[256];
  __shared__ int wsum[kVsSelThreads / 32];
  __shared__ uint32_t s_bin, s_need;
  const int part = blockIdx.x, h = blockIdx.y, H = gridDim.y, t = threadIdx.x;
  const float *sc = scores + ((int64_t)part * H + h) * N;
  int32_t f, hi, k;
  qw::sparse::forced_split(N, part ? local : sink, N, part ? slash : vertical, f, hi, k);
  // the threshold T and the ties to take (k == 0 or every candidate: none needed; block-uniform branches)
  uint32_t T = 0u, need = 0u;
  const bool all = k == N - f;
  if (k > 0 && !all) {
    uint32_t prefix = 0u, mask = 0u;
    need = uint32_t(k);
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int i = t; i < 256; i += kVsSelThreads) hist[i] = 0u;
      __syncthreads();
      for (int j = f + t; j < N; j += kVsSelThreads) {
        const uint32_t u = qw::sparse::select_hi(sc[j]);
        if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (t == 0) qw::sparse::radix_pick(hist, need, s_bin, s_need);
      __syncthreads();
      prefix |= s_bin << shift;
      mask |= 255u << shift;
      need = s_need;
      __syncthreads();  // s_bin / s_need read before the next pass writes them
    }
    T = prefix;
  }
  int32_t *out = lists + offs[2 * h + part];
  uint32_t *bm = bits + ((int64_t)part * H + h) * words;
  int written = 0, ties = 0;
  for (int c0 = 0; c0 < N; c0 += kVsSelThreads * kVsSelItems) {
    const int j0 = c0 + t * kVsSelItems;
    uint32_t sel = 0u, eq = 0u;  // bit e: index j0 + e
    for (int e = 0; e < kVsSelItems; ++e) {
      const int j = j0 + e;
      if (j >= N) break;
      if (j < f || all) sel |= 1u << e;
      else if (k > 0) {
        const uint32_t u = qw::sparse::select_hi(sc[j]);
        if (u < T) sel |= 1u << e;
        else if (u == T) eq |= 1u << e;
      }
    }
    int eq_total, sel_total;
    int eq_before = ties + block_scan_excl(__popc(eq), wsum, eq_total);
    for (int e = 0; e < kVsSelItems; ++e)  // the first `need` ties in index order
      if ((eq >> e) & 1u) {
        if (uint32_t(eq_before) < need) sel |= 1u << e;
        ++eq_before;
      }
    int pos = written + block_scan_excl(__popc(sel), wsum, sel_total);
    for (int e = 0; e < kVsSelItems; ++e)
      if ((sel >> e) & 1u) out[pos++] = j0 + e;
    // bitmap: word w holds indices 32 w .. 32 w + 31 = the bytes of 4 consecutive threads (lanes 4q .. 4q + 3)
    uint32_t word = sel;
    for (int q = 1; q < 4; ++q) word |= __shfl_down_sync(0xffffffffu, sel, q) << (8 * q);
    if ((t & 3) == 0 && j0 / 32 < words) bm[j0 / 32] = word;
    written += sel_total;
    ties += eq_total;
  }
}

// The keys a head's selection visits over rows p0 .. N - 1 (sparse_cost.cpp vs_visited, the count the CPU kernels'
// own counts are tested against): columns and diagonals apart, less the keys on both (c + o in [p0, N)). grid nH,
// kVsCountThreads threads; adds into keys[h] (one step after another: the prompt's sum).
constexpr int kVsCountThreads = 256;
__global__ void __launch_bounds__(kVsCountThreads) vs_count_kernel(double *keys, const int32_t *lists,
                                                                   const int32_t *offs, int p0, int N) {
  pdl_wait();
  pdl_trigger();
  __shared__ double part[kVsCountThreads / 32];
  const int h = blockIdx.x, t = threadIdx.x;
  const int32_t *C = lists + offs[2 * h], *D = lists + offs[2 * h + 1];
  const int nc = offs[2 * h + 1] - offs[2 * h], nd = offs[2 * h + 2] - offs[2 * h + 1];
  double s = 0;
  for (int i = t; i < nc; i += kVsCountThreads) {
    const int c = C[i];
    s += max(0, N - max(p0, c));
    s -= count_le(D, nd, N - 1 - c) - count_le(D, nd, p0 - c - 1);  // diagonals o in [p0 - c, N - 1 - c]
  }
  for (int i = t; i < nd; i += kVsCountThreads) s += max(0, N - max(p0, D[i]));
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if ((t & 31) == 0) part[t >> 5] = s;
  __syncthreads();
  if (t == 0) {
    double total = 0;
    for (int w = 0; w < kVsCountThreads / 32; ++w) total += part[w];
    keys[h] += total;
  }
}

// Step 3: grid (rows, nH), one warp; lane c holds output columns c, c + 32, c + 64, c + 96.
__global__ void __launch_bounds__(32) sparse_attend_kernel(const SparseAttnArgs a, const int32_t *lists, const int32_t *offs) {
  pdl_wait();
  pdl_trigger();
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y, lane = threadIdx.x;
  const int d = a.head_dim, kh = h / (a.n_heads / a.n_kv), i = a.pos0 + (int)r;
  __shared__ float qs[3][kMaxD];
  __shared__ float p[32];
  __shared__ int keys[32];
  sparse_load_q(qs, a, r, h);
  const int32_t *cols = lists + offs[2 * h], *diags = lists + offs[2 * h + 1];
  const int ncol = offs[2 * h + 1] - offs[2 * h], ndiag = offs[2 * h + 2] - offs[2 * h + 1];
  const int nc = count_le(cols, ncol, i), nd = count_le(diags, ndiag, i);
  const int64_t base = ((int64_t)a.slot * a.n_kv + kh) * (int64_t)a.max_ctx * d;
  const __nv_bfloat16 *K = a.kcache + base, *V = a.vcache + base;
  const float scale = rsqrtf((float)d);
  float m = -INFINITY, l = 0.f, o[kMaxD / 32] = {0.f, 0.f, 0.f, 0.f};
  for (int c0 = 0; c0 < nc + nd; c0 += 32) {
    const int c = c0 + lane;
    int key = -1;
    if (c < nc) key = cols[c];
    else if (c < nc + nd) {
      key = i - diags[c - nc];
      const int at = count_le(cols, nc, key);
      if (at > 0 && cols[at - 1] == key) key = -1;  // already visited as a column
    }
    const float sc = key >= 0 ? sparse_qk(qs[variant(a, i, key)], K, key, d) * scale : -INFINITY;
    sparse_softmax_step(sc, key, m, l, o, p, keys, V, d, lane);
  }
  sparse_store_z(a, r, h, o, l, lane);
}

}  // namespace

SparseScratch::~SparseScratch() {
  if (scores_) cudaFree(scores_);
  if (lists_) cudaFree(lists_);
  if (offsets_) cudaFree(offsets_);
  if (bits_) cudaFree(bits_);
  if (counts_) cudaFree(counts_);
}
float *SparseScratch::scores(size_t n) { return sparse_grow(scores_, scores_cap_, n, "cudaMalloc (sparse prefill scratch)"); }
int32_t *SparseScratch::lists(size_t n) { return sparse_grow(lists_, lists_cap_, n, "cudaMalloc (sparse prefill scratch)"); }
int32_t *SparseScratch::offsets(size_t n) { return sparse_grow(offsets_, offsets_cap_, n, "cudaMalloc (sparse prefill scratch)"); }
uint32_t *SparseScratch::bits(size_t n) { return sparse_grow(bits_, bits_cap_, n, "cudaMalloc (sparse prefill scratch)"); }

void SparseScratch::fetch_lists(cudaStream_t stream) const {
  if (lists_on_host) return;
  sparse_fetch(host_lists, lists_, selected(), stream);
  lists_on_host = true;
}

void SparseScratch::reset_counts(size_t n, cudaStream_t stream) {
  sparse_grow(counts_, counts_cap_, std::max<size_t>(1, n), "cudaMalloc (sparse prefill counts)");
  counts_n_ = n;
  cuda_check(cudaMemsetAsync(counts_, 0, std::max<size_t>(1, n) * sizeof(double), stream), "cudaMemsetAsync", __FILE__,
             __LINE__);
}

const std::vector<double> &SparseScratch::fetch_counts(cudaStream_t stream) const {
  host_counts_.assign(counts_n_, 0.0);
  if (!counts_n_) return host_counts_;  // nothing counted yet
  cuda_check(cudaMemcpyAsync(host_counts_.data(), counts_, counts_n_ * sizeof(double), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync", __FILE__, __LINE__);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __FILE__, __LINE__);
  return host_counts_;
}

void run_sparse_count(const SparseAttnArgs &a, SparseScratch &s, int32_t layer, cudaStream_t stream) {
  if (a.rows <= 0) return;
  if (!s.counts() || size_t(layer + 1) * size_t(a.n_heads) > s.counts_n())
    throw CudaError("sparse prefill counts: reset_counts(layers x heads) first");
  launch(vs_count_kernel, dim3(a.n_heads), dim3(kVsCountThreads), 0, stream, s.counts() + size_t(layer) * a.n_heads,
         (const int32_t *)s.lists(std::max<size_t>(1, s.selected())), (const int32_t *)s.offsets(size_t(2) * a.n_heads + 1),
         (int)a.pos0, (int)(a.pos0 + a.rows));
  QWC_LAUNCH_CHECK("vs_count_kernel");
}

namespace {
bool vs_mma_applies(const SparseAttnArgs &a, SparseAttend arm) {
  return sparse_mma_wanted(arm) && !a.dca_span &&
         vs_mma_supported(a.head_dim, a.pos0 + a.rows);
}
}  // namespace

const char *run_sparse_attend(const SparseAttnArgs &a, SparseScratch &s, cudaStream_t stream, SparseAttend arm) {
  const bool mma = vs_mma_applies(a, arm);
  const char *simt = a.dca_span ? "attn_sparse_vs_dca_simt" : "attn_sparse_vs_simt";
  if (a.rows <= 0) return mma ? "attn_sparse_vs_mma" : simt;
  const int32_t H = a.n_heads, N = a.pos0 + a.rows;
  const int32_t *dl = s.lists(std::max<size_t>(1, s.selected())), *doff = s.offsets(size_t(2) * H + 1);
  if (mma) {  // step 2 left the bitmaps the kernel masks with (columns | diagonals, [nH][words] each)
    const int32_t words = (N + 31) / 32;
    const uint32_t *db = s.bits(size_t(2) * H * words);
    PrefillAttnArgs p;
    p.out = a.out; p.q = a.q[0]; p.kcache = a.kcache; p.vcache = a.vcache;
    p.slot = a.slot; p.pos0 = a.pos0; p.n = a.rows;
    p.n_heads = H; p.n_kv = a.n_kv; p.head_dim = a.head_dim; p.max_ctx = a.max_ctx;
    p.lines.lists = dl; p.lines.offs = doff; p.lines.cbits = db; p.lines.dbits = db + size_t(H) * words;
    p.lines.words = words; p.lines.qb0 = a.pos0 / qw::sparse::kVsTile;
    p.lines.nqb = (N - 1) / qw::sparse::kVsTile - p.lines.qb0 + 1;
    return launch_prefill_attention_mma(p, stream);
  }
  launch(sparse_attend_kernel, dim3(a.rows, H), dim3(32), 0, stream, a, dl, doff);
  QWC_LAUNCH_CHECK("sparse_attend_kernel");
  return simt;
}

const float *run_sparse_estimate(const SparseAttnArgs &a, SparseScratch &s, cudaStream_t stream, bool mma) {
  if (a.head_dim > kMaxD || a.head_dim % 2) throw CudaError("sparse prefill: head_dim must be even and <= 128");
  const int32_t N = a.pos0 + a.rows, H = a.n_heads, lq = std::min(qw::kSparseLastQ, a.rows);
  const size_t n = size_t(2) * H * N;  // vert | slash; then the mma estimate's workspace (an even offset: float2)
  float *sc = s.scores(n + (mma ? vs_estimate_mma_ws_floats(a) : 0));
  cuda_check(cudaMemsetAsync(sc, 0, n * sizeof(float), stream), "cudaMemsetAsync", __FILE__, __LINE__);
  if (a.rows <= 0) return sc;
  if (mma) {
    run_vs_estimate_mma(a, lq, sc, sc + n, stream);
  } else {
    launch(sparse_estimate_kernel, dim3(lq, H), dim3(32), 0, stream, a, (int)lq, sc);
    QWC_LAUNCH_CHECK("sparse_estimate_kernel");
  }
  return sc;
}

const char *run_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, SparseScratch &s, cudaStream_t stream,
                               std::vector<std::vector<int32_t>> *cols, std::vector<std::vector<int32_t>> *diags,
                               SparseAttend arm, SparseSelect sel) {
  if (a.head_dim > kMaxD || a.head_dim % 2) throw CudaError("sparse prefill: head_dim must be even and <= 128");
  if (a.rows <= 0) return run_sparse_attend(a, s, stream, arm);  // nothing to run: the name alone
  const int32_t N = a.pos0 + a.rows, H = a.n_heads;
  // 1. estimate (tensor cores where the attend's arm allows and the shape fits; else SIMT)
  const float *sc = run_sparse_estimate(a, s, stream, sparse_mma_wanted(arm) && vs_estimate_mma_applies(a));
  // 2. select: the lists' layout from the budget alone (the same counts for every head), then the lists and the
  // bitmaps on the device, or on the host (QW_SPARSE_HOST_SELECT=1 or the lab's Host arm)
  int32_t fc, hc, kc, fd, hd, kd;
  qw::sparse::forced_split(N, b.sink, N, b.vertical, fc, hc, kc);
  qw::sparse::forced_split(N, b.local, N, b.slash, fd, hd, kd);
  const int32_t nc = fc + kc, nd = fd + kd, words = (N + 31) / 32;
  s.host_offsets.assign(size_t(2) * H + 1, 0);
  for (int32_t h = 0; h < H; ++h) {
    s.host_offsets[size_t(2 * h)] = h * (nc + nd);
    s.host_offsets[size_t(2 * h + 1)] = h * (nc + nd) + nc;
  }
  s.host_offsets[size_t(2 * H)] = H * (nc + nd);
  int32_t *dl = s.lists(std::max<size_t>(1, s.selected())), *doff = s.offsets(s.host_offsets.size());
  uint32_t *db = s.bits(size_t(2) * H * words);
  cuda_check(cudaMemcpyAsync(doff, s.host_offsets.data(), s.host_offsets.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                             stream),
             "cudaMemcpyAsync", __FILE__, __LINE__);
  if (sparse_select_on_device(sel)) {
    launch(vs_select_kernel, dim3(2, H), dim3(kVsSelThreads), 0, stream, dl, (const int32_t *)doff, db, (const float *)sc,
           (int)N, (int)words, (int)b.sink, (int)b.vertical, (int)b.local, (int)b.slash);
    QWC_LAUNCH_CHECK("vs_select_kernel");
    s.lists_on_host = false;
    if (cols || diags) s.fetch_lists(stream);
  } else {
    s.host_scores.resize(size_t(2) * H * N);
    cuda_check(cudaMemcpyAsync(s.host_scores.data(), sc, s.host_scores.size() * sizeof(float), cudaMemcpyDeviceToHost,
                               stream),
               "cudaMemcpyAsync", __FILE__, __LINE__);
    cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __FILE__, __LINE__);
    s.host_lists.clear();
    for (int32_t h = 0; h < H; ++h) {
      const auto c = qw::sparse::top_lines(s.host_scores.data() + size_t(h) * N, N, b.sink, b.vertical);
      const auto g = qw::sparse::top_lines(s.host_scores.data() + (size_t(H) + h) * N, N, b.local, b.slash);
      if (int32_t(c.size()) != nc || int32_t(g.size()) != nd) throw CudaError("sparse prefill: selection count off its layout");
      s.host_lists.insert(s.host_lists.end(), c.begin(), c.end());
      s.host_lists.insert(s.host_lists.end(), g.begin(), g.end());
    }
    qw::sparse::vs_bitmaps(s.host_bits, s.host_lists.data(), s.host_offsets.data(), H, words);
    cuda_check(cudaMemcpyAsync(dl, s.host_lists.data(), s.host_lists.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                               stream),
               "cudaMemcpyAsync", __FILE__, __LINE__);
    cuda_check(cudaMemcpyAsync(db, s.host_bits.data(), s.host_bits.size() * sizeof(uint32_t), cudaMemcpyHostToDevice,
                               stream),
               "cudaMemcpyAsync", __FILE__, __LINE__);
    s.lists_on_host = true;
  }
  if (cols || diags) {
    if (cols) cols->assign(size_t(H), {});
    if (diags) diags->assign(size_t(H), {});
    for (int32_t h = 0; h < H; ++h) {
      const auto at = [&](int32_t e) { return s.host_lists.begin() + s.host_offsets[size_t(e)]; };
      if (cols) (*cols)[size_t(h)].assign(at(2 * h), at(2 * h + 1));
      if (diags) (*diags)[size_t(h)].assign(at(2 * h + 1), at(2 * h + 2));
    }
  }
  // 3. attend (the host vectors stay alive in the scratch until the next call: the copies above read them)
  return run_sparse_attend(a, s, stream, arm);
}

}  // namespace qwc
