// kv_quant_cpu.hpp — the CPU's quantized KV cache (kvCache = q8 | kivi4 | kivi2), the exact reference of the
// CUDA kernels. Formats and semantics: kv_format.hpp. Decode and prefill attention read the codes directly
// (one key or value row is dequantized into registers/stack at a time; no dequantized copy of the cache).
#pragma once

#include <cstdint>
#include <memory>

#include "kv_format.hpp"

namespace qw {
namespace cpu {

struct AttnArgs;

struct KvQuant {
  kvq::KvLayout lay;
  // Uninitialised on purpose (pages are touched only as sequences grow); every byte read was written first.
  std::unique_ptr<uint8_t[]> kc, vc;      // codes [stream][ctx][code_row]
  std::unique_ptr<uint16_t[]> ks, kz;     // q8: ks = key block scales; kivi: key scale / zero per (group, channel)
  std::unique_ptr<uint16_t[]> vs, vz;     // q8: vs = value block scales; kivi: value scale / zero per (token, group)
  std::unique_ptr<uint16_t[]> kr, vr;     // kivi: bf16 ring [stream][W][d]
  uint64_t allocated_bytes() const;
};

// Allocates the planes for `t` (q8 / kivi4 / kivi2); throws Error for an unsupported head_dim or a cache too large.
void kvq_configure(KvQuant &kv, kvq::KvType t, int32_t layers, int32_t batch, int32_t kv_heads, int32_t ctx, int32_t d);
// Writes the step's new K/V rows of layer a.layer and computes attention (kv_format.hpp semantics).
void kvq_attention(KvQuant &kv, const AttnArgs &a);

// Op-record kernel name, e.g. "cpu.attention.native.kv_q8".
const char *kvq_kernel_name(kvq::KvType t);

// Reference helpers (tests, lab): dequantize position pos of stream st as the cache holds it for a stream
// of length len (positions >= nq(len) come from the kivi ring), into out[d].
void kvq_dequant_key(const KvQuant &kv, int64_t st, int64_t pos, int64_t len, float *out);
void kvq_dequant_value(const KvQuant &kv, int64_t st, int64_t pos, int64_t len, float *out);

}  // namespace cpu
}  // namespace qw
