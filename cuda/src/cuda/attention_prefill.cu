// attention_prefill.cu — prefill (flash) attention: the mma.sync kernel and its variants (tree steps, their key
// splits, block-sparse, DCA), the SIMT reference kernel, and the launchers; see attention.cuh. On sm_90 the wgmma
// kernel (opt/attention/fa3_prefill.cuh) takes the shapes it supports.
//
// Key splits of a tree step: a verify pass has few rows (16–64 tree tokens) but a whole context of keys; one CTA per
// query head walking every key tile left 104 of 132 SMs idle (7B, 1k context: 88 us a layer against 15 for a decode
// step's split-KV attention). The tiles of the one query tile are cut into about 2 x SMs / n_heads splits (SPLIT,
// blockIdx.z = split), each leaving its unnormalized o and its m, l in a workspace, and prefill_attn_combine_kernel
// merges them: out = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s with M = max_s m_s, the online-softmax algebra
// that runs inside a CTA across its tiles (other rounding than one CTA: fp32 partial sums).
#include "attention.cuh"
#include "fa3_prefill.cuh"
#include "mma_sync.cuh"
#include "sparse_budget.hpp"

#include <algorithm>

namespace qwc {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegBig = -1e30f;

// ------------------------------------------------------------------------------------------------
// Prefill, tensor cores: grid (ceil(n/64), nH), 128 threads; warp w owns query rows 16w..16w+15.
// ------------------------------------------------------------------------------------------------
constexpr int kBQ = 64, kBK = 64;
constexpr int kMaxTreeSplit = 64;  // a tree step's key splits: bounds the workspace (64 x 64 rows x nH x (d + 2) floats)
static_assert(kBQ == qw::kSparseBlock && kBK == qw::kSparseBlock, "block-sparse: a query / key block is one tile");

// TREE: a tree verification step (a.tree.bits set): the ancestor mask on top of the causal one; instantiated
// apart so that an ordinary prefill runs the same code as before it existed.
// BLOCKS: block-sparse prefill (a.blocks set; opt/sparse_prefill/key_blocks.cuh), instantiated apart as TREE. CTA
// (x, h) = query block a.blocks.qb0 + x (64 positions aligned to position 0: the step's first CTA has fewer rows when
// pos0 % 64 != 0) of query head h; its key tiles are that block's selected key blocks, ascending, instead of every
// causal tile. One CTA per query head as in the dense kernel, so each head keeps its own selection: no union over the
// G heads of a KV head, no key visited beyond the selection (sparse_cost.hpp counts exactly those).
// Exactness: with every block kb <= qb selected a row sees tiles 0..qb in order, as in the dense kernel, where any
// further tile of its CTA is fully masked for it (alpha = 1, p = 0: m, l, o unchanged); so z equals dense bit for bit.
// SPLIT (tree steps of at most one query tile, a.split_ws set; prefill_attn_tree_split): CTA (0, h, z) walks only key
// tiles [z * a.split_tiles, +a.split_tiles) and leaves its unnormalized o, m, l in a.split_ws; prefill_attn_combine
// merges the splits (log-sum-exp) into z. One CTA per head walking every key tile serially took 88 us per 7B layer
// at 1k context (28 CTAs on 132 SMs), most of a 16-token verify pass's attention.
// DCA (dca = on; a.dca set; opt/dca/dca_tiles.cuh): the tiles of the three parts' key ranges, each part with its
// query variant (reloaded into q_s where the part changes) and a (row, key) counted only in its own part.
// VS: vertical-slash prefill (a.lines set; opt/sparse_prefill/key_lines.cuh, vs_tiles.hpp). CTAs as BLOCKS; a query
// block walks the key blocks its selected diagonals reach (masked to the selected diagonals and columns), then its
// columns gathered 64 at a time (masked to those outside the first tiles): each selected key once, in one softmax.
// Its state lives in dynamic shared memory after the K/V ring (vs_smem_bytes).
template <int D, bool TREE, bool BLOCKS = false, bool SPLIT = false, bool DCA = false, bool VS = false>
__global__ void __launch_bounds__(128) prefill_attn_mma_kernel(const PrefillAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  constexpr int LD = D + 8;  // padded row (bf16 elements): conflict-free ldmatrix
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *q_s = reinterpret_cast<__nv_bfloat16 *>(smem_raw);  // [kBQ][LD]
  __nv_bfloat16 *k_s = q_s + kBQ * LD;                                 // [2][kBK][LD]
  __nv_bfloat16 *v_s = k_s + 2 * kBK * LD;                             // [2][kBK][LD]

  const int qt = blockIdx.x, h = blockIdx.y;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int G = a.n_heads / a.n_kv, kvh = h / G;
  constexpr bool QB = BLOCKS || VS;  // CTA x = query block qb0 + x, its positions aligned to 0
  const int qb0 = BLOCKS ? a.blocks.qb0 : (VS ? a.lines.qb0 : 0);
  const int q_row0 = QB ? (qb0 + qt) * kBQ - a.pos0 : qt * kBQ;  // QB: may be < 0
  const int qdim = a.n_heads * D;
  const int kv_end = a.pos0 + min(a.n, q_row0 + kBQ);  // keys needed by this block
  const __nv_bfloat16 *kbase = a.kcache + ((int64_t)a.slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;
  const __nv_bfloat16 *vbase = a.vcache + ((int64_t)a.slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;

  // Q tile (DCA: loaded where each part begins, below)
  for (int i = threadIdx.x; i < (DCA ? 0 : kBQ * D / 8); i += 128) {
    const int r = i / (D / 8), c = (i % (D / 8)) * 8;
    const bool ok = q_row0 + r < a.n && (!QB || q_row0 + r >= 0);
    cp_async16(q_s + r * LD + c, a.q + (int64_t)(ok ? q_row0 + r : 0) * qdim + h * D + c, ok);
  }
  // the key tile of loop step `tile`: every causal one, or (BLOCKS) the query block's selected ones
  const int32_t *kblk = nullptr;
  int n_tiles;
  if constexpr (BLOCKS) {
    const int sel = h * a.blocks.nqb + qt;
    kblk = a.blocks.lists + a.blocks.offs[sel];
    n_tiles = a.blocks.offs[sel + 1] - a.blocks.offs[sel];
  } else if constexpr (DCA) {
    n_tiles = 0;  // set below from the ranges
  } else if constexpr (VS) {
    n_tiles = 0;  // set below by vs_setup
  } else {
    n_tiles = (kv_end + kBK - 1) / kBK;
  }
  [[maybe_unused]] qw::dca::TileRanges dr{};
  if constexpr (DCA) {
    dr = qw::dca::tile_ranges(a.dca.span, a.pos0 + q_row0, kv_end - 1, kBK);
    n_tiles = dr.tiles[0] + dr.tiles[1] + dr.tiles[2];
  }
  [[maybe_unused]] const int q0 = (qb0 + qt) * kBQ;  // QB: the query block's first position
  [[maybe_unused]] VsWalk vw{};
  if constexpr (VS) {
    const int nkb = (a.pos0 + a.n - 1) / kBK + 1;
    vw = vs_setup(a.lines, h, qb0 + qt, max(a.pos0, q0), kv_end - 1, nkb,
                  reinterpret_cast<unsigned char *>(v_s + 2 * kBK * LD));
    n_tiles = vw.n_tiles();
  }
  auto key_start = [&](int tile) -> int {  // first key of loop step `tile` (VS: -1 for a gather tile)
    if constexpr (BLOCKS) return kblk[tile] * kBK;
    else if constexpr (DCA) return qw::dca::tile_start(dr, tile, kBK);
    else if constexpr (VS) return vs_key_start(vw, tile);
    else return tile * kBK;
  };
  auto load_kv = [&](int tile, int buf) {
    const int k0 = key_start(tile);
    for (int i = threadIdx.x; i < kBK * D / 8; i += 128) {
      const int r = i / (D / 8), c = (i % (D / 8)) * 8;
      int key = k0 + r;
      bool ok = key < kv_end;
      if constexpr (VS) {
        if (k0 < 0) {  // a gather tile: the rows of its columns
          key = vs_gather_key(vw, tile, r);
          ok = key >= 0;
        }
      }
      const int64_t off = (int64_t)(ok ? key : 0) * D + c;
      cp_async16(k_s + (buf * kBK + r) * LD + c, kbase + off, ok);
      cp_async16(v_s + (buf * kBK + r) * LD + c, vbase + off, ok);
    }
    if constexpr (VS) vs_stage(vw, a.lines, h, q0, tile, buf);
  };
  const int t_lo = SPLIT ? blockIdx.z * a.split_tiles : 0;
  const int t_hi = SPLIT ? min(n_tiles, t_lo + a.split_tiles) : n_tiles;
  if (t_lo < t_hi) load_kv(t_lo, 0);
  cp_async_commit();

  const float scale = rsqrtf((float)D) * kLog2e;
  const int g = lane >> 2, t4 = lane & 3;
  const int qp0 = a.pos0 + q_row0 + warp * 16 + g;  // position of this thread's first row (second: +8)

  [[maybe_unused]] int qc[2] = {0, 0}, cur_v = -1;  // DCA: this thread's rows' chunks; the range q_s holds
  if constexpr (DCA) { qc[0] = qp0 / a.dca.span; qc[1] = (qp0 + 8) / a.dca.span; }
  uint32_t qa[D / 16][4];
  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m[2] = {kNegBig, kNegBig}, l[2] = {0.f, 0.f};

  for (int tile = t_lo; tile < t_hi; ++tile) {
    const int buf = (tile - t_lo) & 1;
    if (tile + 1 < t_hi) load_kv(tile + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    bool load_q = tile == t_lo;
    [[maybe_unused]] int part = 0;
    if constexpr (DCA) {
      const int v = qw::dca::tile_range(dr, tile);
      part = 2 - v;
      load_q = v != cur_v;
      if (load_q) {  // a new part: its query variant into q_s (every warp read the last one before this tile's barrier)
        const __nv_bfloat16 *src = v == 0 ? a.dca.inter : (v == 1 ? a.dca.succ : a.q);
        for (int i = threadIdx.x; i < kBQ * D / 8; i += 128) {
          const int r = i / (D / 8), c = (i % (D / 8)) * 8;
          uint4 x = make_uint4(0u, 0u, 0u, 0u);
          if (q_row0 + r < a.n) x = *reinterpret_cast<const uint4 *>(src + (int64_t)(q_row0 + r) * qdim + h * D + c);
          *reinterpret_cast<uint4 *>(q_s + r * LD + c) = x;
        }
        __syncthreads();
        cur_v = v;
      }
    }
    if (load_q) mma_q_frags<D, LD>(qa, q_s, warp, lane);
    const __nv_bfloat16 *kt = k_s + buf * kBK * LD;
    const __nv_bfloat16 *vt = v_s + buf * kBK * LD;
    const int k0 = key_start(tile);
    // DCA: a key's chunk is the tile's first key's or the next one (s >= 64)
    [[maybe_unused]] int kc0 = 0, kbound = 0;
    if constexpr (DCA) { kc0 = k0 / a.dca.span; kbound = (kc0 + 1) * a.dca.span; }
    // rows of this warp whose every key in the tile is masked can skip? (keep simple: compute all)
    float s[kBK / 8][4];
    mma_qk_tile<D, LD, kBK>(s, qa, kt, lane);
    // scale, mask, online softmax
    // VS, a contiguous tile: each of this thread's two rows as one 64-bit mask (vs_row_mask: a shift and a bit reversal
    // of the staged diagonal words, the column words, the causal cut), not two shared-memory bit lookups per element
    [[maybe_unused]] uint64_t vrow[2] = {0ull, 0ull};
    [[maybe_unused]] bool vcontig = false;
    if constexpr (VS) {
      vcontig = tile < vw.n_contig;
      if (vcontig) {
        const uint32_t *vb = vw.bits + buf * 8;
        vrow[0] = qw::sparse::vs_row_mask(qp0, q0, k0, vb, vb + qw::sparse::kVsDiagWords);
        vrow[1] = qw::sparse::vs_row_mask(qp0 + 8, q0, k0, vb, vb + qw::sparse::kVsDiagWords);
      }
    }
    float mx[2] = {kNegBig, kNegBig};
#pragma unroll
    for (int nt = 0; nt < kBK / 8; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int kp = k0 + nt * 8 + 2 * t4 + (c & 1);
        const int qp = qp0 + (c >> 1) * 8;
        bool vis;
        if constexpr (VS)
          vis = vcontig ? ((vrow[c >> 1] >> (nt * 8 + 2 * t4 + (c & 1))) & 1ull) != 0ull
                        : vs_visible(vw, tile, buf, q0, qp, nt * 8 + 2 * t4 + (c & 1));
        else vis = kp <= qp && kp < kv_end && (!TREE || qp - a.pos0 >= a.n || tree_visible(a.tree, qp - a.pos0, kp));
        if constexpr (DCA) vis = vis && qw::dca::tile_part(qc[c >> 1], kp, kc0, kbound) == part;
        const float v = vis ? s[nt][c] * scale : kNegBig;
        s[nt][c] = v;
        mx[c >> 1] = fmaxf(mx[c >> 1], v);
      }
    }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      const float mn = fmaxf(m[r], mx[r]);
      alpha[r] = exp2f(m[r] - mn);
      m[r] = mn;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= alpha[0]; o[i][1] *= alpha[0];
      o[i][2] *= alpha[1]; o[i][3] *= alpha[1];
    }
    uint32_t pa[kBK / 16][4];
#pragma unroll
    for (int nt = 0; nt < kBK / 8; ++nt) {
      float p[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        p[c] = s[nt][c] <= kNegBig ? 0.f : exp2f(s[nt][c] - m[c >> 1]);
      }
      // l accumulates the bf16-rounded probabilities that PV uses (consistent normalization)
      const uint32_t lo = pack_bf16(p[0], p[1]), hi = pack_bf16(p[2], p[3]);
      l[0] += bf16_lo(lo) + bf16_hi(lo);
      l[1] += bf16_lo(hi) + bf16_hi(hi);
      pa[nt >> 1][(nt & 1) * 2 + 0] = lo;
      pa[nt >> 1][(nt & 1) * 2 + 1] = hi;
    }
#pragma unroll
    for (int j = 0; j < kBK / 16; ++j) {
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, vt + (j * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
        mma_bf16(o[2 * dp], pa[j], b0, b1);
        mma_bf16(o[2 * dp + 1], pa[j], b2, b3);
      }
    }
    __syncthreads();  // buffer `buf` is refilled by the next iteration's prefetch
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  const int row_a = q_row0 + warp * 16 + g, row_b = row_a + 8;
  if constexpr (SPLIT) {
    cp_async_wait<0>();  // a split without tiles still has its Q copy in flight
    // split z, row r, head h: [o (D floats, unnormalized), m (log2 units), l] at ((z * n + r) * nH + h) * (D + 2)
    // (an even offset: float2 stores)
    const int64_t stride = D + 2;
    float *wa = a.split_ws + (((int64_t)blockIdx.z * a.n + row_a) * a.n_heads + h) * stride;
    float *wb = a.split_ws + (((int64_t)blockIdx.z * a.n + row_b) * a.n_heads + h) * stride;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      const int e = nt * 8 + 2 * t4;
      if (row_a < a.n) *reinterpret_cast<float2 *>(wa + e) = make_float2(o[nt][0], o[nt][1]);
      if (row_b < a.n) *reinterpret_cast<float2 *>(wb + e) = make_float2(o[nt][2], o[nt][3]);
    }
    if (t4 == 0 && row_a < a.n) *reinterpret_cast<float2 *>(wa + D) = make_float2(m[0], l[0]);
    if (t4 == 0 && row_b < a.n) *reinterpret_cast<float2 *>(wb + D) = make_float2(m[1], l[1]);
  } else {
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      const int col = h * D + nt * 8 + 2 * t4;
      if (row_a < a.n && (!QB || row_a >= 0))
        *reinterpret_cast<uint32_t *>(a.out + (int64_t)row_a * qdim + col) = pack_bf16(o[nt][0] / l[0], o[nt][1] / l[0]);
      if (row_b < a.n && (!QB || row_b >= 0))
        *reinterpret_cast<uint32_t *>(a.out + (int64_t)row_b * qdim + col) = pack_bf16(o[nt][2] / l[1], o[nt][3] / l[1]);
    }
  }
}

// Simple SIMT prefill: one warp per (query row, head), lane-per-key scores, lane-per-dim accumulation.
__global__ void prefill_attn_simt_kernel(const PrefillAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  extern __shared__ float qsh[];  // [4 warps][D]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row = blockIdx.x * 4 + warp, h = blockIdx.y;
  const int D = a.head_dim, G = a.n_heads / a.n_kv, kvh = h / G;
  float *qv = qsh + warp * D;
  const float scale = rsqrtf((float)D) * kLog2e;
  if (row < a.n)
    for (int e = lane; e < D; e += 32) qv[e] = __bfloat162float(a.q[(int64_t)row * a.n_heads * D + h * D + e]) * scale;
  __syncwarp();
  if (row >= a.n) return;
  const int len = a.pos0 + row + 1;
  const __nv_bfloat16 *kbase = a.kcache + ((int64_t)a.slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;
  const __nv_bfloat16 *vbase = a.vcache + ((int64_t)a.slot * a.n_kv + kvh) * (int64_t)a.max_ctx * D;
  float m = kNegBig, l = 0.f;
  float o[8];
  for (int e = 0; e < 8; ++e) o[e] = 0.f;
  for (int tile = 0; tile < len; tile += 32) {
    const int t = tile + lane;
    float s = kNegBig;
    const bool vis = t < len && tree_visible(a.tree, row, t);
    if (vis) {
      float acc = 0.f;
      for (int e = 0; e < D; ++e) acc = fmaf(qv[e], __bfloat162float(kbase[(int64_t)t * D + e]), acc);
      s = acc;
    }
    const float mn = fmaxf(m, warp_max(s));
    const float alpha = exp2f(m - mn);
    const float p = vis ? exp2f(s - mn) : 0.f;
    l = l * alpha + warp_sum(p);
    m = mn;
    for (int e = 0; e < 8; ++e) o[e] *= alpha;
    const int nk = min(32, len - tile);
    for (int j = 0; j < nk; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      for (int e = 0; e < 8; ++e) {
        const int dd = lane + 32 * e;
        if (dd < D) o[e] = fmaf(pj, __bfloat162float(vbase[(int64_t)(tile + j) * D + dd]), o[e]);
      }
    }
  }
  for (int e = 0; e < 8; ++e) {
    const int dd = lane + 32 * e;
    if (dd < D) a.out[(int64_t)row * a.n_heads * D + h * D + dd] = __float2bfloat16(o[e] / l);
  }
}

// The merge of a tree step's key splits: grid (n, nH), blockDim = D; thread e merges dimension e of (row, head)
// over the splits.
__global__ void prefill_attn_combine_kernel(const PrefillAttnArgs a) {
  pdl_wait();
  pdl_trigger();
  const int row = blockIdx.x, h = blockIdx.y, e = threadIdx.x, D = a.head_dim;
  const int64_t stride = D + 2, per_split = (int64_t)a.n * a.n_heads * stride;
  const float *w = a.split_ws + ((int64_t)row * a.n_heads + h) * stride;
  float mx = kNegBig;
  for (int s = 0; s < a.n_split; ++s) mx = fmaxf(mx, w[s * per_split + D]);
  float o = 0.f, l = 0.f;
  for (int s = 0; s < a.n_split; ++s) {
    const float *ws = w + s * per_split;
    const float f = ws[D] <= kNegBig ? 0.f : exp2f(ws[D] - mx);
    o += f * ws[e];
    l += f * ws[D + 1];
  }
  a.out[(int64_t)row * a.n_heads * D + h * D + e] = __float2bfloat16(o / l);
}

}  // namespace

const char *launch_prefill_attention_simt(const PrefillAttnArgs &a, cudaStream_t s) {
  if (a.head_dim > 256 || a.head_dim % 2) throw CudaError("prefill attention (simt): head_dim must be even and <= 256");
  dim3 grid((a.n + 3) / 4, a.n_heads);
  launch(prefill_attn_simt_kernel, grid, 128, 4 * a.head_dim * sizeof(float), s, a);
  QWC_LAUNCH_CHECK("launch_prefill_attention_simt");
  return "attn_prefill_simt";
}

template <int D, bool TREE, bool BLOCKS = false, bool SPLIT = false, bool DCA = false, bool VS = false>
static void launch_mma(dim3 grid, size_t smem, cudaStream_t s, const PrefillAttnArgs &a) {
  static SmemOptIn opt_in;  // per device (common.cuh)
  opt_in(prefill_attn_mma_kernel<D, TREE, BLOCKS, SPLIT, DCA, VS>, smem);
  launch(prefill_attn_mma_kernel<D, TREE, BLOCKS, SPLIT, DCA, VS>, grid, 128, smem, s, a);
}

bool vs_mma_supported(int32_t head_dim, int32_t keys) {
  return (head_dim == 64 || head_dim == 128) && keys > 0 && (keys - 1) / kBK + 1 <= kVsMaxKeyBlocks;
}

bool dca_prefill_tensor_cores_requested() {
  return env_switch_on("QW_DCA_MMA", "the SIMT DCA kernel", "the tensor-core DCA prefill");
}

bool dca_prefill_mma_supported(int32_t head_dim, int32_t span) {
  return (head_dim == 64 || head_dim == 128) && span >= kDcaMinSpan && dca_prefill_tensor_cores_requested();
}

const char *launch_prefill_attention_dca(const PrefillAttnArgs &a, cudaStream_t s) {
  if (!dca_prefill_mma_supported(a.head_dim, a.dca.span) || !a.dca.succ || !a.dca.inter)
    throw CudaError("dca prefill (mma): needs head_dim 64 or 128, chunk - local >= 64 and the three query variants");
  if (a.n <= 0) return "attn_dca_mma";
  const dim3 grid((a.n + kBQ - 1) / kBQ, a.n_heads);
  const size_t smem = (size_t)(kBQ + 4 * kBK) * (a.head_dim + 8) * sizeof(__nv_bfloat16);
  if (a.head_dim == 64) launch_mma<64, false, false, false, true>(grid, smem, s, a);
  else launch_mma<128, false, false, false, true>(grid, smem, s, a);
  QWC_LAUNCH_CHECK("launch_prefill_attention_dca");
  return "attn_dca_mma";
}

int32_t prefill_attn_tree_split(int32_t n, int32_t n_heads, int32_t kv_len, int32_t sms) {
  if (n <= 0 || n > kBQ || n_heads <= 0 || kv_len <= 0) return 1;
  if (!env_switch_on("QW_TREE_SPLIT", "one CTA per head walks every key tile", "split the keys of a tree step"))
    return 1;
  const int tiles = (kv_len + kBK - 1) / kBK;
  const int want = std::max(1, std::min({(2 * sms + n_heads - 1) / n_heads, tiles, kMaxTreeSplit}));
  const int per = (tiles + want - 1) / want;  // tiles per split; then the count that leaves none empty
  return (tiles + per - 1) / per;
}

size_t prefill_attn_split_ws_floats(int32_t n, int32_t n_heads, int32_t head_dim, int32_t n_split) {
  return (size_t)n_split * n * n_heads * (head_dim + 2);
}

// A tree step of one query tile with a split workspace: n_split CTAs per head, then the merge (file header).
static const char *launch_tree_split(const PrefillAttnArgs &a0, size_t smem, cudaStream_t s) {
  PrefillAttnArgs a = a0;
  const int tiles = (a.pos0 + a.n + kBK - 1) / kBK;
  a.split_tiles = (tiles + a.n_split - 1) / a.n_split;
  a.n_split = (tiles + a.split_tiles - 1) / a.split_tiles;  // <= a0.n_split: the workspace holds it
  const dim3 grid(1, a.n_heads, a.n_split);
  if (a.head_dim == 64) launch_mma<64, true, false, true>(grid, smem, s, a);
  else launch_mma<128, true, false, true>(grid, smem, s, a);
  QWC_LAUNCH_CHECK("launch_prefill_attention (tree split)");
  launch(prefill_attn_combine_kernel, dim3(a.n, a.n_heads), dim3(a.head_dim), 0, s, a);
  QWC_LAUNCH_CHECK("launch_prefill_attention (tree split combine)");
  return "attn_prefill_mma:tree-split";
}

// On an sm_90 device the sm_90a kernel (opt/attention/fa3_prefill.cuh) runs unless QW_FLASH_WGMMA=0; where it cannot
// run the shape (head dim, tree step, block-sparse) the mma.sync kernel runs and its name shows in the op record.
const char *launch_prefill_attention(const PrefillAttnArgs &a, cudaStream_t s) {
  if (a.n > 0 && !a.blocks.offs && !a.lines.offs && fa3_prefill_requested() && !*fa3_prefill_unsupported_here(a))
    return launch_prefill_attention_fa3(a, s);
  return launch_prefill_attention_mma(a, s);
}

const char *launch_prefill_attention_mma(const PrefillAttnArgs &a, cudaStream_t s) {
  if (a.blocks.offs) {  // block-sparse (opt/sparse_prefill/key_blocks.cuh): the mma kernel only, never the SIMT one
    if (a.head_dim != 64 && a.head_dim != 128) throw CudaError("block-sparse prefill (mma): head_dim must be 64 or 128");
    if (a.tree.bits) throw CudaError("block-sparse prefill (mma): not with a tree verification step");
    if (a.n <= 0 || a.blocks.nqb <= 0) return "attn_sparse_bs_mma";
    const dim3 grid(a.blocks.nqb, a.n_heads);
    const size_t smem = (size_t)(kBQ + 4 * kBK) * (a.head_dim + 8) * sizeof(__nv_bfloat16);
    if (a.head_dim == 64) launch_mma<64, false, true>(grid, smem, s, a);
    else launch_mma<128, false, true>(grid, smem, s, a);
    QWC_LAUNCH_CHECK("launch_prefill_attention (block-sparse)");
    return "attn_sparse_bs_mma";
  }
  if (a.lines.offs) {  // vertical-slash (opt/sparse_prefill/key_lines.cuh): the mma kernel only
    if (!vs_mma_supported(a.head_dim, a.pos0 + a.n) || a.tree.bits || a.blocks.offs)
      throw CudaError("vertical-slash prefill (mma): head_dim 64 or 128, at most 2M keys, no tree step or key blocks");
    if (a.n <= 0 || a.lines.nqb <= 0) return "attn_sparse_vs_mma";
    const dim3 grid(a.lines.nqb, a.n_heads);
    const size_t smem = (size_t)(kBQ + 4 * kBK) * (a.head_dim + 8) * sizeof(__nv_bfloat16) +
                        vs_smem_bytes((a.pos0 + a.n - 1) / kBK + 1);
    if (a.head_dim == 64) launch_mma<64, false, false, false, false, true>(grid, smem, s, a);
    else launch_mma<128, false, false, false, false, true>(grid, smem, s, a);
    QWC_LAUNCH_CHECK("launch_prefill_attention (vertical-slash)");
    return "attn_sparse_vs_mma";
  }
  if (a.n <= 0) return "attn_prefill_mma";
  dim3 grid((a.n + kBQ - 1) / kBQ, a.n_heads);
  if (a.head_dim == 64 || a.head_dim == 128) {
    const int D = a.head_dim;
    const size_t smem = (size_t)(kBQ + 4 * kBK) * (D + 8) * sizeof(__nv_bfloat16);
    const bool tree = a.tree.bits != nullptr;
    if (tree && a.split_ws && a.n_split > 1 && a.n <= kBQ) return launch_tree_split(a, smem, s);
    if (D == 64 && !tree) launch_mma<64, false>(grid, smem, s, a);
    else if (D == 64) launch_mma<64, true>(grid, smem, s, a);
    else if (!tree) launch_mma<128, false>(grid, smem, s, a);
    else launch_mma<128, true>(grid, smem, s, a);
    QWC_LAUNCH_CHECK("launch_prefill_attention");
    return tree ? "attn_prefill_mma:tree" : "attn_prefill_mma";
  }
  return launch_prefill_attention_simt(a, s);
}

}  // namespace qwc
