// gemv_mma.cu — decode GEMV on tensor cores (bf16 weights, batch 1..16): y[b, r] = sum_k W[r, k] * a[b, k].
//
// Why: the CUDA-core GEMV (gemv.cu) does batch x 8 FMAs per 16-byte weight load, so at batch 8-16 it is bound by
// FMA issue and shared-memory reads, not by DRAM, and batch 16 ran slower than batch 8 (cuda/dev/NOTES.md).
// mma.sync m16n8k16 does 16 x 8 x 16 multiply-adds per warp instruction: weights stream once for all rows.
//
// Layout trick (no reshuffle at load): a dot product does not care in which order k is visited, as long as the
// weights and the activations use the same order. Lane (gid = lane / 4, tig = lane % 4) loads the 8 contiguous
// weights k = 8 tig .. 8 tig + 7 of rows gid and gid + 8 of a 16-row tile (one 16-byte load each) and the same 8
// activations of token gid. Two mma.sync k16 steps consume them: the first takes elements 0-3, the second 4-7,
// and both sides of each product come from the same k. A warp thus reads 32 columns of 16 rows per step.
//
// Shapes: W [rows, cols] bf16 row-major, cols % 32 == 0; activations staged per K tile in shared memory
// act_s [NB = 8 NT][stride] bf16 (the prologue of gemv_parts.cuh: bf16 copy or fused RMSNorm);
// a warp owns RW = 16 MT rows and every ks-th 32-column chunk (ks warps split K inside the block).
// Determinism and batch invariance: a chunk goes to K part (global chunk index mod ks) whatever the K tile, each
// warp visits its chunks in increasing order, the ks partials are added in a fixed order, and (MT, ks) depend
// on the matrix shape only. Each output column (token) of an mma is computed independently of the others, so a
// sequence gets the same bits alone or in a batch of 16.
#include "gemv.cuh"
#include "gemv_parts.cuh"
#include "gemv_pick.hpp"

#include <algorithm>

