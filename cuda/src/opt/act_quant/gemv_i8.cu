// gemv_i8.cu — toggle actQuant = int8 on CUDA: the decode GEMV (batch 1..16) of W4 / W8 weights with the activations
// quantized to int8 per token and weight group, and integer dot products (dp4a: 4 multiply-adds per instruction).
//
// Why: the exact W4 kernel (gemv_q16, src/cuda/gemv.cu) turns every code into a float and spends ~5 FP32-pipe
// instructions per weight (7B q4 b1 at ~1.05-1.5 TB/s, a third to a half of the copy rate, with 121 registers: 2 blocks
// per SM). Here a 32-bit word of 8 W4 codes costs 3 integer ops (two masks, a shift) and 2 dp4a against the staged
// int8 activations: ~0.6 instructions per weight at batch 1, each unpacked word serving every token of the batch.
// llama.cpp's mmvq does the same (q8_1 activations); the CPU backend's int8 arm is the reference for the math.
//
// Math (as opt/act_quant/gemv_int8_avx512.cpp): x is the GEMV's input row as the exact kernels stage it (bf16
// activations, or bf16(bf16(x * rstd) * norm_w) under the norm prologue), quantized per token and weight group of G
// columns: d = max|x| / 127, xq = rint(x / d) in [-127, 127] (x * (1 / d), round to nearest even: the CPU's
// nearbyint(x * id)). Then y[t, r] = sum over chunks c of E columns (one group holds G / E chunks):
//   s[r, g(c)] * d[t, g(c)] * (sum_{k in c} q[r, k] xq[t, k])  +  o[r, g(c)] * (sum_{k in c} x[t, k])
// with the integer sums exact; the float terms are added per chunk (the CPU adds the offset term per group: the same
// value up to fp32 reordering). W4 codes are 0..15 and W8 codes -128..127, both dp4a's signed bytes.
//
// Layout. The block stages per K tile, for every token: the codes (W8 in column order; W4 in nibble order, the even
// columns of each 8-column word then its odd ones, so that `x & 0x0f0f0f0f` and `(x >> 4) & 0x0f0f0f0f` meet their
// activations in one 32-bit word each), d per chunk (its group's) and the fp32 sum of x per chunk. The weights are
// read as gemv_q16 reads them (16-byte chunks of E = 32 / 16 codes, R rows per warp, U chunks in flight, the ks K
// split of pick_ks, gemv_walk_staged), and the epilogues are the exact kernels' (finish_rows).
//
// Determinism / batch invariance: a token's codes depend on its own row only; each output is one fixed sequence of
// per-chunk float updates (by lane and chunk, as gemv_q16), so a sequence gets the same bits alone or in a batch.
#include <cstdlib>
#include <string>
#include <vector>

#include "gemv_i8.cuh"

namespace qwc {
namespace i8detail {

int g_force_loop = -1;  // gemv_i8_force_loop (the lab): -1 = QW_GEMV_I8_LOOP

// The loop variant where the whole K is one tile and there are more row tiles than resident blocks; QW_GEMV_I8_LOOP=0
// turns it off. On by default since the seventeenth run (H100, lab W4 g128 b1: gate_up 42.8 -> 38.5 us, o_proj 13.9 ->
// 12.2; b4 gate_up 82.7 -> 63.6; 7B q4 tg128 b1 333.9 -> 379.6 tok/s, b8 936 -> 1030; the same bits).
bool loop_on() {
  if (g_force_loop >= 0) return g_force_loop == 1;
  const char *v = std::getenv("QW_GEMV_I8_LOOP");
  return !(v && v[0] == '0' && !v[1]);
}

// R = 4 at batch <= 4 whatever the K split (twice the rows per block: half the blocks that each stage and quantize the
// activations; 7B down / o_proj at ks 2 then run 224 blocks, under one wave at 2 blocks per SM, instead of 448 in 1.7
// waves); QW_GEMV_I8_R4=0 keeps R = 2 where the K split asks for it. R sets the rows per block, never the order of a
// row's sum: the same bits either way. Read at each launch (the lab flips it). On by default since the seventeenth run
// (H100, lab W4 g128 b1: down 30.2 -> 26.3 us, qkv 15.3 -> 14.4, o_proj 12.2 -> 11.5; 7B q4 tg128 b1 379.6 -> 399.0).
bool r4_on() {
  const char *v = std::getenv("QW_GEMV_I8_R4");
  return !(v && v[0] == '0' && v[1] == 0);
}

int g_force_ring = -1;  // gemv_i8_force_ring (the lab): -1 = QW_GEMV_I8_RING

// The ring variant (gemv_i8_ring.cuh: the row tiles' weights bulk-copied into shared-memory stages, the whole K's
// activations staged once per block, sm_90) where a call has more row tiles than SMs and the plan fits;
// QW_GEMV_I8_RING=1. Off by default until measured (owed: the lab's rows "ring" and "ring = register path, bits", then
// 7B q4 tg128 with and without).
bool ring_on() {
  if (g_force_ring >= 0) return g_force_ring == 1;
  const char *v = std::getenv("QW_GEMV_I8_RING");
  return v && v[0] == '1' && !v[1];
}

const char *variant_name(Walk walk, bool pre, bool w4, int r, int ks) {
  // every combination built once (thread-safe static init); the pointers stay valid for the process
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (int i = 0; i < 96; ++i)
      v.push_back(std::string("gemv_i8_") + ((i >> 3) & 1 ? "w4" : "w8") + ((i >> 2) & 1 ? "_r4" : "_r2") +
                  (i & 3 ? "k" + std::to_string(1 << (i & 3)) : "") + ((i >> 4) & 1 ? "_pre" : "") +
                  ((i >> 5) == kWalkLoop ? "_loop" : (i >> 5) == kWalkRing ? "_ring" : ""));
    return v;
  }();
  const int ki = ks >= 8 ? 3 : ks >= 4 ? 2 : ks >= 2 ? 1 : 0;
  return names[((int)walk << 5) | (pre << 4) | (w4 << 3) | ((r == 4) << 2) | ki].c_str();
}

}  // namespace i8detail

