// sage_ref.hpp — the CPU reference arms of toggle attention = sage-int8 | sage-fp8 (SageAttention, SageAttention2),
// written to be the exact reference a CUDA kernel is checked against. Every rounding step is listed here.
//
// One call = one (sequence, kv head) of one step: its len = pos0 + n_new visible keys (cache + new rows).
//  1. Smooth K: mean[c] = fp32((sum_k fp64(K[k][c])) / len) over ALL len keys of the call, K~ = K - mean (fp32).
//     A query row sees keys 0..p only (causal) and its logits all move by the same q.mean, so softmax is
//     unchanged in exact arithmetic; that holds for every subset of keys, hence also for chunked prefill against
//     a cache, where the mean covers the cached keys and the chunk's (the keys are re-smoothed each call).
//  2. INT8: K~ per block of kSageKBlock keys (all d channels), Q per block of kSageQBlock query rows of one query
//     head (blocks start at the call's first row): scale = max|x| / 127, q = rint(x * (127 / max|x|)) in
//     [-127, 127] (round half to even; a zero block has scale 0 and q = 0). Q.K~ is an exact int32 dot product.
//  3. Online softmax in fp32 over key blocks of kSageKBlock: s = float(dot) * ((sq * sk) * (1 / sqrt(d)));
//     m' = max(m, max s); alpha = exp(m - m') (0 for the first block); p = exp(s - m');
//     l = l * alpha + sum p (p unrounded, key order).
//  4. P.V, two levels: partial[c] = sum over the block's keys of P'_k * V'_k[c] in fp32 from 0 (key order), then
//     acc[c] = acc[c] * alpha + partial[c].
//     sage-int8: P' = bf16(p), V' = bf16(V) (round to nearest even): bf16 because the CUDA cache is bf16 already
//       (no V conversion, no fp16 overflow risk) and the flash-bf16 kernel's P.V runs in bf16 too.
//       z[c] = acc[c] / l.
//     sage-fp8: V smoothed and scaled per channel (SageAttention2's smooth_v and per-channel FP8 V):
//       vmean[c] = fp32((sum_k fp64(V[k][c])) / len), V~ = V - vmean (fp32), vs[c] = max_k |V~[k][c]| / 448 over
//       the call's len keys; V' = e4m3(V~ * (448 / max_k |V~[k][c]|)); P' = e4m3(p * 448) (static scale, p <= 1);
//       e4m3 = round to nearest even with saturation at +-448. z[c] = (acc[c] * (vs[c] / 448)) / l + vmean[c]
//       (exact in exact arithmetic: the weights p / l sum to 1).
//     l sums the unrounded p in both arms (P' is only what the P.V matmul reads).
// Caches: bf16 or f32 (widened exactly to fp32). A quantized KV cache (kvCache = q8 / kivi) or dca = on with a Sage arm
// is refused before the step runs (attention_check_step, attention.hpp).
// Not emulated: the reduced-precision accumulator inside a Hopper FP8 wgmma (the reason for the two levels) —
// the CPU's block partial is a full fp32 sum.
#pragma once

#include <cstdint>
#include <vector>

// The math of the reference arms, free of the CPU backend (sage_ref_cpu.cpp): the CPU backend's layer call
// (sage_cpu.cpp) and the CUDA kernels' lab case (cuda/dev/lab/sage.cu) both call it.
namespace qw {
namespace cpu {

constexpr int32_t kSageQBlock = 32;  // query rows per INT8 scale (one query head)
constexpr int32_t kSageKBlock = 64;  // keys per INT8 scale, and per online-softmax / P.V partial block
constexpr float kE4m3Max = 448.0f;

// FP8 e4m3 (OCP "E4M3FN": bias 7, no infinities, S.1111.111 = NaN, max finite 448).
// Encode: round to nearest even; |x| > 448 saturates to +-448 (as cvt ... satfinite); NaN -> 0x7F | sign.
uint8_t e4m3_encode(float x);
float e4m3_decode(uint8_t c);  // exact
inline float e4m3_round(float x) { return e4m3_decode(e4m3_encode(x)); }

// INT8 symmetric quantization of n values (row i at x + i * stride, width w; n = rows * w):
// returns scale = max|x| / 127 and writes q[i * w + c] = clamp(rint(x * (127 / max|x|)), -127, 127).
float quant_int8_block(const float *x, int64_t stride, int32_t rows, int32_t w, int8_t *q);

// One kv head of one sequence, prepared for a call (steps 1, 2 and V of step 4).
struct SageKv {
  bool fp8 = false;
  int32_t len = 0, d = 0;
  std::vector<float> mean;  // [d] smooth-K vector
  std::vector<int8_t> kq;   // [len, d]
  std::vector<float> ks;    // [ceil(len / kSageKBlock)]
  std::vector<float> v;     // [len, d] V' as P.V reads it: bf16(V) (int8 arm) or e4m3(V / vs) (fp8 arm)
  std::vector<float> vs;    // [d] fp8 arm: per-channel V scale
  std::vector<float> vmean; // [d] fp8 arm: smooth-V vector (added back to z)
};
// K, V: [len, d] fp32 rows (row stride d).
void sage_prepare_kv(bool fp8, const float *K, const float *V, int32_t len, int32_t d, SageKv &kv);

// rows query rows of one query head: row i (at q + i * q_stride) has position pos_first + i and sees keys
// 0..pos_first + i. Q blocks of kSageQBlock start at row 0; write z (row stride z_stride).
void sage_attend(const SageKv &kv, const float *q, int64_t q_stride, int32_t rows, int32_t pos_first, float *z,
                 int64_t z_stride);

}  // namespace cpu
}  // namespace qw
