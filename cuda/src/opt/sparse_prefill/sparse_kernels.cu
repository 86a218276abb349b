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
}
float *SparseScratch::scores(size_t n) { return sparse_grow(scores_, scores_cap_, n, "cudaMalloc (sparse prefill scratch)"); }
int32_t *SparseScratch::lists(size_t n) { return sparse_grow(lists_, lists_cap_, n, "cudaMalloc (sparse prefill scratch)"); }
int32_t *SparseScratch::offsets(size_t n) { return sparse_grow(offsets_, offsets_cap_, n, "cudaMalloc (sparse prefill scratch)"); }
uint32_t *SparseScratch::bits(size_t n) { return sparse_grow(bits_, bits_cap_, n, "cudaMalloc (sparse prefill scratch)"); }

namespace {
bool vs_mma_applies(const SparseAttnArgs &a, SparseAttend arm) {
  return (arm == SparseAttend::Mma || (arm == SparseAttend::Auto && sparse_mma_on())) && !a.dca_span &&
         vs_mma_supported(a.head_dim, a.pos0 + a.rows);
}
}  // namespace

const char *run_sparse_attend(const SparseAttnArgs &a, SparseScratch &s, cudaStream_t stream, SparseAttend arm) {
  const bool mma = vs_mma_applies(a, arm);
  const char *simt = a.dca_span ? "attn_sparse_vs_dca_simt" : "attn_sparse_vs_simt";
  if (a.rows <= 0) return mma ? "attn_sparse_vs_mma" : simt;
  const int32_t H = a.n_heads, N = a.pos0 + a.rows;
  const int32_t *dl = s.lists(std::max<size_t>(1, s.host_lists.size())), *doff = s.offsets(size_t(2) * H + 1);
  if (mma) {
    // the bitmaps the kernel masks with (columns | diagonals, [nH][words] each), from the host lists
    const int32_t words = (N + 31) / 32;
    qw::sparse::vs_bitmaps(s.host_bits, s.host_lists.data(), s.host_offsets.data(), H, words);
    uint32_t *db = s.bits(s.host_bits.size());
    cuda_check(cudaMemcpyAsync(db, s.host_bits.data(), s.host_bits.size() * sizeof(uint32_t), cudaMemcpyHostToDevice,
                               stream),
               "cudaMemcpyAsync", __FILE__, __LINE__);
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

const char *run_sparse_prefill(const SparseAttnArgs &a, const qw::SparseBudget &b, SparseScratch &s, cudaStream_t stream,
                               std::vector<std::vector<int32_t>> *cols, std::vector<std::vector<int32_t>> *diags,
                               SparseAttend arm) {
  if (a.head_dim > kMaxD || a.head_dim % 2) throw CudaError("sparse prefill: head_dim must be even and <= 128");
  if (a.rows <= 0) return run_sparse_attend(a, s, stream, arm);  // nothing to run: the name alone
  const int32_t N = a.pos0 + a.rows, H = a.n_heads, lq = std::min(qw::kSparseLastQ, a.rows);
  // 1. estimate
  float *sc = s.scores(size_t(2) * H * N);
  cuda_check(cudaMemsetAsync(sc, 0, size_t(2) * H * N * sizeof(float), stream), "cudaMemsetAsync", __FILE__, __LINE__);
  launch(sparse_estimate_kernel, dim3(lq, H), dim3(32), 0, stream, a, (int)lq, sc);
  QWC_LAUNCH_CHECK("sparse_estimate_kernel");
  // 2. select on the host
  s.host_scores.resize(size_t(2) * H * N);
  cuda_check(cudaMemcpyAsync(s.host_scores.data(), sc, s.host_scores.size() * sizeof(float), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync", __FILE__, __LINE__);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize", __FILE__, __LINE__);
  s.host_lists.clear();
  s.host_offsets.assign(size_t(2) * H + 1, 0);
  if (cols) cols->assign(size_t(H), {});
  if (diags) diags->assign(size_t(H), {});
  for (int32_t h = 0; h < H; ++h) {
    const auto c = qw::sparse::top_lines(s.host_scores.data() + size_t(h) * N, N, b.sink, b.vertical);
    const auto g = qw::sparse::top_lines(s.host_scores.data() + (size_t(H) + h) * N, N, b.local, b.slash);
    s.host_offsets[size_t(2 * h)] = int32_t(s.host_lists.size());
    s.host_lists.insert(s.host_lists.end(), c.begin(), c.end());
    s.host_offsets[size_t(2 * h + 1)] = int32_t(s.host_lists.size());
    s.host_lists.insert(s.host_lists.end(), g.begin(), g.end());
    if (cols) (*cols)[size_t(h)] = c;
    if (diags) (*diags)[size_t(h)] = g;
  }
  s.host_offsets[size_t(2 * H)] = int32_t(s.host_lists.size());
  int32_t *dl = s.lists(std::max<size_t>(1, s.host_lists.size())), *doff = s.offsets(s.host_offsets.size());
  cuda_check(cudaMemcpyAsync(dl, s.host_lists.data(), s.host_lists.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync", __FILE__, __LINE__);
  cuda_check(cudaMemcpyAsync(doff, s.host_offsets.data(), s.host_offsets.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync", __FILE__, __LINE__);
  // 3. attend (the host vectors stay alive in the scratch until the next call: the copies above read them)
  return run_sparse_attend(a, s, stream, arm);
}

}  // namespace qwc
