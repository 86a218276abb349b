// marlin_gemm.cu — gemv = marlin's prefill GEMM (issue 10 item 4): out[tokens, N] = act[tokens, K] . W^T over W4 / W8
// weights in the packed layout of the decode kernel (marlin_layout.hpp), dequantized tile by tile inside the GEMM on
// sm_90a tensor cores, instead of dequantizing to a bf16 scratch and running the bf16 GEMM on it (the chunked path of
// prefill.cu: H100 7B q4 pp512 22.6k tok/s against 40k in bf16, its dequantization writes and re-reads 4x the bytes
// it reads, and its chunk GEMMs have too few tiles to fill the SMs).
// WRITTEN WITHOUT A GPU: compile-checked; `qwlab marlin` compares it with the chunked path and times both.
//
// As Machete (and unlike Marlin, which runs mma.sync) the product is computed transposed, D^T = W . act^T, so that the
// dequantized weights are wgmma's A operand straight from registers (no bf16 round trip through shared memory) and
// the activations are B, K-major, loaded by TMA with the 128-byte swizzle (fa3_layout.hpp's K tile). CTA = 3
// warpgroups (384 threads), tile = 128 weight rows x 128 tokens:
//   warpgroup 0, producer: one thread walks K a packed unit (128 columns) at a time into a ring of `stages` stages:
//     waits empty[s], arms full[s] with the stage's bytes, issues 2 TMA boxes of activations (64 columns x 128 tokens
//     each; tokens past M are zero-filled) and 16 bulk copies of the units of the CTA's 16 row tiles.
//   warpgroups 1, 2, consumers (rows 64c .. 64c + 63): per stage, each lane reads its two tiles' 16 / 32-byte pieces
//     and their (scale, offset) pairs from shared memory, dequantizes the 8 k16 steps' A registers
//     (bf16(fmaf(scale, q, offset)): the values of the chunked path's dequantization, bit for bit), issues 8 wgmma
//     m64n128k16 into one fp32 accumulator and releases the stage when they have completed (one arrival per warp).
//     The two consumer warpgroups share the tensor cores: one's dequantization overlaps the other's wgmmas.
//   epilogue: the accumulator (rows = weight rows, columns = tokens) straight to out[token][row] (bf16, fp32 or fp32
//     added): a warp's store covers 8 consecutive rows of 4 tokens.
// Summation: fp32 over K in unit order, the tensor core's order inside a k16 step; depends on the shape only (batch
// invariant); not the bits of the bf16 GEMM on dequantized weights (another order), within fp32 rounding of it.
#include <algorithm>
#include <string>

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000

#include "fa3_layout.hpp"
#include "fa3_prefill.cuh"
#include "fa3_sm90.cuh"
#include "gemm.cuh"
#include "gemv_parts.cuh"  // sm_count
#include "marlin.cuh"
#include "mma_sync.cuh"  // smem_u32

namespace qwc {
// (a named namespace: the device helpers are unreferenced in the passes for other architectures)
namespace marlin_gemm_detail {

constexpr int kThreadsMg = 384;

// D (+)= A.B, m64n128k16, A (the dequantized weights) from registers, B (activations) K-major in shared memory
// (imm-trans-b = 0: the layout of fa3's K as the B of Q.K^T). scale_d = 0 overwrites d.
__device__ __forceinline__ void mg_wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}
// The same at m64n256k16 (the wide token tile: 128 accumulator registers).
__device__ __forceinline__ void mg_wgmma_rs_n256(float (&d)[128], const uint32_t (&a)[4], uint64_t db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d));
}
template <int TN>
__device__ __forceinline__ void mg_wgmma(float (&d)[TN / 2], const uint32_t (&a)[4], uint64_t db) {
  if constexpr (TN == 256) mg_wgmma_rs_n256(d, a, db, 1);
  else mg_wgmma_rs_n128(d, a, db, 1);
}
__device__ __forceinline__ void mg_tma_2d(uint32_t dst, const CUtensorMap *m, uint32_t bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
      ::"r"(dst), "l"(reinterpret_cast<uint64_t>(m)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
// `bytes` (a multiple of 16) contiguous bytes global -> shared, counted on the mbarrier
__device__ __forceinline__ void mg_bulk(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               ::"r"(dst), "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
__device__ __forceinline__ uint32_t mg_pack(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t *>(&h);
}

// The 8 k16 steps' A registers of one consumer warp for one unit (its tiles tA, tA + 1 at wA, wA + unit_bytes).
template <bool W4, int G>
__device__ __forceinline__ void mg_dequant(uint32_t (&A)[8][4], const unsigned char *wA, int lane) {
  constexpr int WB = W4 ? 512 : 1024, NW = W4 ? 4 : 8, UB = WB + (kMarlinUnitCols / G) * 64;
  const int gid = lane >> 2;
  uint32_t wq[2][NW];
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const uint4 v = *reinterpret_cast<const uint4 *>(wA + t * UB + (W4 ? 16 : 32) * lane);
    wq[t][0] = v.x; wq[t][1] = v.y; wq[t][2] = v.z; wq[t][3] = v.w;
    if constexpr (!W4) {
      const uint4 v2 = *reinterpret_cast<const uint4 *>(wA + t * UB + 32 * lane + 16);
      wq[t][4] = v2.x; wq[t][5] = v2.y; wq[t][6] = v2.z; wq[t][7] = v2.w;
    }
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int gi = 16 * j / G;
    float2 so[2];
#pragma unroll
    for (int t = 0; t < 2; ++t) so[t] = *reinterpret_cast<const float2 *>(wA + t * UB + WB + 64 * gi + 8 * gid);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int t = r & 1;
      float lo, hi;
      if constexpr (W4) marlin_gemm_w4_codes(wq[t], j, r, lo, hi);
      else marlin_gemm_w8_codes(wq[t], j, r, lo, hi);
      A[j][r] = mg_pack(fmaf(so[t].x, lo, so[t].y), fmaf(so[t].x, hi, so[t].y));
    }
  }
}

}  // namespace marlin_gemm_detail

