// gemv.cu — decode GEMV kernels (see gemv.cuh).
//
// Design (bandwidth-bound: every weight byte is read once per step):
//  * 256 threads = 8 warps; each warp owns R consecutive rows; a lane reads 8 weights (16 bytes for bf16)
//    per load, the warp reads 512 contiguous bytes of a row per load instruction, and each lane keeps
//    R*U independent loads in flight before the first FMA (8 x 16 B = 128 B per lane).
//  * The activations (batch x K-tile, bf16) are staged once per block in shared memory; with R = 4 a block
//    covers 32 rows, so the staging traffic is 1/32 of the weight traffic at batch 1.
//  * Warp-level reduction by xor shuffles; every lane ends with all sums and lane i writes value i.
//  * fp32 accumulation; weights are converted exactly (bf16 -> fp32 is a shift).
//  * K-split inside the block (ks = 1, 2, 4, 8 warps per row group; R = 2, any batch): matrices with few rows
//    (0.5B/1.5B qkv, o_proj, down; 7B o/down) get kWarps/ks * R rows per block, so the grid has
//    >= 2 blocks per SM; the ks partial sums of a row are added in shared memory in a fixed order
//    (deterministic) and the fused epilogue runs once, in the first warp of the row group.
#include "gemv.cuh"
#include "gemv_parts.cuh"
#include "q16_dequant.hpp"
#include "tile_cuda.cuh"

#include <algorithm>
#include <cstdlib>