namespace qwc {

namespace {

using namespace gemv_detail;

// act_s row stride = round_up(kt, 64) + 32 elements: consecutive token rows start 64 bytes apart modulo 128, so
// the 8 lanes of one 16-byte load phase (2 tokens x 4 lanes x 16 bytes) hit 32 distinct banks.
constexpr int kPad = 32;
// Dynamic shared memory budget (no opt-in needed below 48 KB with the static rstd_s).
constexpr int kMmaSmem = 46 * 1024;

__device__ __forceinline__ void mma_bf16_16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The end of a warp: its fragments to shared memory (c0, c1 = row gid, tokens 2 tig, 2 tig + 1;
// c2, c3 = row gid + 8, the same tokens), the ks K parts of a row group added in a fixed order, then the epilogue.
// Split over blocks (gridDim.y = P > 1, gemv_pick.hpp gemv_mma_split): each block's row-group sum goes to
// a.mws.part[tile][part], and the last of the tile's P blocks to finish (a counter per tile) adds the P sums in part
// order, resets the counter for the next launch and runs the epilogue: the same order whichever block is last.
template <int NT, int MT>
__device__ __forceinline__ void mma_finish(const GemvArgs &a, const float (&acc)[MT][NT][4], float *red_s, int ks,
                                           int kpart, int64_t row0) {
  constexpr int NB = 8 * NT, RW = 16 * MT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int64_t rows = a.w.rows;
  float *mine = red_s + warp * (RW * NB);
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const int r = 16 * m + gid, b = 8 * t + 2 * tig;
      mine[r * NB + b] = acc[m][t][0];
      mine[r * NB + b + 1] = acc[m][t][1];
      mine[(r + 8) * NB + b] = acc[m][t][2];
      mine[(r + 8) * NB + b + 1] = acc[m][t][3];
    }
  __syncthreads();
  if (kpart != 0 || row0 >= rows) return;
  if (ks > 1) {
    for (int i = lane; i < RW * NB; i += 32) {
      float s = mine[i];
      for (int j = 1; j < ks; ++j) s += red_s[(warp + j) * (RW * NB) + i];
      mine[i] = s;
    }
  }
  __syncwarp();
  if (gridDim.y > 1) {
    const int P = gridDim.y;
    const int64_t tile = row0 / RW;
    float *part = a.mws.part + (size_t)tile * P * (RW * NB);
    for (int i = lane; i < RW * NB; i += 32) part[(size_t)blockIdx.y * (RW * NB) + i] = mine[i];
    __threadfence();
    __syncwarp();
    int last = 0;
    if (lane == 0) last = atomicAdd(a.mws.cnt + tile, 1) == P - 1;
    if (!__shfl_sync(0xffffffffu, last, 0)) return;
    __threadfence();
    for (int i = lane; i < RW * NB; i += 32) {
      float v = 0.f;
      for (int q = 0; q < P; ++q) v += __ldcg(part + (size_t)q * (RW * NB) + i);
      mine[i] = v;
    }
    if (lane == 0) a.mws.cnt[tile] = 0;  // ready for the next launch (kernel boundaries order it)
    __syncwarp();
  }
  const int B = a.batch;
  if (a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) {
    for (int i = lane; i < (RW / 2) * B; i += 32) {
      const int p = i / B, b = i - p * B;
      const int64_t row = row0 + 2 * p;
      if (row + 1 >= rows) continue;
      const float v0 = mine[(2 * p) * NB + b], v1 = mine[(2 * p + 1) * NB + b];
      if (a.epi == GEMV_EPI_SWIGLU) epilogue_swiglu(a, row / 2, b, v0, v1);
      else epilogue_qkv_rope(a, row, b, v0, v1);
    }
  } else {
    for (int i = lane; i < RW * B; i += 32) {
      const int r = i / B, b = i - r * B;
      if (row0 + r < rows) epilogue_one(a, row0 + r, b, mine[r * NB + b]);
    }
  }
}

// SUB: 32-column sub-chunks per chunk. SUB = 1 (QW_GEMV_MMA_WIDE=0, the first version): a quad reads 64 contiguous
// bytes of a row per chunk, U chunks of a warp ks x 64 bytes apart. SUB = 4: a chunk is 128 columns, the quad's four
// loads of a row cover 256 contiguous bytes, issued back to back. Why: the first version streamed at 2.1-2.2 TB/s on
// 7B gate_up / down where the CUDA-core kernel (a warp reads 512 contiguous bytes of a row) reaches 2.5-2.8, and
// keeping the next round in flight (gemv_walk_pipe, fourteenth run) did not help (gate_up 122.7 -> 129.7 us): the
// loads are there, the access pattern was the suspect. Fifteenth run (lab, with QW_GEMV_MMA_PICK=1): no gain (see
// pick_mma), so opt-in, QW_GEMV_MMA_WIDE=1.
template <int NT, int MT, int SUB, int U, bool XS = false>
__global__ void __launch_bounds__(kThreads, 2) gemv_mma_kernel(const GemvArgs a, const int kt, const int stride,
                                                               const int ks) {
  constexpr int NB = 8 * NT;
  constexpr int RW = 16 * MT;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *act_s = reinterpret_cast<__nv_bfloat16 *>(smem_raw);                   // [NB][stride]
  float *red_s = reinterpret_cast<float *>(smem_raw + (size_t)NB * stride * 2);          // [kWarps][RW * NB]
  __shared__ float rstd_s[16];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
  const int64_t rows = a.w.rows, cols = a.w.cols;
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int64_t row0 = ((int64_t)blockIdx.x * (kWarps / ks) + rgroup) * RW;

  // Row pointers at this lane's 8 columns; rows past the end are clamped (loaded, never written).
  const __nv_bfloat16 *wrow[MT][2];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      wrow[m][h] = reinterpret_cast<const __nv_bfloat16 *>(a.w.data) + min(row0 + 16 * m + 8 * h + gid, rows - 1) * cols +
                   8 * tig;

  float acc[MT][NT][4];
#pragma unroll
  for (int m = 0; m < MT; ++m)
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[m][t][e] = 0.f;

  uint4 wv[U][SUB][MT][2];
  auto load = [&](int u, int64_t col) {
#pragma unroll
    for (int q = 0; q < SUB; ++q)
#pragma unroll
      for (int m = 0; m < MT; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h) wv[u][q][m][h] = ld_stream16(wrow[m][h] + col + 32 * q);
  };
  auto use = [&](int u, int c) {
#pragma unroll
    for (int q = 0; q < SUB; ++q)
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const uint4 bv = *reinterpret_cast<const uint4 *>(act_s + (8 * t + gid) * stride + 32 * (SUB * c + q) + 8 * tig);
#pragma unroll
        for (int m = 0; m < MT; ++m) {
          const uint4 *w = wv[u][q][m];
          mma_bf16_16816(acc[m][t], w[0].x, w[1].x, w[0].y, w[1].y, bv.x, bv.y);
          mma_bf16_16816(acc[m][t], w[0].z, w[1].z, w[0].w, w[1].w, bv.z, bv.w);
        }
      }
  };
  // XS, split over blocks (gridDim.y parts): this block's contiguous range of the chunks, still indexed globally.
  int64_t kbeg = 0, kend = cols;
  if constexpr (XS) {
    const int64_t nch = cols / (32 * SUB), P = gridDim.y;
    kbeg = 32 * SUB * (nch * blockIdx.y / P);
    kend = 32 * SUB * (nch * (blockIdx.y + 1) / P);
  }
  // A warp whose row group starts past the end skips the chunks but joins every staging barrier (gemv_walk).
  gemv_walk<NB, 32 * SUB, U>(a, act_s, rstd_s, kt, stride, row0, kpart, ks, load, use, kbeg, kend);
  mma_finish<NT, MT>(a, acc, red_s, ks, kpart, row0);
}

int g_force_mma = -1;  // -1: QW_GEMV_MMA from the environment (default off until the toggle lands), 0: off, 1: on

// (MT, ks) from the shape alone: the first rule (the largest row tile that still gives >= 2 blocks per SM, else MT = 1
// with the smallest ks that gives >= 1 block per SM), or with QW_GEMV_MMA_PICK=1 gemv_pick.hpp's balance rule (the
// most even blocks per SM; fifteenth run, lab with QW_GEMV_MMA_WIDE=1 against the first version, H100: 7B gate_up b1
// 136.0 against 124.6 us, qkv 24.1 / 21.4, o 19.7 / 20.2, down 66.2 / 67.5, down b16 129.4 / 135.3: no gain, so
// opt-in). False when even MT = 1, ks = 8 leaves SMs idle (small matrices: launch_split, or the CUDA cores).
bool pick_mma(int64_t rows, int &mt, int &ks) {
  const int64_t sms = sm_count();
  if (env_opt_in("QW_GEMV_MMA_PICK", "the first rule (>= 2 blocks per SM at the largest row tile)",
                 "the most even blocks per SM (gemv_pick.hpp)")) {
    const qw::GemvMmaPick p = qw::gemv_mma_pick(rows, sms);
    mt = p.mt;
    ks = p.ks;
    return p.mt > 0;
  }
  for (int k = 1; k <= kWarps; k *= 2)
    if (ceil_div(rows, (int64_t)(kWarps / k) * 32) >= 2 * sms) { mt = 2; ks = k; return true; }
  for (int k = 1; k <= kWarps; k *= 2)
    if (ceil_div(rows, (int64_t)(kWarps / k) * 16) >= sms) { mt = 1; ks = k; return true; }
  return false;
}

// The K tile the kernel stages: kt columns (a multiple of `align`, itself a multiple of the chunk; the whole row
// when it fits), act_s rows padded to stride, then the warps' reduction rows; bytes of dynamic shared memory.
struct MmaTile {
  int kt, stride;
  size_t smem;
};
MmaTile mma_tile(int64_t cols, int NB, int RW, int align) {
  const int red_bytes = kWarps * RW * NB * 4;
  const int cap = ((kMmaSmem - red_bytes) / (NB * 2) - kPad) / align * align;
  const int kt = (int)std::min<int64_t>(cols, cap);
  const int stride = (kt + 63) / 64 * 64 + kPad;
  return {kt, stride, (size_t)NB * stride * 2 + red_bytes};
}

// U: chunks in flight per warp (SUB = 1: the first version's 4 / 2; SUB = 4: one chunk of 4 x 16 bytes a row).
template <int NT, int MT, int SUB>
void launch_mma(const GemvArgs &a, int ks, cudaStream_t s) {
  constexpr int NB = 8 * NT, RW = 16 * MT;
  constexpr int U = SUB > 1 ? 1 : MT == 1 ? 4 : 2;
  const MmaTile t = mma_tile(a.w.cols, NB, RW, 64 * SUB);  // whole chunks, % 64
  const int grid = ceil_div(a.w.rows, (int64_t)(kWarps / ks) * RW);
  launch(gemv_mma_kernel<NT, MT, SUB, U>, grid, kThreads, t.smem, s, a, t.kt, t.stride, ks);
}

// Split over blocks (small matrices: no (MT, ks) gives one block per SM): one 16-row tile per block, ks = 8, 32-column
// chunks, gridDim.y = parts; a.mws holds the partial sums ([tile][part][16 x NB] fp32) and a counter per tile.
template <int NT>
void launch_mma_split(const GemvArgs &a, int parts, cudaStream_t s) {
  constexpr int NB = 8 * NT, RW = 16;
  const int64_t nch = a.w.cols / 32;
  const MmaTile t = mma_tile(32 * ((nch + parts - 1) / parts), NB, RW, 64);
  const dim3 grid((unsigned)ceil_div(a.w.rows, (int64_t)RW), (unsigned)parts);
  launch(gemv_mma_kernel<NT, 1, 1, 4, true>, grid, kThreads, t.smem, s, a, t.kt, t.stride, kWarps);
}

int g_force_split = -1;  // -1: QW_GEMV_MMA_SPLIT from the environment (default on), 0: off, 1: on

// On by default since the fifteenth run (H100, 0.5B bf16 gemv = marlin, tg128: b16 2856 -> 5860 tok/s, b8 3219 ->
// 4856, b1 1085 -> 796: the split kernel's 13-15 us against the CUDA cores' 8-11 us per matrix at b1).
bool split_enabled() {
  if (g_force_split < 0)
    g_force_split = env_switch_on("QW_GEMV_MMA_SPLIT", "small bf16 matrices on the CUDA-core GEMV",
                                  "small bf16 matrices on tensor cores, K split over blocks") ? 1 : 0;
  return g_force_split == 1;
}

// The split of a matrix on this device: parts (0: none), 16-row tiles (one counter each) and the partials' bytes
// ([tile][part][16 rows x 16 tokens] fp32). One plan for the launch and for the session's scratch size.
struct SplitPlan {
  int parts = 0;
  int32_t tiles = 0;
  size_t bytes = 0;
};
SplitPlan split_plan(int64_t rows, int64_t cols) {
  const qw::GemvMmaSplit sp = qw::gemv_mma_split(rows, cols / 32, sm_count());
  if (sp.parts == 0) return {};
  const int32_t tiles = (int32_t)((rows + 15) / 16);
  return {sp.parts, tiles, (size_t)tiles * sp.parts * 16 * 16 * sizeof(float)};
}

// A matrix too small for one block per SM: the split over blocks where enabled, it has a plan and the session passed
// scratch large enough (CudaSession::ensure_marlin sizes it with gemv_mma_split_bytes); else nullptr (the CUDA-core
// kernel).
const char *launch_split(const GemvArgs &a, cudaStream_t s) {
  if (!split_enabled() || !a.mws.part || !a.mws.cnt) return nullptr;
  const SplitPlan p = split_plan(a.w.rows, a.w.cols);
  if (p.parts == 0 || p.bytes > a.mws.part_bytes || p.tiles > a.mws.cnt_n) return nullptr;
  if (a.batch > 8) launch_mma_split<2>(a, p.parts, s);
  else launch_mma_split<1>(a, p.parts, s);
  QWC_LAUNCH_CHECK("launch_gemv_mma (split)");
  static const char *names[9] = {"", "", "gemv_mma_x2", "gemv_mma_x3", "gemv_mma_x4", "gemv_mma_x5", "gemv_mma_x6",
                                 "gemv_mma_x7", "gemv_mma_x8"};
  return names[p.parts];
}

}  // namespace

