// kv_quant.cuh — the quantized KV cache on CUDA (kvCache = q8 | kivi4 | kivi2): the formats and semantics of
// kv_format.hpp (the CPU in kv_quant_cpu.cpp is the exact reference), three launches per layer and step:
//   1. launch_kvq_write: q8 rows of every step row; kivi groups that complete at a step row (quantized from
//      the bf16 rows: this step's k/v rows, or the ring for older positions);
//   2. launch_kvq_attention: causal GQA attention reading the codes directly (decode and prefill alike: the
//      query at position p sees keys < nq(p + 1) quantized, the rest in bf16), split over the keys when the
//      rows x kv heads do not fill the GPU, then a combine kernel;
//   3. launch_kvq_ring: kivi only, the step's rows join the bf16 ring (after attention, which may read slots
//      that a long prefill overwrites).
// Every launch reads positions, slots and lengths from device arrays, so decode replays inside a CUDA graph.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <vector>

#include "kv_format.hpp"

namespace qwc {

// Device planes of one session's quantized cache (layout: qw::kvq::KvLayout).
struct KvqDev {
  qw::kvq::KvLayout lay;
  uint8_t *kc = nullptr, *vc = nullptr;    // codes
  uint16_t *ks = nullptr, *kz = nullptr;   // q8: ks key block scales; kivi: key scale / zero (fp16 bits)
  uint16_t *vs = nullptr, *vz = nullptr;   // q8: vs value block scales; kivi: value scale / zero
  uint16_t *kr = nullptr, *vr = nullptr;   // kivi: bf16 ring
};

// The rows of one step: row r of the step is position row_pos[r] of slot row_slot[r]; rows of one sequence
// are consecutive with consecutive positions (what both prefill and decode lay out).
struct KvqStep {
  const __nv_bfloat16 *k = nullptr, *v = nullptr;  // [rows, nKV*d] this step's K (after RoPE) and V, bf16
  const int32_t *row_pos = nullptr, *row_slot = nullptr;
  int32_t rows = 0, layer = 0;
};

void launch_kvq_write(const KvqDev &kv, const KvqStep &s, cudaStream_t stream);
void launch_kvq_ring(const KvqDev &kv, const KvqStep &s, cudaStream_t stream);

struct KvqAttnArgs {
  __nv_bfloat16 *out = nullptr;        // z [rows, nH*d]
  const __nv_bfloat16 *q = nullptr;    // [rows, nH*d] after RoPE
  int32_t n_heads = 0;                 // nH (nKV and d from the layout); nH / nKV <= 8
  int32_t n_split = 1;                 // key splits per (row, kv head); 1 writes out directly
  float *ws = nullptr;                 // n_split > 1: kvq_attn_ws_floats(rows, nH, d, n_split) floats
};
size_t kvq_attn_ws_floats(int32_t rows, int32_t n_heads, int32_t head_dim, int32_t n_split);
// v1 (kv_quant.cu): splits so that rows x nKV x splits fills the SMs about twice (1 when the rows alone do).
int32_t kvq_attn_pick_split(int32_t rows, int32_t n_kv, int32_t max_keys, int32_t sms);
// v1 (QW_KVQ_ATTN=v1): the first kernel (lane-per-key global loads, P.V key by key), kept for the A/B.
const char *launch_kvq_attention(const KvqDev &kv, const KvqStep &s, const KvqAttnArgs &a, cudaStream_t stream);

// v2 (kv_quant_attn2.cu, the default): cp.async-staged chunks, see the file's header. Needs lay.ctx % 32 == 0.
constexpr int32_t kKvqMaxSplit2 = 128;
// Resident blocks per SM of the v2 kernel for this type, head_dim and group size (occupancy query).
int32_t kvq_attn2_blocks_per_sm(qw::kvq::KvType t, int32_t d, int32_t gq);
// Splits so that rows x nKV x splits fits one wave of `slots` resident blocks, >= 2 chunks per warp, <= 128.
int32_t kvq_attn2_pick_split(int32_t rows, int32_t n_kv, int32_t max_keys, int32_t slots);
const char *launch_kvq_attn2(const KvqDev &kv, const KvqStep &s, const KvqAttnArgs &a, cudaStream_t stream);

enum class KvqAttnImpl : int32_t { V1 = 1, V2 = 2 };
// QW_KVQ_ATTN = v1 | v2 (unset: v2); anything else throws QW_ERR_INVALID_ARGUMENT naming the values.
KvqAttnImpl kvq_attn_impl_from_env();

// A session's quantized cache: the device planes, the split workspace, and one layer's three launches.
// Inactive (type bf16) until configure() gets q8 / kivi4 / kivi2.
class KvqCache {
 public:
  KvqCache() = default;
  KvqCache(const KvqCache &) = delete;
  KvqCache &operator=(const KvqCache &) = delete;
  ~KvqCache() { release(); }
  // Allocates for `t` (bf16 / f32: releases everything). batch: decode batch (the split workspace). The layout's
  // ctx is `ctx` rounded up to a multiple of 32, so that every stream's planes start 16-byte aligned (v2's cp.async).
  void configure(qw::kvq::KvType t, int32_t layers, int32_t batch, int32_t kv_heads, int32_t ctx, int32_t d,
                 int32_t n_heads, int32_t sms);
  void release();
  bool active() const { return dev_.kc != nullptr; }
  const KvqDev &dev() const { return dev_; }
  uint64_t bytes() const { return bytes_; }
  // Before attention: quantize what this step completes (rows: the step's bf16 k/v rows after RoPE).
  void write(const KvqStep &s, cudaStream_t stream) const { launch_kvq_write(dev_, s, stream); }
  // Attention of the step's rows (q: [rows, nH*d] bf16) into out; returns the kernel name.
  const char *attend(const KvqStep &s, const __nv_bfloat16 *q, __nv_bfloat16 *out, cudaStream_t stream) const;
  // After attention: kivi rows join the ring.
  void ring(const KvqStep &s, cudaStream_t stream) const { launch_kvq_ring(dev_, s, stream); }
  // The attention kernel attend() launches (configure reads QW_KVQ_ATTN; the lab switches to time both).
  KvqAttnImpl impl() const { return impl_; }
  void set_impl(KvqAttnImpl i) { impl_ = i; }

 private:
  KvqDev dev_;
  std::vector<void *> bufs_;
  float *ws_ = nullptr;
  size_t ws_floats_ = 0;
  int32_t n_heads_ = 0, sms_ = 1, batch_ = 1;
  int32_t slots2_ = 1;  // v2: resident blocks on the device (SMs x blocks per SM)
  KvqAttnImpl impl_ = KvqAttnImpl::V2;  // configure() sets it from QW_KVQ_ATTN
  uint64_t bytes_ = 0;
};

}  // namespace qwc