namespace qwc {

namespace {

int g_force_r = 0;
int g_force_ks = 0;
using namespace gemv_detail;

template <int WT, int NB, int R, int U, bool KS>
__global__ void __launch_bounds__(kThreads) gemv_vec_kernel(const GemvArgs a, const int kt, const int ks_arg) {
  const int ks = KS ? ks_arg : 1;  // KS = false: the K-split code folds away (the original kernel)
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *act_s = reinterpret_cast<__nv_bfloat16 *>(smem_raw);
  __shared__ float rstd_s[16];
  constexpr int kRed = KS ? R * NB : 1;
  __shared__ float red_s[kWarps][kRed];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows;
  // warp = rgroup * ks + kpart: row group rgroup (R rows), K part kpart (chunks kpart*32 + lane + 32*ks*i)
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int64_t row0 = ((int64_t)blockIdx.x * (kWarps / ks) + rgroup) * R;
  const int cbase = kpart * 32 + lane, cstride = 32 * ks;

  int64_t rowc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rowc[r] = min(row0 + r, rows - 1);
  Chunk<WT> wc[R][U];
  float acc[R][NB];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
  gemv_walk<NB, 8, U>(
      a, act_s, rstd_s, kt, kt, row0, cbase, cstride,
      [&](int u, int64_t k) {
#pragma unroll
        for (int r = 0; r < R; ++r) wc[r][u] = load_chunk<WT>(a.w, rowc[r], k);
      },
      [&](int u, int c) {
        float wf[R][8];
#pragma unroll
        for (int r = 0; r < R; ++r) unpack_chunk<WT>(wc[r][u], wf[r]);
#pragma unroll
        for (int b = 0; b < NB; ++b) {
          const uint4 av = *reinterpret_cast<const uint4 *>(act_s + b * kt + 8 * c);
          const float af[8] = {bf16_lo(av.x), bf16_hi(av.x), bf16_lo(av.y), bf16_hi(av.y),
                               bf16_lo(av.z), bf16_hi(av.z), bf16_lo(av.w), bf16_hi(av.w)};
#pragma unroll
          for (int r = 0; r < R; ++r) {
            float s = acc[r][b];
#pragma unroll
            for (int e = 0; e < 8; ++e) s = fmaf(wf[r][e], af[e], s);
            acc[r][b] = s;
          }
        }
      });
  finish_rows<R, NB, KS>(a, acc, row0, ks, kpart, red_s);
}

// W4 / W8 weights in 16-byte loads (gemv_q16): a lane reads E = 32 (W4) or 16 (W8) weights of a row per load, four
// times the 8-weight chunk of gemv_vec_kernel, whose W4 loads were 4 bytes (32 bytes in flight per lane: 7B q4 decode
// read its weights at 1.22 TB/s, 40 % of an H100's copy rate, fifth run). Everything else is gemv_vec_kernel's: R rows
// per warp, U chunks in flight per row, the ks K split, the staged activations, the epilogues, and the order of each
// row's sum (chunks by ascending global index per lane, words in a per-lane rotated order: batch invariant). Codes become floats
// without I2F (a quarter-rate instruction): a byte permute puts the code under the exponent of 2^23 and 2^23 (W8: the
// code's sign bit flipped, 2^23 + 128) is subtracted, exactly; each weight is then fmaf(s, q, o), the value the 8-weight
// path and the CPU reference use (opt/gemv/q16_dequant.hpp, checked bit for bit on the CPU by test_q16). QW_GEMV_Q16=0
// keeps the 8-weight kernel (the A/B).
template <int WT> __host__ __device__ constexpr int q16_per() { return WT == WT_W4 ? 32 : 16; }

// WW staged bf16 activations (one 16- or 8-byte shared load) as floats.
template <int WW>
__device__ __forceinline__ void q16_act(float (&af)[WW], const __nv_bfloat16 *ap) {
  if constexpr (WW == 8) {
    const uint4 av = *reinterpret_cast<const uint4 *>(ap);
    af[0] = bf16_lo(av.x); af[1] = bf16_hi(av.x); af[2] = bf16_lo(av.y); af[3] = bf16_hi(av.y);
    af[4] = bf16_lo(av.z); af[5] = bf16_hi(av.z); af[6] = bf16_lo(av.w); af[7] = bf16_hi(av.w);
  } else {
    const uint2 av = *reinterpret_cast<const uint2 *>(ap);
    af[0] = bf16_lo(av.x); af[1] = bf16_hi(av.x); af[2] = bf16_lo(av.y); af[3] = bf16_hi(av.y);
  }
}

// One 16-byte chunk u of the R rows, summed against the staged activations (a_s: the chunk's first activation of
// token 0): every weight fmaf(s, q, o), added to the row's sum. (Folding a zero point into a chunk partial scaled
// once, QW_GEMV_Q16_FOLD, measured slower on every shape: 7B q4 b1 230 against 259 tok/s, H100, thirteenth run;
// removed.)
template <int WT, int NB, int R, int SLOTS>
__device__ __forceinline__ void q16_use(float (&acc)[R][NB], const uint4 (&wv)[R][SLOTS], const float (&sc)[R][SLOTS],
                                        const float (&of)[R][SLOTS], int u, const __nv_bfloat16 *a_s, int kt, int lane) {
  constexpr int BITS = WT == WT_W4 ? qw::q16::kW4 : qw::q16::kW8, WW = WT == WT_W4 ? 8 : 4;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // The chunk's 32-bit words in an order rotated per lane: a lane's chunk spans 64 (W4) / 32 (W8) bytes of
    // staged activations, so word j of every lane would hit the same 4 banks of a 16-byte (8-byte) shared
    // load phase (4-way conflict; at batch 16 the activation reads bound the kernel: 7B q4 b16 was 0.67x the
    // 8-weight kernel, ninth run). Lanes l>>1 (W4) / l>>2 (W8) start at word (l>>1)&3 / (l>>2)&3: conflict
    // free. The order depends on the lane only, never on the batch: batch invariant.
    const int w = (j + (lane >> (WT == WT_W4 ? 1 : 2))) & 3;
    float wf[R][WW];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint32_t x = w == 0 ? wv[r][u].x : w == 1 ? wv[r][u].y : w == 2 ? wv[r][u].z : wv[r][u].w;
      qw::q16::dequant_word<BITS>(x, sc[r][u], of[r][u], wf[r]);
    }
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      float af[WW];
      q16_act<WW>(af, a_s + b * kt + WW * w);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float t = acc[r][b];
#pragma unroll
        for (int e = 0; e < WW; ++e) t = fmaf(wf[r][e], af[e], t);
        acc[r][b] = t;
      }
    }
  }
}