namespace {
using namespace marlin_gemm_detail;

struct MgParams {
  void *out;
  int64_t ldc;
  int32_t out_kind, m_tokens;
  MarlinMat w;
};

template <bool W4, int G, int TN>
__global__ void __launch_bounds__(kThreadsMg, 1) marlin_gemm_kernel(const __grid_constant__ CUtensorMap tact,
                                                                    const MgParams p, const int stages) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int WB = W4 ? 512 : 1024, UB = WB + (kMarlinUnitCols / G) * 64;
  constexpr uint32_t kStage = marlin_gemm_stage_bytes(UB, TN), kActBlk = TN * 128u;
  extern __shared__ unsigned char smem_raw[];
  unsigned char *smem = reinterpret_cast<unsigned char *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  const uint32_t base = smem_u32(smem);
  const uint32_t bar_full = base + (uint32_t)stages * kStage, bar_empty = bar_full + 8u * stages;
  const uint32_t abort_word = bar_empty + 8u * stages;
  const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int ku = (int)(p.w.cols / kMarlinUnitCols);
  const int t0 = blockIdx.x * (kMarlinGemmRows / kMarlinTileRows);  // the CTA's first 8-row tile
  const int n0 = blockIdx.y * TN;                                     // its first token
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      fa3_mbar_init(bar_full + 8u * s, 1);
      fa3_mbar_init(bar_empty + 8u * s, 8);  // one arrival per consumer warp
    }
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(abort_word), "r"(0u) : "memory");
    fa3_fence_barrier_init();
  }
  __syncthreads();
  pdl_wait();  // the activations are the previous kernel's output
  pdl_trigger();

  if (wg == 0) {  // producer: its registers go to the consumers (fa3's split: 24 / 240)
    fa3_setmaxnreg_dec<kFa3ProducerRegs>();
    if (threadIdx.x == 0) {
      fa3_prefetch_map(&tact);
      for (int u = 0; u < ku; ++u) {
        const int s = u % stages;
        const uint32_t full = bar_full + 8u * s, st = base + (uint32_t)s * kStage;
        fa3_mbar_wait(bar_empty + 8u * s, ((u / stages) & 1) ^ 1, abort_word);
        fa3_mbar_expect_tx(full, 2u * kActBlk + 16u * UB);
        mg_tma_2d(st, &tact, full, u * kMarlinUnitCols, n0);
        mg_tma_2d(st + kActBlk, &tact, full, u * kMarlinUnitCols + 64, n0);
        const unsigned char *src = p.w.data + ((size_t)t0 * ku + u) * UB;
#pragma unroll 1
        for (int t = 0; t < 16; ++t) mg_bulk(st + 2u * kActBlk + (uint32_t)t * UB, src + (size_t)t * ku * UB, UB, full);
      }
    }
  } else {  // consumers
    fa3_setmaxnreg_inc<fa3_consumer_regs(2)>();
    const int c = wg - 1;
    const size_t wofs = 2u * kActBlk + (size_t)marlin_gemm_tile(c, warp, 0) * UB;  // this warp's tiles in a stage
    float acc[TN / 2];
#pragma unroll
    for (int i = 0; i < TN / 2; ++i) acc[i] = 0.f;
    // Unit u's A registers are dequantized while unit u - 1's wgmmas run (two register sets, used alternately):
    // issue u, wait for u - 1 (wgmma.wait_group 1), release its stage, dequantize u + 1 into u - 1's set.
    uint32_t A0[8][4], A1[8][4];
    auto dequant = [&](uint32_t (&A)[8][4], int u) {
      const int s = u % stages;
      fa3_mbar_wait(bar_full + 8u * s, (u / stages) & 1, abort_word);
      mg_dequant<W4, G>(A, smem + (size_t)s * kStage + wofs, lane);
    };
    auto issue = [&](uint32_t (&A)[8][4], int u) {
      const uint32_t st = base + (uint32_t)(u % stages) * kStage;
      fa3_wgmma_fence();
#pragma unroll
      for (int j = 0; j < 8; ++j) mg_wgmma<TN>(acc, A[j], fa3_desc_kmajor(st, TN, 0, j));
      fa3_wgmma_commit();
    };
    auto retire_prev = [&](int u) {  // unit u - 1's wgmmas are done: its stage goes back to the producer
      fa3_wgmma_wait<1>();
      if (u > 0 && lane == 0) fa3_mbar_arrive(bar_empty + 8u * ((u - 1) % stages));
    };
    dequant(A0, 0);
#pragma unroll 1
    for (int u = 0; u < ku; u += 2) {
      issue(A0, u);
      retire_prev(u);
      fa3_pin(A1);
      if (u + 1 < ku) {
        dequant(A1, u + 1);
        issue(A1, u + 1);
        retire_prev(u + 1);
        fa3_pin(A0);
        if (u + 2 < ku) dequant(A0, u + 2);
      }
    }
    fa3_wgmma_wait<0>();
    fa3_pin(acc);
    fa3_pin(A0);
    fa3_pin(A1);
    // (the last stage needs no release: the producer has issued every unit)
    // epilogue: acc[4j + i] = D^T (row 64c + 16 warp + gid + 8 (i >> 1), token n0 + 8j + 2 tig + (i & 1))
#pragma unroll
    for (int i = 0; i < TN / 2; ++i) {
      const int row = 64 * c + fa3_acc_row(warp, lane, i), tok = n0 + fa3_acc_col(lane, i);
      if (tok >= p.m_tokens) continue;
      const int64_t o = (int64_t)tok * p.ldc + (int64_t)t0 * kMarlinTileRows + row;
      if (p.out_kind == GEMM_OUT_BF16) reinterpret_cast<__nv_bfloat16 *>(p.out)[o] = __float2bfloat16(acc[i]);
      else if (p.out_kind == GEMM_OUT_F32) reinterpret_cast<float *>(p.out)[o] = acc[i];
      else reinterpret_cast<float *>(p.out)[o] += acc[i];
    }
  }
  fa3_check_abort(abort_word);