size_t gemv_mma_split_bytes(int64_t rows, int64_t cols, int32_t *tiles) {
  const SplitPlan p = split_plan(rows, cols);
  if (tiles) *tiles = p.tiles;
  return p.bytes;
}
void gemv_force_mma_split(int on) { g_force_split = on; }

void gemv_force_mma(int on) { g_force_mma = on; }

bool gemv_mma_enabled() {
  if (g_force_mma < 0) {
    g_force_mma = env_opt_in("QW_GEMV_MMA", "the CUDA-core decode GEMVs", "bf16 decode GEMVs on mma.sync tensor cores") ? 1 : 0;
  }
  return g_force_mma == 1;
}

const char *launch_gemv_mma(const GemvArgs &a, cudaStream_t s) {
  if (!(a.tc || gemv_mma_enabled())) return nullptr;
  if (a.w.type != WT_BF16 || (a.w.cols % 32) != 0 || (a.pro == GEMV_PRO_BF16 && (a.act_ld % 8) != 0)) return nullptr;
  int mt = 1, ks = 1;
  if (!pick_mma(a.w.rows, mt, ks)) return launch_split(a, s);
  static const char *names[2][2][4] = {
      {{"gemv_mma_m1", "gemv_mma_m1k2", "gemv_mma_m1k4", "gemv_mma_m1k8"},
       {"gemv_mma_m2", "gemv_mma_m2k2", "gemv_mma_m2k4", "gemv_mma_m2k8"}},
      {{"gemv_mma_w_m1", "gemv_mma_w_m1k2", "gemv_mma_w_m1k4", "gemv_mma_w_m1k8"},
       {"gemv_mma_w_m2", "gemv_mma_w_m2k2", "gemv_mma_w_m2k4", "gemv_mma_w_m2k8"}}};
  const bool two = a.batch > 8;
  const bool wide = (a.w.cols % 128) == 0 &&
                    env_opt_in("QW_GEMV_MMA_WIDE", "32-column chunks, the first version",
                                  "128-column chunks: 256 contiguous bytes of a row per quad");
  if (wide) {
    if (mt == 2) two ? launch_mma<2, 2, 4>(a, ks, s) : launch_mma<1, 2, 4>(a, ks, s);
    else two ? launch_mma<2, 1, 4>(a, ks, s) : launch_mma<1, 1, 4>(a, ks, s);
  } else {
    if (mt == 2) two ? launch_mma<2, 2, 1>(a, ks, s) : launch_mma<1, 2, 1>(a, ks, s);
    else two ? launch_mma<2, 1, 1>(a, ks, s) : launch_mma<1, 1, 1>(a, ks, s);
  }
  QWC_LAUNCH_CHECK("launch_gemv_mma");
  const int ki = ks >= 8 ? 3 : ks >= 4 ? 2 : ks >= 2 ? 1 : 0;
  return names[wide][mt - 1][ki];
}

}  // namespace qwc