// PIPE: gemv_walk_pipe (the next round's loads in flight while the current one is used; 2U register slots).
template <int WT, int NB, int R, int U, bool KS, bool PIPE = false>
__global__ void __launch_bounds__(kThreads) gemv_q16_kernel(const GemvArgs a, const int kt, const int ks_arg) {
  constexpr int SLOTS = PIPE ? 2 * U : U;
  constexpr int E = q16_per<WT>();  // weights per 16-byte chunk
  const int ks = KS ? ks_arg : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16 *act_s = reinterpret_cast<__nv_bfloat16 *>(smem_raw);
  __shared__ float rstd_s[16];
  __shared__ float red_s[kWarps][KS ? R * NB : 1];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows, cols = a.w.cols, gpr = cols / a.w.group;  // groups per row
  const int rgroup = warp / ks, kpart = warp - rgroup * ks;
  const int64_t row0 = ((int64_t)blockIdx.x * (kWarps / ks) + rgroup) * R;
  const int cbase = kpart * 32 + lane, cstride = 32 * ks;
  const uint8_t *wbytes = reinterpret_cast<const uint8_t *>(a.w.data);

  int64_t rowc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) rowc[r] = min(row0 + r, rows - 1);
  uint4 wv[R][SLOTS];
  float sc[R][SLOTS], of[R][SLOTS];
  float acc[R][NB];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
  const auto walk = [&](auto &&load, auto &&use) {
    if constexpr (PIPE) gemv_walk_pipe<NB, E, U>(a, act_s, rstd_s, kt, kt, row0, cbase, cstride, load, use);
    else gemv_walk<NB, E, U>(a, act_s, rstd_s, kt, kt, row0, cbase, cstride, load, use);
  };
  walk(
      [&](int u, int64_t k) {  // the chunk at column k (k % E == 0) of the warp's rows into slot u
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int64_t e = rowc[r] * cols + k;  // element index
          wv[r][u] = ld_stream16(wbytes + (WT == WT_W4 ? e / 2 : e));
          group_so(a.w, rowc[r] * gpr + k / a.w.group, sc[r][u], of[r][u]);
        }
      },
      [&](int u, int c) { q16_use<WT, NB, R>(acc, wv, sc, of, u, act_s + E * c, kt, lane); });
  finish_rows<R, NB, KS>(a, acc, row0, ks, kpart, red_s);
}

// Generic path (any cols, any alignment): one warp per row (pair of rows for SWIGLU), scalar weight loads.
template <int NB>
__global__ void __launch_bounds__(kThreads) gemv_generic_kernel(const GemvArgs a) {
  pdl_wait();
  pdl_trigger();
  __shared__ float rstd_s[16];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = a.w.rows, cols = a.w.cols;
  norm_rstd<NB>(a, rstd_s);
  const int per = (a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) ? 2 : 1;
  const int64_t row0 = ((int64_t)blockIdx.x * kWarps + warp) * per;
  if (row0 >= rows) return;
  float acc[2][NB];
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = 0.f;
  for (int64_t k = lane; k < cols; k += 32) {
    float av[NB];
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      float v = 0.f;
      if (b < a.batch) {
        if (a.pro == GEMV_PRO_BF16) v = __bfloat162float(a.act[b * a.act_ld + k]);
        else v = bf16r(bf16r(a.x[b * a.x_ld + k] * rstd_s[b]) * a.norm_w[k]);
      }
      av[b] = v;
    }
    for (int r = 0; r < per; ++r) {
      const float wv = load_weight(a.w, min(row0 + r, rows - 1), k);
#pragma unroll
      for (int b = 0; b < NB; ++b) acc[r][b] = fmaf(wv, av[b], acc[r][b]);
    }
  }
  for (int r = 0; r < per; ++r)
#pragma unroll
    for (int b = 0; b < NB; ++b) acc[r][b] = warp_sum(acc[r][b]);
  if (lane != 0) return;
  for (int b = 0; b < a.batch && b < NB; ++b) {
    if (per == 2) {
      if (row0 + 1 < rows) {
        if (a.epi == GEMV_EPI_SWIGLU) epilogue_swiglu(a, row0 / 2, b, acc[0][b], acc[1][b]);
        else epilogue_qkv_rope(a, row0, b, acc[0][b], acc[1][b]);
      }
    } else {
      epilogue_one(a, row0, b, acc[0][b]);
    }
  }
}

