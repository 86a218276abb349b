// gqa_attention.cu — the dispatch of toggle gqa on CUDA (see gqa_attention.cuh).
#include "gqa_attention.cuh"
#include "kv_broadcast.cuh"

namespace qwc {

GqaKv gqa_kv(qw::Gqa arm, const GqaKvArgs &a, cudaStream_t s) {
  GqaKv r;
  if (arm == qw::Gqa::Native) {
    r.k = a.kcache;
    r.v = a.vcache;
    r.n_kv = a.n_kv;
    return r;
  }
  if (!a.scratch_k || !a.scratch_v) throw CudaError("gqa_kv: gqa = broadcast needs its scratch cache");
  launch_kv_broadcast(a.scratch_k, a.scratch_v, a.kcache, a.vcache, a.slot, a.len, a.rows, a.n_heads, a.n_kv,
                      a.head_dim, a.max_ctx, a.max_len, s);
  r.k = a.scratch_k;
  r.v = a.scratch_v;
  r.n_kv = a.n_heads;
  r.scratch = true;
  return r;
}

}  // namespace qwc
