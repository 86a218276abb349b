// persistent.cuh — the persistent decode kernel of toggle decode = persistent (decode.cpp; schedule:
// persistent_plan.hpp). One launch runs a whole decode step up to the logits: blocks walk the task list, wait on
// counters for their inputs, prefetch their next task's weights into L2. Compile-checked only so far (no GPU in the
// session that wrote it): the lab case `qwlab persistent` and test/gpu/persistent.test.ts validate it.
#pragma once
#include "common.cuh"
#include "persistent_plan.hpp"

namespace qwc {

// One layer's operands, bf16 weights in the backend's fused layouts (model_upload.cu): q|k|v pair-interleaved
// (gemv.cuh GEMV_EPI_QKV_ROPE), gate|up interleaved (row 2j gate j, 2j + 1 up j).
struct PersistLayer {
  const __nv_bfloat16 *qkv = nullptr, *o = nullptr, *gate_up = nullptr, *down = nullptr;
  const float *attn_norm = nullptr, *ffn_norm = nullptr, *qkv_bias = nullptr;  // fp32; bias in the original row order
  __nv_bfloat16 *kcache = nullptr, *vcache = nullptr;                          // [slots][nKV][max_ctx][d]
};

struct PersistArgs {
  // outputs and scratch (device)
  float *logits = nullptr;              // [B, V] fp32
  float *x = nullptr;                   // [B, H] fp32 residual stream
  __nv_bfloat16 *q = nullptr, *z = nullptr, *h = nullptr;  // [B, nH d] roped q, [B, nH d] attention out, [B, I]
  float *ws = nullptr;                  // split partials: persistent_ws_floats()
  int32_t *counters = nullptr;          // [Counters::count()], zero before the first launch; the kernel leaves zeros
  // [n_tasks][3] %globaltimer ns per task, written by its block's thread 0: before its wait, when it starts, when its
  // outputs are written (an attention split: after its arrival, with the combine if it was the last); nullptr: off.
  // The caller zeroes it: empty attention splits stay 0 (persistent_trace.hpp reads it)
  uint64_t *trace = nullptr;
  // schedule
  const qw::persist::Task *tasks = nullptr;
  int32_t n_tasks = 0;
  qw::persist::Counters c;
  // model
  const PersistLayer *layers = nullptr;  // device array [layers]
  const __nv_bfloat16 *embed = nullptr, *lm_head = nullptr;  // [V, H]
  const float *out_norm = nullptr, *inv_freq = nullptr;      // [H], [d/2]
  // step (device, [B])
  const int32_t *tokens = nullptr, *pos = nullptr, *slot = nullptr, *kv_len = nullptr;
  qw::persist::Dims d;
  int32_t max_ctx = 0;
  float eps = 1e-6f;
  // A/B switches (persistent_options): the stages of the shared-memory weight ring of the GEMV tasks
  // (persistent_ring.cuh; 0: register loads, the default; else persistent_ring_stages) and the L2 bulk prefetch of the
  // next task's weights (default on). Same logits bit for bit either way.
  int32_t ring_stages = 0;
  bool prefetch = true;
};

size_t persistent_ws_floats(const qw::persist::Dims &d);
// Dynamic shared memory of one block with the ring off: qw::persist::smem_dynamic_bytes (persistent_plan.hpp, where the
// sizing lives so that the CPU test checks it).
size_t persistent_smem_bytes(const qw::persist::Dims &d);
// The compiled kernel's static shared memory (cudaFuncAttributes::sharedSizeBytes) for head_dim 64 / 128: the lab
// checks qw::persist::smem_static_bound against it.
size_t persistent_static_smem(int32_t head_dim);
// The grid: blocks that can be resident at once (SMs x occupancy, at most one per SM is what the plan assumes);
// throws when the kernel cannot be resident at all (shared memory).
int32_t persistent_blocks(const qw::persist::Dims &d);
// The weight ring's stages for d on this GPU (qw::persist::ring_stages), or 0 where it cannot run: before sm_90, or
// where the ring kernel's static + dynamic shared memory exceeds the device's opt-in limit.
int32_t persistent_ring_stages(const qw::persist::Dims &d);
// Sets a.ring_stages and a.prefetch from the environment, for a.d: QW_PERSIST_RING=1 (default off) the weight ring
// where persistent_ring_stages allows it, QW_PERSIST_PREFETCH=1 (default off since the twelfth run: it cost 4 %) the L2 prefetch. Read at every call.
void persistent_options(PersistArgs &a);
// Launches one step (a cooperative launch: every block resident, or the launch fails instead of deadlocking).
// Returns the kernel variant name.
const char *launch_persistent_decode(const PersistArgs &a, int32_t blocks, cudaStream_t stream);

}  // namespace qwc