// K-split factor: the smallest ks in {1, 2, 4, 8} that gives >= 2 blocks per SM with R = 2 (8 when none
// does). It depends on the matrix alone, never on the batch: ks and the chunk assignment fix the order in
// which a row is summed, so a sequence decodes to the same bits alone or in a batch of 16 (batch invariance).
// QW_GEMV_KSPLIT=1 (or gemv_force_ksplit(1)) turns it off for A/B.
int pick_ks(int64_t rows) {
  if (g_force_ks) return g_force_ks;
  static int env = -1;
  if (env < 0) {
    env = env_one_of("QW_GEMV_KSPLIT", 0, {1, 2, 4, 8}, "use 1, 2, 4 or 8 (the decode GEMV's K split for every matrix)");
  }
  if (env) return env;
  // >= 2 blocks per SM; with 4 resident blocks per SM (64 registers x 256 threads) every matrix of the
  // Qwen2.5 0.5B/1.5B/7B shapes then runs in a single wave (e.g. 1.5B down: ks 4, 384 blocks; 0.5B o_proj: ks 8, 448)
  const int64_t target = 2 * (int64_t)sm_count();
  for (int ks = 1; ks < kWarps; ks *= 2)
    if (ceil_div(rows, (int64_t)(kWarps / ks) * 2) >= target) return ks;
  return kWarps;
}

// QW_GEMV_Q16_PIPE=1: gemv_q16 at batch <= 4 walks K with the next round of loads in flight (gemv_walk_pipe; the same
// sums bit for bit). Off: within ~5 % of the plain walk on the 7B shapes (H100, thirteenth run); read at each launch
// (the lab flips it).
bool q16_pipe_on() {
  return env_opt_in("QW_GEMV_Q16_PIPE", "gemv_q16 walks K a round at a time", "the next round's loads in flight");
}

// gemv_q16 with the K split's kernel (KS) or without; returns ks.
template <int WT, int NB, int R, int U, bool PIPE>
int launch_q16(const GemvArgs &a, int kt, int ks, int grid, size_t smem, cudaStream_t s) {
  if (ks > 1) launch(gemv_q16_kernel<WT, NB, R, U, true, PIPE>, grid, kThreads, smem, s, a, kt, ks);
  else launch(gemv_q16_kernel<WT, NB, R, U, false, PIPE>, grid, kThreads, smem, s, a, kt, 1);
  return ks;
}

// tile_ks: the K split of toggle tile = auto's candidate for this matrix (0: pick_ks). The lab's force and the
// QW_GEMV_KSPLIT variable still win (pick_ks reads them first).
// pipe: gemv_q16 on gemv_walk_pipe (Q16 at NB <= 4 only; dispatch_r decides, once per launch)
template <int WT, int NB, int R, bool Q16 = false>
int launch_vec(const GemvArgs &a, int kt, cudaStream_t s, int tile_ks, bool pipe = false) {
  // q16 at batch >= 8: one 16-byte chunk in flight per row (two spilled 40 bytes at NB 16; the FMAs bound it there)
  constexpr int U = (Q16 && NB >= 8) ? 1 : (R >= 4 || NB >= 8) ? 2 : 4;
  const int ks = (tile_ks && !g_force_ks) ? tile_ks : pick_ks(a.w.rows);
  const int64_t rows_per_block = (int64_t)(kWarps / ks) * R;
  const int grid = ceil_div(a.w.rows, rows_per_block);
  if constexpr (Q16) {
    // A lane's chunk is 32 (W4) / 16 (W8) weights, so a round of the warps' lanes covers E * 32 * ks columns: a K tile
    // of 1472 columns (batch 16) left 7 % .. 28 % of the lanes idle in its last round (7B gate_up W4 b16: 0.80x the
    // 8-weight kernel, ninth run). Where a whole round fits, the tile is whole rounds (gate_up W4 b16: 4 rounds, not
    // 5). Lanes own chunks by global index whatever the tile (gemv_walk): the sums do not change. UNMEASURED.
    const int round = q16_per<WT>() * 32 * ks;
    if (kt < a.w.cols && kt >= round) kt = kt / round * round;
  }
  const size_t smem = (size_t)NB * kt * sizeof(__nv_bfloat16);
  // R = 4 with ks > 1 runs only under a tile candidate (the heuristic pairs R = 4 with ks = 1); compile-checked only
  if constexpr (Q16) {
    // pipe (NB <= 4): half the chunks per round, two rounds in flight (the registers of today's U)
    if constexpr (NB <= 4) {
      constexpr int UP = U / 2 > 0 ? U / 2 : 1;
      if (pipe) return launch_q16<WT, NB, R, UP, true>(a, kt, ks, grid, smem, s);
    }
    return launch_q16<WT, NB, R, U, false>(a, kt, ks, grid, smem, s);
  }
  if (ks > 1) {
    launch(gemv_vec_kernel<WT, NB, R, U, true>, grid, kThreads, smem, s, a, kt, ks);
    return ks;
  }
  launch(gemv_vec_kernel<WT, NB, R, U, false>, grid, kThreads, smem, s, a, kt, 1);
  return 1;
}