#else
  __trap();  // sm_90a only: the launcher refuses other devices
#endif
}

template <bool W4, int G, int TN>
void launch_t(const CUtensorMap &map, const MgParams &p, int stages, size_t smem, cudaStream_t s) {
  static SmemOptIn opt_in;
  opt_in(marlin_gemm_kernel<W4, G, TN>, smem);
  dim3 grid((unsigned)(p.w.rows / kMarlinGemmRows), (unsigned)((p.m_tokens + TN - 1) / TN));
  launch(marlin_gemm_kernel<W4, G, TN>, grid, kThreadsMg, smem, s, map, p, stages);
}
template <bool W4, int G>
void launch_g(const CUtensorMap &map, const MgParams &p, int tn, int stages, size_t smem, cudaStream_t s) {
  if (tn == kMarlinGemmTokensWide) launch_t<W4, G, kMarlinGemmTokensWide>(map, p, stages, smem, s);
  else launch_t<W4, G, kMarlinGemmTokens>(map, p, stages, smem, s);
}

}  // namespace

const char *marlin_gemm_unsupported(const MarlinMat &w, int64_t m_tokens, int64_t lda, const void *act) {
  if (!w.data) return "the matrix has no packed copy";
  if (w.type != WT_W4 && w.type != WT_W8) return "not W4 / W8";
  if (w.rows % kMarlinGemmRows) return "rows not a multiple of 128";
  if (lda % 8 || reinterpret_cast<uintptr_t>(act) % 16) return "activations not 16-byte aligned (TMA)";
  if (m_tokens <= 0 || m_tokens > (1 << 30)) return "token count out of range";
  static int cc = -1;
  if (cc < 0) {
    int dev = 0, major = 0, minor = 0;
    QWC_CHECK(cudaGetDevice(&dev));
    QWC_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    QWC_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    cc = major * 10 + minor;
  }
  if (cc != 90) return "needs an sm_90 device (built for sm_90a only)";
  if (!fa3_tensor_map_encoder()) return "the driver offers no cuTensorMapEncodeTiled";
  if (!marlin_gemm_stages(w.unit_bytes, (size_t)smem_optin_bytes())) return "the ring does not fit shared memory";
  return nullptr;
}

