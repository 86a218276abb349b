// eagle_session.cu — speculative = eagle in the CUDA session (the host side; its kernels are
// cuda/src/opt/speculative/eagle_kernels.cu and tree_mask.cuh; here, not in src/opt/, because the kernel lab links
// every src/opt .cu without the session): tree verification steps (qw_session_prefill_tree with
// parents), the EAGLE head's forward (Config::eagle_head), the final-norm capture that feeds it and KV compaction
// (qw_session_kv_compact). A tree step is an ordinary prefill (prefill.cu, layers.cu) with three differences: rows
// are roped at their tree positions but written at KV rows pos0 + row (rope.cuh row_kvpos), and the flash
// attention kernels skip the tree keys that are not a row's ancestors (tree_mask.cuh). The CPU backend
// (cpu/forward.cpp, opt/speculative/eagle_cpu.cpp) is the reference; compile-checked here, validated on the GPU
// by test/gpu/speculative.test.ts.
#include <string>

#include "eagle_cuda.cuh"
#include "gemm.cuh"
#include "norm.cuh"
#include "registry.hpp"
#include "session.cuh"

namespace qw {
namespace cuda_backend {

void CudaSession::tree_setup(const Step &st, Pass &p) {
  const Config &c = m_.cfg;
  const char *why = nullptr;
  if (kvq_.active()) why = "a quantized KV cache (kvCache q8 / kivi)";
  for (int32_t l = 0; l < c.num_layers && !why; ++l) {
    if (dca_on(st, l)) why = "dca = on";
    else if (attention_arm(st, l) != Attention::FlashBf16) why = "a Sage attention arm";
  }
  if (why)
    throw Error(QW_ERR_UNSUPPORTED, std::string("tree verification (speculative = eagle) does not run with ") + why +
                                        ": set it back to its default for speculative decoding");
  if (st.seq.size() != 1) throw Error(QW_ERR_INVALID_ARGUMENT, "a tree step holds exactly one sequence");
  const int32_t n = st.n_new[0], pos0 = st.pos0[0];
  const int32_t words = qwc::tree_mask_words(pos0 + n - st.tree_base);
  // one upload: kvpos [n] | mask [n][words]
  qwc::tree_mask_fill(tree_host_, st.tree_keys, words);
  tree_host_.insert(tree_host_.begin(), size_t(n), 0u);
  for (int32_t j = 0; j < n; ++j) tree_host_[size_t(j)] = uint32_t(pos0 + j);
  const size_t bytes = tree_host_.size() * 4;
  if (tree_buf_.bytes < bytes) tree_buf_ = DBuf(bytes);
  CK(cudaMemcpyAsync(tree_buf_.p, tree_host_.data(), bytes, cudaMemcpyHostToDevice, stream_));
  p.kvpos = tree_buf_.as<int32_t>();
  p.tree.bits = tree_buf_.as<uint32_t>() + n;
  p.tree.base = st.tree_base;
  p.tree.words = words;
  // the attention's key splits (attention_prefill.cu): a verify pass has one query tile but a context of keys
  p.tree_split = qwc::prefill_attn_tree_split(n, c.num_heads, pos0 + n, sms_);
  if (p.tree_split > 1) {
    const size_t ws = qwc::prefill_attn_split_ws_floats(n, c.num_heads, c.head_dim, p.tree_split) * 4;
    if (tree_ws_.bytes < ws) tree_ws_ = DBuf(ws);
    p.tree_ws = tree_ws_.as<float>();
  }
}

void CudaSession::eagle_input(const Pass &p) {
  const Config &c = m_.cfg;
  const int32_t R = p.rows, H = c.hidden_size;
  OpScope op(*this, -1, QW_OP_EMBED, R);
  if (eagle_feat_.bytes < size_t(R) * H * 4) eagle_feat_ = DBuf(size_t(R) * H * 4);
  if (eagle_cat_.bytes < size_t(R) * 2 * H * 2) eagle_cat_ = DBuf(size_t(R) * 2 * H * 2);
  CK(cudaMemcpyAsync(eagle_feat_.p, p.st->features, size_t(R) * H * 4, cudaMemcpyHostToDevice, stream_));
  qwc::launch_eagle_cat(eagle_cat_.as<bf16>(), x_.as<float>(), eagle_feat_.as<float>(), R, H, stream_);
  const char *kn = gemm(R, m_.eagle_fc, eagle_cat_.as<bf16>(), 2 * H, x_.p, H, qwc::GEMM_OUT_F32);
  qwc::launch_add_bias_rows(x_.as<float>(), m_.eagle_fc_bias.as<float>(), R, H, stream_);
  op.set(kn, cost_of(m_.eagle_fc, R, true));
}

void CudaSession::attn_input_plain(const Pass &p, int32_t l) {
  const int32_t H = m_.cfg.hidden_size;
  OpScope op(*this, l, QW_OP_ATTN_NORM, p.rows);
  qwc::launch_f32_to_bf16(xn_.as<bf16>(), x_.as<float>(), int64_t(p.rows) * H, stream_);
  op.set("eagle_input_bf16", OpCost{0.0, 6.0 * p.rows * H});
}

void CudaSession::final_norm_hook(const Pass &p) {
  if (!p.wants(HOOK_FINAL_NORM, -1)) return;
  const Config &c = m_.cfg;
  if (!m_.out_norm.p) {  // an EAGLE head: its layer output is what the lm_head reads
    capture_f32(*p.sink, HOOK_FINAL_NORM, -1, x_.as<float>(), p.rows, c.hidden_size);
    return;
  }
  {
    OpScope op(*this, -1, QW_OP_FINAL_NORM, p.rows);
    qwc::launch_rmsnorm(xn_.as<bf16>(), tmp_.as<float>(), x_.as<float>(), m_.out_norm.as<float>(), p.rows,
                        c.hidden_size, c.rms_eps, stream_);
    op.set("rmsnorm", cost_rmsnorm(p.rows, c.hidden_size, 4.0));
  }
  capture_f32(*p.sink, HOOK_FINAL_NORM, -1, tmp_.as<float>(), p.rows, c.hidden_size);
}

void CudaSession::kv_compact(int32_t seq, int32_t base, const int32_t *keep, int32_t n) {
  if (kvq_.active())
    throw Error(QW_ERR_UNSUPPORTED, "KV compaction (speculative = eagle) needs a bf16 KV cache (toggle kvCache); the "
                                    "quantized caches keep per-block scales and rings");
  dev_guard([&] {
    if (keep_.bytes < size_t(n) * 4) keep_ = DBuf(size_t(n) * 4);
    CK(cudaMemcpyAsync(keep_.p, keep, size_t(n) * 4, cudaMemcpyHostToDevice, stream_));
    qwc::KvCompactArgs a;
    a.kcache = kcache(0);
    a.vcache = vcache(0);
    a.layer_elems = int64_t(layer_kv_elems_);
    a.keep = keep_.as<int32_t>();
    a.n = n; a.base = base; a.slot = seq;
    a.layers = m_.cfg.num_layers; a.n_kv = m_.cfg.num_kv_heads; a.head_dim = m_.cfg.head_dim; a.max_ctx = max_ctx_;
    qwc::launch_kv_compact(a, stream_);
    CK(cudaStreamSynchronize(stream_));  // keep is the caller's: the copy has left it once the stream is idle
    return 0;
  });
}

}  // namespace cuda_backend
}  // namespace qw
