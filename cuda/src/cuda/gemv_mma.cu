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

// PIPE: gemv_walk_pipe (2U register slots, the next round in flight), else gemv_walk (the first version: a round
// loaded right before its mmas). Both visit the same chunks in the same order: the same bits.
template <int NT, int MT, int U, bool PIPE>
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

  // 2U register slots: gemv_walk_pipe keeps the warp's next round of U chunks in flight while it runs the mmas of the
  // current one (gemv_walk loads a round right before using it: a full memory latency per round, 7B b1 at 2.15 TB/s
  // in the thirteenth run). Slots are compile-time after unrolling, so wv stays in registers.
  uint4 wv[PIPE ? 2 * U : U][MT][2];
  auto load = [&](int u, int64_t col) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h) wv[u][m][h] = ld_stream16(wrow[m][h] + col);
  };
  auto use = [&](int u, int c) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const uint4 bv = *reinterpret_cast<const uint4 *>(act_s + (8 * t + gid) * stride + 32 * c + 8 * tig);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        mma_bf16_16816(acc[m][t], wv[u][m][0].x, wv[u][m][1].x, wv[u][m][0].y, wv[u][m][1].y, bv.x, bv.y);
        mma_bf16_16816(acc[m][t], wv[u][m][0].z, wv[u][m][1].z, wv[u][m][0].w, wv[u][m][1].w, bv.z, bv.w);
      }
    }
  };
  // A warp whose row group starts past the end skips the chunks but joins every staging barrier (gemv_walk_pipe).
  if constexpr (PIPE) gemv_walk_pipe<NB, 32, U>(a, act_s, rstd_s, kt, stride, row0, kpart, ks, load, use);
  else gemv_walk<NB, 32, U>(a, act_s, rstd_s, kt, stride, row0, kpart, ks, load, use);

  // Fragments -> shared memory: c0,c1 = (row gid, tokens 2 tig, 2 tig + 1), c2,c3 = (row gid + 8, same tokens).
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

int g_force_mma = -1;  // -1: QW_GEMV_MMA from the environment (default off until the toggle lands), 0: off, 1: on

// (MT, ks) from the shape alone: the largest row tile that still gives >= 2 blocks per SM, else MT = 1 with the
// smallest ks that gives >= 1 block per SM. Returns false when even MT = 1, ks = 8 leaves SMs idle (small
// matrices: the CUDA-core kernel with its finer row split serves them).
bool pick_mma(int64_t rows, int &mt, int &ks) {
  const int64_t sms = sm_count();
  for (int k = 1; k <= kWarps; k *= 2)
    if (ceil_div(rows, (int64_t)(kWarps / k) * 32) >= 2 * sms) { mt = 2; ks = k; return true; }
  for (int k = 1; k <= kWarps; k *= 2)
    if (ceil_div(rows, (int64_t)(kWarps / k) * 16) >= sms) { mt = 1; ks = k; return true; }
  return false;
}

// U: chunks per round. Piped, 2U slots must stay within 128 registers (2 blocks per SM, which pick_mma counts on):
// MT 2 x NT 2 at U = 2 spilled (ptxas: 128 registers, 84 bytes of spill loads), at U = 1 it takes 88.
template <int NT, int MT, bool PIPE>
void launch_mma(const GemvArgs &a, int ks, cudaStream_t s) {
  constexpr int NB = 8 * NT, RW = 16 * MT;
  constexpr int U = MT == 1 ? 4 : (PIPE && NT == 2) ? 1 : 2;
  const int red_bytes = kWarps * RW * NB * 4;
  const int cap = ((kMmaSmem - red_bytes) / (NB * 2) - kPad) / 64 * 64;
  const int kt = (int)std::min<int64_t>(a.w.cols, cap);
  const int stride = (kt + 63) / 64 * 64 + kPad;
  const size_t smem = (size_t)NB * stride * 2 + red_bytes;
  const int grid = ceil_div(a.w.rows, (int64_t)(kWarps / ks) * RW);
  launch(gemv_mma_kernel<NT, MT, U, PIPE>, grid, kThreads, smem, s, a, kt, stride, ks);
}

}  // namespace

void gemv_force_mma(int on) { g_force_mma = on; }

bool gemv_mma_enabled() {
  if (g_force_mma < 0) {
    g_force_mma = env_opt_in("QW_GEMV_MMA", "the CUDA-core decode GEMVs", "bf16 decode GEMVs on mma.sync tensor cores") ? 1 : 0;
  }
  return g_force_mma == 1;
}

const char *launch_gemv_mma(const GemvArgs &a, cudaStream_t s) {
  if (a.w.type != WT_BF16 || (a.w.cols % 32) != 0 || (a.pro == GEMV_PRO_BF16 && (a.act_ld % 8) != 0)) return nullptr;
  int mt = 1, ks = 1;
  if (!pick_mma(a.w.rows, mt, ks)) return nullptr;
  static const char *names[2][4] = {{"gemv_mma_m1", "gemv_mma_m1k2", "gemv_mma_m1k4", "gemv_mma_m1k8"},
                                    {"gemv_mma_m2", "gemv_mma_m2k2", "gemv_mma_m2k4", "gemv_mma_m2k8"}};
  const bool two = a.batch > 8;
  if (env_switch_on("QW_GEMV_MMA_PIPE", "each round loaded right before its mmas, the first version",
                    "the next round of weights in flight during the mmas")) {
    if (mt == 2) two ? launch_mma<2, 2, true>(a, ks, s) : launch_mma<1, 2, true>(a, ks, s);
    else two ? launch_mma<2, 1, true>(a, ks, s) : launch_mma<1, 1, true>(a, ks, s);
  } else {
    if (mt == 2) two ? launch_mma<2, 2, false>(a, ks, s) : launch_mma<1, 2, false>(a, ks, s);
    else two ? launch_mma<2, 1, false>(a, ks, s) : launch_mma<1, 1, false>(a, ks, s);
  }
  QWC_LAUNCH_CHECK("launch_gemv_mma");
  const int ki = ks >= 8 ? 3 : ks >= 4 ? 2 : ks >= 2 ? 1 : 0;
  return names[mt - 1][ki];
}

}  // namespace qwc
