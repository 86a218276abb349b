// model_upload.cu — the model's weights to the device, in their native layouts (gemv.cuh WMat). At finalize,
// q/k/v of a layer are fused into one matrix (rows q | k | v; pair-interleaved per head for the decode GEMV's
// RoPE epilogue unless QW_FUSED_ROPE=0) and gate/up into one matrix with interleaved rows (2j = gate j,
// 2j+1 = up j) when the parts share a type and group; otherwise they stay separate (a Q4_K_M file mixes types).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "marlin.cuh"
#include "session.cuh"
#include "two_level.hpp"

namespace qw {
namespace cuda_backend {
namespace {

// Builds a device matrix from host parts stacked by a row order: order[i] = (part, row in part).
DevMat upload_rows(const std::vector<const NativeTensor *> &parts,
                   const std::vector<std::pair<int, int64_t>> &order) {
  const NativeTensor &p0 = *parts[0];
  DevMat d;
  d.type = p0.type;
  d.group = p0.group;
  const int64_t cols = p0.cols, rows = (int64_t)order.size();
  size_t row_bytes = 0;
  switch (p0.type) {
    case NativeType::F32: row_bytes = cols * 4; break;
    case NativeType::F16: case NativeType::BF16: row_bytes = cols * 2; break;
    case NativeType::W8: row_bytes = cols; break;
    case NativeType::W4: row_bytes = cols / 2; break;
  }
  const int64_t gpr = p0.group ? cols / p0.group : 0;
  std::vector<uint8_t> h(row_bytes * rows);
  std::vector<float> hs(gpr * rows), ho(gpr * rows);
  for (int64_t r = 0; r < rows; ++r) {
    const NativeTensor &t = *parts[order[r].first];
    const int64_t src = order[r].second;
    std::memcpy(h.data() + r * row_bytes, t.data.data() + src * row_bytes, row_bytes);
    if (gpr) {
      std::memcpy(hs.data() + r * gpr, t.scale.data() + src * gpr, gpr * 4);
      std::memcpy(ho.data() + r * gpr, t.offset.data() + src * gpr, gpr * 4);
    }
  }
  d.data = DBuf(h.size());
  CK(cudaMemcpy(d.data.p, h.data(), h.size(), cudaMemcpyHostToDevice));
  if (gpr) {
    d.scale = DBuf(hs.size() * 4);
    d.offset = DBuf(ho.size() * 4);
    CK(cudaMemcpy(d.scale.p, hs.data(), hs.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.offset.p, ho.data(), ho.size() * 4, cudaMemcpyHostToDevice));
  }
  d.m.data = d.data.p;
  d.m.scale = d.scale.as<float>();
  d.m.offset = d.offset.as<float>();
  // the decode GEMVs' two-level scales (K-quant sources: Q4_K / Q5_K / Q6_K), where every 256 columns of every row
  // have that form bit for bit (QW_TWO_LEVEL=1; off by default: on an H100 the eighteenth run measured 7B Q4_K_M b1
  // 208.3 -> 200.4 tok/s exact, 286.1 -> 289.9 int8, for ~0.76 GB more device memory: the GEMVs are not bound by those
  // bytes); else one offset for all groups where they all have the same bits (symmetric W8: q8, Q8_0;
  // QW_UNIFORM_OFFSETS=0 loads them: 7B q8 b1 exact 199.7 -> 203.0 with it)
  static const bool two_level_on = qwc::env_opt_in("QW_TWO_LEVEL", "the decode GEMVs read the fp32 group scales",
                                                   "two-level group scales where the weights have them");
  static const bool uniform_on = qwc::env_switch_on("QW_UNIFORM_OFFSETS", "the decode GEMVs load every group's offset",
                                                    "one offset for a matrix whose offsets all have the same bits");
  qwc::TwoLevel tl;
  if (gpr && two_level_on && qwc::make_two_level(hs.data(), ho.data(), rows, cols, p0.group, &tl)) {
    d.tl_codes = DBuf(tl.codes.size() * 2);
    d.tl_dm = DBuf(tl.dm.size() * 4);
    CK(cudaMemcpy(d.tl_codes.p, tl.codes.data(), tl.codes.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d.tl_dm.p, tl.dm.data(), tl.dm.size() * 4, cudaMemcpyHostToDevice));
    d.m.tl_codes = d.tl_codes.as<uint16_t>();
    d.m.tl_dm = d.tl_dm.as<float2>();
    d.m.tl_shift = tl.shift;
  } else if (gpr && uniform_on &&
             std::all_of(ho.begin(), ho.end(), [&](float o) { return std::memcmp(&o, &ho[0], 4) == 0; })) {
    d.m.off_uniform = 1;  // symmetric weights: the decode GEMVs read the scales only (group_so)
    d.m.off_value = ho[0];
  }
  d.m.rows = rows;
  d.m.cols = cols;
  d.m.group = p0.group;
  d.m.type = (int32_t)p0.type;
  return d;
}
DevMat upload(const NativeTensor &t) {
  std::vector<std::pair<int, int64_t>> order(t.rows);
  for (int64_t r = 0; r < t.rows; ++r) order[r] = {0, r};
  return upload_rows({&t}, order);
}
DBuf upload_vec(const NativeTensor &t) {
  DBuf b(t.data.size());
  CK(cudaMemcpy(b.p, t.data.data(), t.data.size(), cudaMemcpyHostToDevice));
  return b;
}
bool same_layout(const NativeTensor &a, const NativeTensor &b) {
  return a.type == b.type && a.group == b.group && a.cols == b.cols;
}

}  // namespace

void CudaModel::finalize() {
  dev_guard([&] {
    const Config &c = cfg;
    auto note = [&](const DevMat &d) {
      if (d.type != NativeType::BF16) all_bf16 = false;
      max_matrix_elems = std::max(max_matrix_elems, (size_t)(d.m.rows * d.m.cols));
    };
    embed = upload(need("token_embd.weight"));
    if (!c.eagle_head) out_norm = upload_vec(need("output_norm.weight"));
    if (c.eagle_head) {  // SafeAILab's fc over [embedding ; feature] (cuda/eagle_session.cu)
      eagle_fc = upload(need("eagle.fc.weight"));
      eagle_fc_bias = upload_vec(need("eagle.fc.bias"));
      note(eagle_fc);
    }
    if (!c.tie_embeddings || host_.count("output.weight")) {
      lm_head_own = upload(need("output.weight"));
      lm_head = &lm_head_own.m;
    } else {
      lm_head = &embed.m;
    }
    for (int32_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      Layer &L = layers[l];
      if (!c.eagle_head) L.attn_norm = upload_vec(need(p + "attn_norm.weight"));  // EAGLE's layer 0 has none
      L.ffn_norm = upload_vec(need(p + "ffn_norm.weight"));
      NativeTensor &q = need(p + "attn_q.weight"), &k = need(p + "attn_k.weight"), &v = need(p + "attn_v.weight");
      // bias q|k|v (fp32)
      {
        const NativeTensor &bq = need(p + "attn_q.bias"), &bk = need(p + "attn_k.bias"), &bv = need(p + "attn_v.bias");
        std::vector<uint8_t> b;
        b.insert(b.end(), bq.data.begin(), bq.data.end());
        b.insert(b.end(), bk.data.begin(), bk.data.end());
        b.insert(b.end(), bv.data.begin(), bv.data.end());
        L.qkv_bias = DBuf(b.size());
        CK(cudaMemcpy(L.qkv_bias.p, b.data(), b.size(), cudaMemcpyHostToDevice));
      }
      if (same_layout(q, k) && same_layout(q, v)) {
        // RoPE fused into the decode projection (QW_FUSED_ROPE=0 keeps the separate rope kernel): the q and k
        // rows of each head are pair-interleaved (an exact row permutation, see gemv.cuh)
        L.qkv_pairs = qwc::env_switch_on("QW_FUSED_ROPE", "the separate rope kernel", "RoPE fused into the q/k projection");
        std::vector<std::pair<int, int64_t>> order;
        const int64_t QKVR = q.rows + k.rows + v.rows;
        for (int64_t p = 0; p < QKVR; ++p) {
          const int64_t o = L.qkv_pairs ? qwc::qkv_rope_orig_row(p, c.num_heads, c.num_kv_heads, c.head_dim) : p;
          if (o < q.rows) order.push_back({0, o});
          else if (o < q.rows + k.rows) order.push_back({1, o - q.rows});
          else order.push_back({2, o - q.rows - k.rows});
        }
        L.qkv = upload_rows({&q, &k, &v}, order);
        if (L.qkv.m.rows != c.q_dim() + 2 * c.kv_dim()) throw Error(QW_ERR_SHAPE, "fused qkv has the wrong row count");
        note(L.qkv);
      } else {
        L.q = upload(q); L.k = upload(k); L.v = upload(v);
        note(L.q); note(L.k); note(L.v);
      }
      NativeTensor &g = need(p + "ffn_gate.weight"), &u = need(p + "ffn_up.weight");
      if (same_layout(g, u)) {
        std::vector<std::pair<int, int64_t>> order;
        for (int64_t r = 0; r < g.rows; ++r) { order.push_back({0, r}); order.push_back({1, r}); }
        L.gate_up = upload_rows({&g, &u}, order);
        if (L.gate_up.m.rows != 2LL * c.intermediate_size) throw Error(QW_ERR_SHAPE, "fused gate_up has the wrong row count");
        note(L.gate_up);
      } else {
        L.gate = upload(g); L.up = upload(u);
        note(L.gate); note(L.up);
      }
      L.o = upload(need(p + "attn_output.weight"));
      L.down = upload(need(p + "ffn_down.weight"));
      note(L.o); note(L.down);
      // free host copies of this layer
      for (const char *n : {"attn_norm.weight", "ffn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                            "attn_q.bias", "attn_k.bias", "attn_v.bias", "ffn_gate.weight", "ffn_up.weight",
                            "attn_output.weight", "ffn_down.weight"})
        host_.erase(p + n);
    }
    // RoPE inverse frequencies, HF order: inv = 1 / theta ** (float(2i) / d) in fp32
    std::vector<float> inv(c.head_dim / 2);
    for (int i = 0; i < c.head_dim / 2; ++i) {
      const float e = (float)(2 * i) / (float)c.head_dim;
      inv[i] = 1.0f / powf(c.rope_theta, e);
    }
    inv_freq = DBuf(inv.size() * 4);
    CK(cudaMemcpy(inv_freq.p, inv.data(), inv.size() * 4, cudaMemcpyHostToDevice));
    host_.clear();
    return 0;
  });
}

void CudaModel::ensure_marlin() {
  std::lock_guard<std::mutex> lk(marlin_mu);
  if (marlin_packed) return;
  dev_guard([&] {
    auto pack = [&](DevMat &d) {
      if (!d.present() || !qwc::marlin_packable(d.m)) return;
      d.mpack = DBuf(qwc::marlin_packed_bytes(d.m));
      d.mm = qwc::launch_marlin_pack(d.m, d.mpack.as<uint8_t>(), 0);
      const qwc::MarlinPlan p = qwc::marlin_plan_for(d.m.rows, d.m.cols, d.m.type, d.m.group);
      marlin_part_bytes = std::max(marlin_part_bytes, p.part_bytes());
      marlin_cnt_n = std::max(marlin_cnt_n, p.n_blk);
    };
    // bf16 matrices too small for one tensor-core block per SM split K over blocks (gemv_mma.cu, QW_GEMV_MMA_SPLIT)
    // in the same scratch
    auto split = [&](const DevMat &d) {
      if (!d.present() || d.m.type != qwc::WT_BF16 || (d.m.cols % 32) != 0) return;
      int32_t tiles = 0;
      marlin_part_bytes = std::max(marlin_part_bytes, qwc::gemv_mma_split_bytes(d.m.rows, d.m.cols, &tiles));
      marlin_cnt_n = std::max(marlin_cnt_n, tiles);
    };
    for (Layer &L : layers)
      for (DevMat *d : {&L.qkv, &L.q, &L.k, &L.v, &L.gate_up, &L.gate, &L.up, &L.o, &L.down}) {
        pack(*d);
        split(*d);
      }
    pack(lm_head == &embed.m ? embed : lm_head_own);  // tied: the packed copy serves lm_head, the gather keeps embed's
    CK(cudaDeviceSynchronize());
    return 0;
  });
  marlin_packed = true;
}

}  // namespace cuda_backend
}  // namespace qw