// pipe: gemv_q16 on gemv_walk_pipe (batch <= 4 with QW_GEMV_Q16_PIPE=1)
const char *variant_name(int R, int ks, bool q16 = false, bool pipe = false) {
  static const char *n2[4] = {"gemv_vec_r2", "gemv_vec_r2k2", "gemv_vec_r2k4", "gemv_vec_r2k8"};
  static const char *n4[4] = {"gemv_vec_r4", "gemv_vec_r4k2", "gemv_vec_r4k4", "gemv_vec_r4k8"};
  static const char *q2[4] = {"gemv_q16_r2", "gemv_q16_r2k2", "gemv_q16_r2k4", "gemv_q16_r2k8"};
  static const char *q4[4] = {"gemv_q16_r4", "gemv_q16_r4k2", "gemv_q16_r4k4", "gemv_q16_r4k8"};
  static const char *p2[4] = {"gemv_q16p_r2", "gemv_q16p_r2k2", "gemv_q16p_r2k4", "gemv_q16p_r2k8"};
  static const char *p4[4] = {"gemv_q16p_r4", "gemv_q16p_r4k2", "gemv_q16p_r4k4", "gemv_q16p_r4k8"};
  const int i = ks >= 8 ? 3 : ks >= 4 ? 2 : ks >= 2 ? 1 : 0;
  if (q16 && pipe) return R == 4 ? p4[i] : p2[i];
  return q16 ? (R == 4 ? q4[i] : q2[i]) : (R == 4 ? n4[i] : n2[i]);
}

template <int WT, int NB, bool Q16 = false>
const char *dispatch_r(const GemvArgs &a, int kt, cudaStream_t s, GemvTile t) {
  const int64_t blocks_r4 = (a.w.rows + kWarps * 4 - 1) / (kWarps * 4);
  // R = 4 only where no K-split is needed (R changes the rows per block, not the order of a row's sum); a tile
  // candidate (toggle tile = auto) sets R and ks itself
  const bool big = g_force_r ? g_force_r == 4 : t.r ? t.r == 4 : blocks_r4 >= 2 * sm_count() && pick_ks(a.w.rows) == 1;
  const bool pipe = Q16 && NB <= 4 && q16_pipe_on();  // read once per launch (the lab flips it between rows)
  if constexpr (NB <= 4) {
    if (big) return variant_name(4, launch_vec<WT, NB, 4, Q16>(a, kt, s, t.ks, pipe), Q16, pipe);
  }
  return variant_name(2, launch_vec<WT, NB, 2, Q16>(a, kt, s, t.ks, pipe), Q16, pipe);
}

template <int WT, bool Q16 = false>
const char *dispatch_nb(const GemvArgs &a, int kt, cudaStream_t s) {
  const GemvTile t = gemv_tile_active(a.w);  // toggle tile = auto: this matrix's candidate (fixed: {0, 0})
  if (a.batch <= 1) return dispatch_r<WT, 1, Q16>(a, kt, s, t);
  if (a.batch <= 2) return dispatch_r<WT, 2, Q16>(a, kt, s, t);
  if (a.batch <= 4) return dispatch_r<WT, 4, Q16>(a, kt, s, t);
  if (a.batch <= 8) return dispatch_r<WT, 8, Q16>(a, kt, s, t);
  return dispatch_r<WT, 16, Q16>(a, kt, s, t);
}