bool marlin_gemm_requested(int64_t rows, int64_t cols, int64_t m_tokens) {
  static const int32_t mode = env_one_of("QW_MARLIN_GEMM", 1, {0, 1, 2},
                                         "use 0 (quantized prefill dequantizes to bf16 chunks for the bf16 GEMM), 1 "
                                         "(the fused GEMM where marlin_gemm_preferred, the default) or 2 (the fused "
                                         "GEMM wherever it runs)");
  return mode == 2 || (mode == 1 && marlin_gemm_preferred(rows, cols, m_tokens));
}

const char *launch_marlin_gemm(const GemmArgs &g, const MarlinMat &w, cudaStream_t stream) {
  if (const char *why = marlin_gemm_unsupported(w, g.m, g.lda, g.a))
    throw CudaError(std::string("marlin prefill GEMM: ") + why);
  if (g.n != w.rows || g.k != w.cols) throw CudaError("marlin prefill GEMM: the GEMM's n x k is not the matrix's");
  const size_t limit = (size_t)smem_optin_bytes();
  // QW_MARLIN_GEMM_TN=128 | 256 forces the token tile (the lab's A/B); unset: marlin_gemm_tokens
  static const int tn_env = env_one_of("QW_MARLIN_GEMM_TN", 0, {128, 256}, "use 128 or 256 (tokens per CTA of the prefill GEMM)");
  int tn = tn_env ? tn_env : marlin_gemm_tokens(w.rows, g.m, w.unit_bytes, gemv_detail::sm_count(), limit);
  if (!marlin_gemm_stages(w.unit_bytes, limit, tn)) tn = kMarlinGemmTokens;
  CUtensorMap map;
  const auto enc = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fa3_tensor_map_encoder());
  cuuint64_t dims[2] = {(cuuint64_t)g.k, (cuuint64_t)g.m}, strides[1] = {(cuuint64_t)g.lda * 2};
  cuuint32_t box[2] = {64, (cuuint32_t)tn}, estr[2] = {1, 1};
  const CUresult r = enc(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<__nv_bfloat16 *>(g.a), dims, strides, box,
                         estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                         CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw CudaError("marlin prefill GEMM: cuTensorMapEncodeTiled failed (CUresult " + std::to_string((int)r) + ")");
  MgParams p{g.c, g.ldc, g.out_kind, (int32_t)g.m, w};
  const int st = marlin_gemm_stages(w.unit_bytes, limit, tn);
  const size_t smem = marlin_gemm_smem_bytes(w.unit_bytes, st, tn);
  const bool w4 = w.type == WT_W4;
  switch (w.group) {
    case 16: w4 ? launch_g<true, 16>(map, p, tn, st, smem, stream) : launch_g<false, 16>(map, p, tn, st, smem, stream); break;
    case 32: w4 ? launch_g<true, 32>(map, p, tn, st, smem, stream) : launch_g<false, 32>(map, p, tn, st, smem, stream); break;
    case 64: w4 ? launch_g<true, 64>(map, p, tn, st, smem, stream) : launch_g<false, 64>(map, p, tn, st, smem, stream); break;
    default: w4 ? launch_g<true, 128>(map, p, tn, st, smem, stream) : launch_g<false, 128>(map, p, tn, st, smem, stream);
  }
  QWC_LAUNCH_CHECK("launch_marlin_gemm");
  return w4 ? (tn == kMarlinGemmTokensWide ? "marlin_gemm_w4_n256" : "marlin_gemm_w4")
            : (tn == kMarlinGemmTokensWide ? "marlin_gemm_w8_n256" : "marlin_gemm_w8");
}

}  // namespace qwc
