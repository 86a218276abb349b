// tp_session.cu — a CudaSession as one rank of tensor parallelism (model option parallel = tp2..tp8; the group:
// cuda/tp_cuda.cuh, the plan: opt/parallel/tp_plan.hpp). Only reached when tp_ is set; at tp1 none of this
// runs. The collectives are issued on the session's own stream with the rank's communicator, one NCCL call per
// rank thread (NCCL's one-thread-per-device model: no group calls), so they are captured into the rank's decode
// graph like any kernel. Each is an op of its own (QW_OP_ALL_REDUCE / QW_OP_ALL_GATHER). Compile-checked only.
#include "session.cuh"
#include "swiglu.cuh"
#include "tp_kernels.cuh"
#include "tp_plan.hpp"

namespace qw {
namespace cuda_backend {

namespace {
void nccl_ok(int r, const char *what) {
  try {
    qwc::nccl_check(r, what);
  } catch (const qwc::CudaError &e) {
    throw Error(QW_ERR_DEVICE, e.what());
  }
}
}  // namespace

// The vocab-parallel embedding: the rows of the tokens this rank owns, zeros for the others, summed over the ranks
// (exactly one nonzero term per element: the sum is exact, as the CPU emulation's).
void CudaSession::tp_embed(const Pass &p) {
  const int32_t H = m_.cfg.hidden_size;
  {
    OpScope op(*this, -1, QW_OP_EMBED, p.rows);
    qwc::launch_embed_vocab_part(x_.as<float>(), m_.embed.m, p.tokens, p.rows, tp_->vocab0, stream_);
    op.set("embed_gather:vocab_part", cost_embed(p.rows, H, m_.embed.type, m_.embed.group, 4.0));
  }
  tp_all_reduce(p, -1, x_.as<float>());
}

// buf [rows, hidden] fp32 = the sum of every rank's buf, in place. fp32 as the CPU emulation's sum (tp_plan.hpp
// tp_sum_in_rank_order), but in NCCL's order (ring or tree, chosen by NCCL per message size), not the rank order:
// equal to the emulation within fp32 reduction-order noise, not bit for bit.
void CudaSession::tp_all_reduce(const Pass &p, int32_t l, float *buf) {
  const int64_t n = (int64_t)p.rows * m_.cfg.hidden_size;
  OpScope op(*this, l, QW_OP_ALL_REDUCE, p.rows);
  nccl_ok(qwc::nccl().AllReduce(buf, buf, (size_t)n, qwc::NCCL_FLOAT32, qwc::NCCL_SUM, tp_->comm, stream_),
          "ncclAllReduce");
  op.set("nccl_all_reduce_f32", tp_all_reduce_cost(p.rows, m_.cfg.hidden_size, tp_->ranks));
}

// The rank's logits slice [rows, P] and the gathered [ranks, rows, P] (ensure_logits: before any graph capture).
void CudaSession::tp_ensure_logits(int32_t rows) {
  if (rows <= tp_rows_) return;
  const size_t part = (size_t)rows * tp_->vocab_part * 4;
  tp_part_ = DBuf(part);
  CK(cudaMemset(tp_part_.p, 0, part));  // the last rank's padding columns stay 0 (never read: tp_layout.hpp)
  tp_gathered_ = DBuf(part * tp_->ranks);
  tp_rows_ = rows;
}

// logits_ [n, V] from every rank's slice: NCCL all-gather (an exact copy), then the unpack into the tp1 layout.
// Every rank ends with the same logits, so the device sampler that follows picks the same token on every rank.
void CudaSession::tp_gather_logits(int32_t n) {
  OpScope op(*this, -1, QW_OP_ALL_GATHER, n);
  const int32_t P = tp_->vocab_part;
  nccl_ok(qwc::nccl().AllGather(tp_part_.p, tp_gathered_.p, (size_t)n * P, qwc::NCCL_FLOAT32, tp_->comm, stream_),
          "ncclAllGather");
  dev_guard([&] {
    qwc::launch_tp_logits_unpack(logits_.as<float>(), vocab(), tp_gathered_.as<float>(), n, P, vocab(), stream_);
    return 0;
  });
  op.set("nccl_all_gather_f32+unpack", tp_logits_gather_cost(n, P, tp_->ranks));
}

// The capture of a sharded activation (q, k, v, z: the rank's heads; mlp pre/post: its intermediate features), x
// bf16 [rows, cols] with cols the rank's width: every rank converts its slice to fp32, the all-gather and the unpack
// (the logits' layout math with equal parts and no padding) give the tp1 layout [rows, ranks * cols], which rank 0's
// sink keeps (the CPU emulation's captures have the same layout). Hooks run eagerly on every rank (RankSink).
void CudaSession::tp_capture_sharded(const Pass &p, Hook h, int32_t l, const bf16 *x, int32_t cols) {
  const int32_t R = p.rows, N = tp_->ranks;
  const size_t part = (size_t)R * cols, need = part * (1 + 2 * (size_t)N) * 4;
  if (tp_hook_.bytes < need) tp_hook_ = DBuf(need);
  float *slice = tp_hook_.as<float>(), *gathered = slice + part, *full = gathered + part * N;
  dev_guard([&] {
    qwc::launch_bf16_to_f32(slice, x, (int64_t)part, stream_);
    return 0;
  });
  nccl_ok(qwc::nccl().AllGather(slice, gathered, part, qwc::NCCL_FLOAT32, tp_->comm, stream_), "ncclAllGather (hook)");
  dev_guard([&] {
    qwc::launch_tp_logits_unpack(full, (int64_t)cols * N, gathered, R, cols, cols * N, stream_);
    return 0;
  });
  capture_f32(*p.sink, h, l, full, R, cols * N);
}

}  // namespace cuda_backend
}  // namespace qw