// W4 / W8 matrices the 16-byte kernel takes: every chunk of E weights inside one scale group (cols and the group
// multiples of E), unless QW_GEMV_Q16=0.
bool q16_takes(const GemvArgs &a) {
  if (a.w.type != WT_W4 && a.w.type != WT_W8) return false;
  const int e = a.w.type == WT_W4 ? q16_per<WT_W4>() : q16_per<WT_W8>();
  return a.w.cols % e == 0 && a.w.group % e == 0 &&
         env_switch_on("QW_GEMV_Q16", "the 8-weight W4 / W8 GEMV", "16-byte W4 / W8 weight loads");
}

int nb_of(int batch) { return batch <= 1 ? 1 : batch <= 2 ? 2 : batch <= 4 ? 4 : batch <= 8 ? 8 : 16; }

}  // namespace

void gemv_force_rows_per_warp(int r) { g_force_r = r; }
int gemv_ksplit(int64_t rows) { return pick_ks(rows); }
void gemv_force_ksplit(int ks) { g_force_ks = (ks == 1 || ks == 2 || ks == 4 || ks == 8) ? ks : 0; }

const char *launch_gemv(const GemvArgs &a, cudaStream_t s) {
  if (a.batch < 1 || a.batch > 16) throw CudaError("launch_gemv: batch must be 1..16");
  if ((a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) && (a.w.rows % 2) != 0)
    throw CudaError("launch_gemv: SWIGLU / QKV_ROPE need even rows");
  const int64_t cols = a.w.cols;
  const bool vec_ok = (cols % 8) == 0 && (a.pro == GEMV_PRO_NORM || (a.act_ld % 8) == 0) &&
                      ((a.w.type != WT_W8 && a.w.type != WT_W4) || (a.w.group % 8) == 0);
  const char *name = nullptr;
  if (a.i8 && (name = launch_gemv_i8(a, s))) return name;  // toggle actQuant = int8 (under either gemv value)
  if (a.mw && (name = launch_gemv_marlin(a, s))) return name;
  if ((name = launch_gemv_mma(a, s))) return name;  // (it checks a.tc / QW_GEMV_MMA itself)
  if (vec_ok) {
    const int nb = nb_of(a.batch);
    const bool q16 = q16_takes(a);
    const int kalign = q16 ? 32 : 8;  // q16: a K tile holds whole chunks of either type
    const int kt = (int)std::min<int64_t>(cols, (kSmemBytes / (nb * 2)) / kalign * kalign);
    switch (a.w.type) {
      case WT_BF16: name = dispatch_nb<WT_BF16>(a, kt, s); break;
      case WT_F16: name = dispatch_nb<WT_F16>(a, kt, s); break;
      case WT_F32: name = dispatch_nb<WT_F32>(a, kt, s); break;
      case WT_W8: name = q16 ? dispatch_nb<WT_W8, true>(a, kt, s) : dispatch_nb<WT_W8>(a, kt, s); break;
      case WT_W4: name = q16 ? dispatch_nb<WT_W4, true>(a, kt, s) : dispatch_nb<WT_W4>(a, kt, s); break;
      default: throw CudaError("launch_gemv: unknown weight type");
    }
  } else {
    const int per = (a.epi == GEMV_EPI_SWIGLU || a.epi == GEMV_EPI_QKV_ROPE) ? 2 : 1;
    const int grid = ceil_div(a.w.rows / per, kWarps);
    switch (nb_of(a.batch)) {
      case 1: launch(gemv_generic_kernel<1>, grid, kThreads, 0, s, a); break;
      case 2: launch(gemv_generic_kernel<2>, grid, kThreads, 0, s, a); break;
      case 4: launch(gemv_generic_kernel<4>, grid, kThreads, 0, s, a); break;
      case 8: launch(gemv_generic_kernel<8>, grid, kThreads, 0, s, a); break;
      default: launch(gemv_generic_kernel<16>, grid, kThreads, 0, s, a); break;
    }
    name = "gemv_generic";
  }
  QWC_LAUNCH_CHECK("launch_gemv");
  return name;
}

}  // namespace qwc