namespace {

using namespace i8detail;

int g_force_pre = -1;  // gemv_i8_force_pre (the lab): -1 = QW_GEMV_I8_PRE / the rule

// Whether the call quantizes its activations once (the pre pass) instead of in each block: where a.i8ws holds them,
// and (QW_GEMV_I8_PRE unset or "auto") where a block would quantize nb x K >= kPreMin values: the staging is a chain of
// dependent L2 round trips, one per 256 octets of a row (7B at b1: down only, K 18944; from b4 every matrix). The pre
// pass costs a launch (overlapped by PDL: the GEMV's blocks start and load weights meanwhile). The same codes either
// way (quant_octet, norm_rstd): the same bits. "0" / "1" force it off / on (where the scratch allows). Measured in the
// seventeenth run (H100, lab W4 g128): b1 down 38.5 -> 33.5 us (R2; R4 28.7 -> 26.3), o_proj / qkv at b1 no better
// (13.9 / 16.8 in-block, 15.6 / 16.2 pre: below the threshold, as the rule says), b4 gate_up 123 -> 83, b16 615 -> 217.
constexpr int64_t kPreMin = 8192;
bool use_pre(const GemvArgs &a, int nb, int E) {
  const int64_t K = a.w.cols;
  if (!a.i8ws.q || !a.i8ws.dx || (int64_t)a.batch * K > a.i8ws.q_bytes || 2 * a.batch * (K / E) > a.i8ws.dx_floats)
    return false;
  int mode = g_force_pre;
  if (mode < 0) {
    const char *v = std::getenv("QW_GEMV_I8_PRE");
    mode = v && v[0] == '0' && !v[1] ? 0 : v && v[0] == '1' && !v[1] ? 1 : -1;
  }
  return mode >= 0 ? mode == 1 : (int64_t)nb * K >= kPreMin;
}

}  // namespace

bool gemv_i8_covers(const WMat &w) {
  if (w.type != WT_W4 && w.type != WT_W8) return false;
  const int E = w.type == WT_W4 ? i8_per<WT_W4>() : i8_per<WT_W8>();
  const int g = w.group;
  // a chunk inside one group; a group's octets a power of two of lanes within a warp
  return g >= E && g <= 256 && (g & (g - 1)) == 0 && w.cols % g == 0 && w.scale && w.offset;
}

const char *launch_gemv_i8(const GemvArgs &a, cudaStream_t s) {
  if (!a.i8 || !gemv_i8_covers(a.w)) return nullptr;
  const int nb = a.batch <= 1 ? 1 : a.batch <= 2 ? 2 : a.batch <= 4 ? 4 : a.batch <= 8 ? 8 : 16;
  const bool w4 = a.w.type == WT_W4;
  // the K tile: whole groups, as many as the shared memory holds for nb tokens
  const int g = a.w.group;
  const size_t per_col = w4 ? i8_smem<WT_W4>(nb, g) : i8_smem<WT_W8>(nb, g);  // bytes per group of columns
  const int64_t groups = std::max<int64_t>(1, (int64_t)(kSmemBytes / per_col));
  const int kt = (int)std::min<int64_t>(a.w.cols, groups * g);
  const bool pre = use_pre(a, nb, w4 ? i8_per<WT_W4>() : i8_per<WT_W8>());
  GemvArgs ap = a;
  if (pre) {
    if (w4) quant_w4(a, s);
    else quant_w8(a, s);
    ap.pro = GEMV_PRO_BF16;  // the norm was applied by the pre pass: no rstd in the GEMV's prologue
  }
  const char *name = w4 ? dispatch_w4(ap, kt, pre, s) : dispatch_w8(ap, kt, pre, s);
  QWC_LAUNCH_CHECK("launch_gemv_i8");
  return name;
}

void gemv_i8_force_pre(int on) { g_force_pre = on; }
void gemv_i8_force_loop(int on) { g_force_loop = on; }
void gemv_i8_force_ring(int on) { g_force_ring = on; }

}  // namespace qwc
