// cost.cpp — analytic op costs (see cost.hpp).
#include "cost.hpp"

#include "convert.hpp"

namespace qw {

OpCost cost_matmul(int64_t T, int64_t rows, int64_t cols, NativeType wt, int32_t group, bool has_bias,
                   double act_bytes) {
  OpCost c;
  c.flops = 2.0 * double(T) * double(rows) * double(cols) + (has_bias ? double(T * rows) : 0.0);
  c.bytes = double(rows) * double(cols) * native_bytes_per_element(wt, group) + (has_bias ? 4.0 * rows : 0.0) +
            act_bytes * double(T) * double(cols + rows);
  return c;
}

OpCost cost_embed(int64_t T, int64_t H, NativeType wt, int32_t group, double act_bytes) {
  OpCost c;
  c.flops = (wt == NativeType::W8 || wt == NativeType::W4) ? 2.0 * double(T * H) : 0.0;  // dequant
  c.bytes = double(T * H) * (native_bytes_per_element(wt, group) + act_bytes) + 4.0 * double(T);
  return c;
}

OpCost cost_rmsnorm(int64_t T, int64_t H, double act_bytes) {
  // square-accumulate (2), scale (1), weight multiply (1) per element
  return {4.0 * double(T * H), 2.0 * act_bytes * double(T * H) + 4.0 * double(H)};
}

OpCost cost_rope(int64_t T, int64_t n_heads_total, int64_t head_dim, double act_bytes) {
  const double n = double(T * n_heads_total * head_dim);
  // x*cos + rot(x)*sin: 3 flops per element; cos/sin tables read once per token
  return {3.0 * n, 2.0 * act_bytes * n + 8.0 * double(T) * double(head_dim / 2)};
}

OpCost cost_residual(int64_t T, int64_t H, double act_bytes) {
  return {double(T * H), 3.0 * act_bytes * double(T * H)};
}

OpCost cost_swiglu(int64_t T, int64_t F, double act_bytes) {
  // silu(g) * u: exp, add, divide, 2 multiplies ~ 5 flops (exp counted as 1)
  return {5.0 * double(T * F), 3.0 * act_bytes * double(T * F)};
}

OpCost cost_attention(const std::vector<int32_t> &pos0, const std::vector<int32_t> &n_new, int64_t n_heads,
                      int64_t n_kv_heads, int64_t d, double kv_bytes, double act_bytes) {
  OpCost c;
  for (size_t s = 0; s < pos0.size(); ++s) {
    const double p0 = pos0[s], n = n_new[s];
    // keys attended: sum over queries of (p0 + i + 1) = n * p0 + n (n + 1) / 2
    const double keys = n * p0 + n * (n + 1) / 2;
    c.flops += double(n_heads) * keys * (4.0 * double(d) + 5.0);  // QK dot + PV axpy, softmax ~5
    const double kv_len = p0 + n;
    c.bytes += 2.0 * kv_len * double(n_kv_heads * d) * kv_bytes;  // K and V read
    c.bytes += 2.0 * n * double(n_kv_heads * d) * kv_bytes;       // new K and V written
    c.bytes += n * double(n_heads * d) * 2.0 * act_bytes;         // q in, z out
  }
  return c;
}

OpCost cost_sample(int64_t rows, int64_t vocab) { return {5.0 * double(rows * vocab), 4.0 * double(rows * vocab)}; }

OpCost cost_all_reduce(int64_t elems, double elem_bytes, int32_t ranks) {
  const double share = double(ranks - 1) / double(ranks);
  return {share * double(elems), 2.0 * share * double(elems) * elem_bytes};
}
OpCost cost_all_gather(double gathered_bytes, int32_t ranks) {
  return {0.0, double(ranks - 1) / double(ranks) * gathered_bytes};
}

namespace {
#define QW_MATMUL_COST                                                                                   \
  "matmul per weight: flops 2*T*rows*cols (+T*rows with bias); bytes rows*cols*weight bytes/elem (+4*rows " \
  "bias) + act*T*(cols+rows)"
#define QW_NORM_COST "rmsnorm: flops 4*T*H; bytes 2*act*T*H + 4*H (weight)"
const OpInfo kOps[QW_OP_COUNT] = {
    {"embed", "gather: bytes T*H*(weight bytes/elem + act) + 4*T (ids); flops 2*T*H when W8/W4 (dequantize), else 0"},
    {"attn_norm", QW_NORM_COST},
    {"qkv", QW_MATMUL_COST " (q, k and v summed)"},
    {"rope", "neox rotation: flops 3*T*(nH+nKV)*d; bytes 2*act*T*(nH+nKV)*d + 8*T*d/2 (cos/sin)"},
    {"attention",
     "causal, per sequence: flops nH*keys*(4d+5) with keys = n*p0 + n(n+1)/2; bytes K,V read once per kv head "
     "2*(p0+n)*nKV*d*kv + new K,V written 2*n*nKV*d*kv + q in, z out 2*n*nH*d*act"},
    {"o_proj", QW_MATMUL_COST},
    {"residual", "add: flops T*H; bytes 3*act*T*H"},
    {"ffn_norm", QW_NORM_COST},
    {"gate_up", QW_MATMUL_COST " (gate and up summed)"},
    {"swiglu", "silu(g)*u: flops 5*T*F; bytes 3*act*T*F"},
    {"down", QW_MATMUL_COST},
    {"final_norm", QW_NORM_COST},
    {"lm_head", QW_MATMUL_COST " (rows = vocab, T = rows whose logits are needed)"},
    {"sample", "flops 5*rows*vocab; bytes 4*rows*vocab"},
    {"fused", "the sum of the models of the ops it fuses (the kernel name says which)"},
    {"gap", "none: time when no op ran (flops 0, bytes 0)"},
    {"memcpy", "none: a host<->device copy of step parameters or results (flops 0, bytes 0)"},
    {"pool_wake", "none: waking the CPU worker pool (flops 0, bytes 0)"},
    {"all_reduce",
     "tensor parallelism, per rank (nccl-tests bus bandwidth): bytes 2*(N-1)/N*message, flops (N-1)/N*elements; "
     "message = T*H*4 (fp32 partial sums)"},
    {"all_gather", "tensor parallelism, per rank: bytes (N-1)/N*gathered (the [N, T, ceil(V/N)] fp32 logits), flops 0"},
};
#undef QW_MATMUL_COST
#undef QW_NORM_COST
}  // namespace

const OpInfo &op_info(int32_t op) { return kOps[op]; }
const char *op_name(int32_t op) { return (op >= 0 && op < QW_OP_COUNT) ? kOps[op].name : ""; }

}  // namespace qw
