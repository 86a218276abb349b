// persistent_emu.hpp — a CPU emulation of the persistent decode kernel's grid (persistent_plan.hpp), for the C++ test
// (test_persistent.cpp). Blocks run their tasks k, k + blocks, ... in random interleavings of three events per task (an attention split's signal is its arrival; the last active one combines there)
// (wait satisfied -> compute -> signal); every task's math is fp32 over the same physical layouts the kernel reads
// (pair-interleaved q|k|v rows, interleaved gate|up rows), and every element it reads or writes goes through a race
// detector built on the happens-before order the counters give (vector clocks per block): a read must see the
// program-order-latest write and be ordered after it, a write must be ordered after every earlier read and write of
// the element. Header-only: the test is its only user.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "persistent_plan.hpp"

namespace qw {
namespace persist {

// A random model in both layouts: logical (q|k|v in HF order, gate and up apart) for the reference, physical for the
// tasks. fp32 throughout.
struct EmuModel {
  Dims d;  // batch and n_split unused here
  int32_t max_ctx = 0;
  float eps = 1e-6f;
  std::vector<float> embed, out_norm, lm, inv_freq;  // [V][H], [H], [V][H], [d/2]
  struct Layer {
    std::vector<float> attn_norm, ffn_norm, qkv, qkv_bias, o, gate, up, down;  // logical
    std::vector<float> qkv_phys, gu_phys;                                      // physical rows
  };
  std::vector<Layer> layers;
};

inline EmuModel make_emu_model(const Dims &d, int32_t max_ctx, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  auto fill = [&](std::vector<float> &v, size_t count, float scale, float base = 0.f) {
    v.resize(count);
    for (auto &x : v) x = base + scale * n(g);
  };
  EmuModel m;
  m.d = d;
  m.max_ctx = max_ctx;
  const int64_t H = d.hidden, I = d.inter, QKV = d.q_dim() + 2 * d.kv_dim();
  fill(m.embed, size_t(d.vocab * H), 1.f);
  fill(m.out_norm, size_t(H), 0.1f, 1.f);
  fill(m.lm, size_t(d.vocab * H), 1.f / std::sqrt(float(H)));
  m.inv_freq.resize(size_t(d.head_dim / 2));
  for (int32_t i = 0; i < d.head_dim / 2; ++i) m.inv_freq[size_t(i)] = std::pow(10000.f, -2.f * i / d.head_dim);
  m.layers.resize(size_t(d.layers));
  for (auto &L : m.layers) {
    fill(L.attn_norm, size_t(H), 0.1f, 1.f);
    fill(L.ffn_norm, size_t(H), 0.1f, 1.f);
    fill(L.qkv, size_t(QKV * H), 1.f / std::sqrt(float(H)));
    fill(L.qkv_bias, size_t(QKV), 0.1f);
    fill(L.o, size_t(H * d.q_dim()), 1.f / std::sqrt(float(d.q_dim())));
    fill(L.gate, size_t(I * H), 1.f / std::sqrt(float(H)));
    fill(L.up, size_t(I * H), 1.f / std::sqrt(float(H)));
    fill(L.down, size_t(H * I), 1.f / std::sqrt(float(I)));
    L.qkv_phys.resize(L.qkv.size());
    for (int64_t p = 0; p < QKV; ++p) {
      const int64_t o = qkv_orig_row(p, d.n_heads, d.n_kv, d.head_dim);
      std::copy_n(&L.qkv[size_t(o * H)], H, &L.qkv_phys[size_t(p * H)]);
    }
    L.gu_phys.resize(size_t(2 * I * H));
    for (int64_t j = 0; j < I; ++j) {
      std::copy_n(&L.gate[size_t(j * H)], H, &L.gu_phys[size_t(2 * j * H)]);
      std::copy_n(&L.up[size_t(j * H)], H, &L.gu_phys[size_t((2 * j + 1) * H)]);
    }
  }
  return m;
}

// A batch of sequences' state: KV cache [L][slots][nKV][max_ctx][d] and the step's rows.
struct EmuStep {
  std::vector<int32_t> tokens, pos, slot;  // per row b; the step attends to pos + 1 keys of its slot
};

inline float silu(float g) { return g / (1.f + std::exp(-g)); }
inline float dot(const float *a, const float *b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
inline float rms_rstd(const float *x, int64_t n, float eps) { return 1.f / std::sqrt(dot(x, x, n) / float(n) + eps); }

// The plain decode step, op after op (HF order), as the reference: logits [B][V]; kv updated.
inline std::vector<float> reference_step(const EmuModel &m, std::vector<float> &kv_k, std::vector<float> &kv_v,
                                         const EmuStep &s) {
  const Dims &d = m.d;
  const int64_t H = d.hidden, I = d.inter, D = d.head_dim, QD = d.q_dim(), KD = d.kv_dim(), QKV = QD + 2 * KD;
  const int32_t B = int32_t(s.tokens.size()), G = d.group(), half = d.head_dim / 2;
  std::vector<float> logits(static_cast<size_t>(B * d.vocab));
  for (int32_t b = 0; b < B; ++b) {
    std::vector<float> x(&m.embed[size_t(s.tokens[size_t(b)] * H)], &m.embed[size_t((s.tokens[size_t(b)] + 1) * H)]);
    const int32_t pos = s.pos[size_t(b)], len = pos + 1;
    for (int32_t l = 0; l < d.layers; ++l) {
      const EmuModel::Layer &L = m.layers[size_t(l)];
      std::vector<float> xn(static_cast<size_t>(H)), qkv(static_cast<size_t>(QKV)), z(static_cast<size_t>(QD)), h(static_cast<size_t>(I));
      float r = rms_rstd(x.data(), H, m.eps);
      for (int64_t k = 0; k < H; ++k) xn[size_t(k)] = x[size_t(k)] * r * L.attn_norm[size_t(k)];
      for (int64_t o = 0; o < QKV; ++o) qkv[size_t(o)] = dot(&L.qkv[size_t(o * H)], xn.data(), H) + L.qkv_bias[size_t(o)];
      for (int32_t hd = 0; hd < d.n_heads + d.n_kv; ++hd)  // RoPE of q and k heads, pairs (i, i + d/2)
        for (int32_t i = 0; i < half; ++i) {
          float *v = &qkv[size_t(hd * D)];
          const float a = pos * m.inv_freq[size_t(i)], c = std::cos(a), sn = std::sin(a), x1 = v[i], x2 = v[i + half];
          v[i] = x1 * c - x2 * sn;
          v[i + half] = x2 * c + x1 * sn;
        }
      const size_t base = size_t(l) * size_t(B) * KD * m.max_ctx;  // slots == B in the test
      for (int32_t g = 0; g < d.n_kv; ++g)
        for (int64_t e = 0; e < D; ++e) {
          const size_t at = base + ((size_t(s.slot[size_t(b)]) * d.n_kv + g) * m.max_ctx + pos) * D + e;
          kv_k[at] = qkv[size_t(QD + g * D + e)];
          kv_v[at] = qkv[size_t(QD + KD + g * D + e)];
        }
      for (int32_t hq = 0; hq < d.n_heads; ++hq) {
        const int32_t g = hq / G;
        const size_t kb = base + (size_t(s.slot[size_t(b)]) * d.n_kv + g) * m.max_ctx * D;
        std::vector<float> sc(static_cast<size_t>(len));
        float mx = -INFINITY, sum = 0.f;
        for (int32_t t = 0; t < len; ++t) {
          sc[size_t(t)] = dot(&qkv[size_t(hq * D)], &kv_k[kb + size_t(t) * D], D) / std::sqrt(float(D));
          mx = std::max(mx, sc[size_t(t)]);
        }
        for (auto &v : sc) sum += (v = std::exp(v - mx));
        for (int64_t e = 0; e < D; ++e) {
          float acc = 0.f;
          for (int32_t t = 0; t < len; ++t) acc += sc[size_t(t)] * kv_v[kb + size_t(t) * D + e];
          z[size_t(hq * D + e)] = acc / sum;
        }
      }
      for (int64_t o = 0; o < H; ++o) x[size_t(o)] += dot(&L.o[size_t(o * QD)], z.data(), QD);
      r = rms_rstd(x.data(), H, m.eps);
      for (int64_t k = 0; k < H; ++k) xn[size_t(k)] = x[size_t(k)] * r * L.ffn_norm[size_t(k)];
      for (int64_t j = 0; j < I; ++j)
        h[size_t(j)] = silu(dot(&L.gate[size_t(j * H)], xn.data(), H)) * dot(&L.up[size_t(j * H)], xn.data(), H);
      for (int64_t o = 0; o < H; ++o) x[size_t(o)] += dot(&L.down[size_t(o * I)], h.data(), I);
    }
    std::vector<float> xn(static_cast<size_t>(H));
    const float r = rms_rstd(x.data(), H, m.eps);
    for (int64_t k = 0; k < H; ++k) xn[size_t(k)] = x[size_t(k)] * r * m.out_norm[size_t(k)];
    for (int32_t v = 0; v < d.vocab; ++v) logits[size_t(b * d.vocab + v)] = dot(&m.lm[size_t(v * H)], xn.data(), H);
  }
  return logits;
}

// The emulated device memory: named buffers of floats, each element with its access history for the race detector.
enum Buf { B_X, B_Q, B_K, B_V, B_WS_O, B_WS_M, B_WS_L, B_Z, B_H, B_LOGITS, B_COUNT };

struct Grid {
  const Plan &p;
  const EmuModel &m;
  const EmuStep &s;
  std::vector<float> *kv_k, *kv_v;  // the caches persist across steps
  std::vector<std::vector<float>> mem;
  struct Hist {
    int32_t writer = -1, worder = -1;                 // the writing task and its place in program order
    std::vector<std::pair<int32_t, int32_t>> readers;  // (task, place) since the last write
  };
  std::vector<std::vector<Hist>> hist;
  std::vector<std::vector<int32_t>> vc;  // per task: tasks of each block known done (happens-before), once started
  std::vector<int32_t> task_block, task_seq;
  std::vector<std::string> errors;
  int32_t cur = -1;        // the task computing now (its vector clock orders its accesses)
  int32_t cur_order = -1;  // its place in program order: its index; a combine's, the last split of its group (it
                           // runs inside whichever split arrives last, logically after all of them)
  std::vector<int32_t> attn_last;  // per (layer, sequence x kv head): the index of its last attention task

  Grid(const Plan &plan, const EmuModel &model, const EmuStep &step, std::vector<float> &k, std::vector<float> &v)
      : p(plan), m(model), s(step), kv_k(&k), kv_v(&v) {
    const Dims &d = p.d;
    const size_t B = size_t(d.batch), BK = B * size_t(d.n_kv), NS = size_t(d.n_split), G = size_t(d.group());
    const size_t sizes[B_COUNT] = {B * d.hidden, B * d.q_dim(), k.size(), v.size(), BK * NS * G * d.head_dim,
                                   BK * NS * G, BK * NS * G, B * d.q_dim(), B * d.inter, B * d.vocab};
    mem.resize(B_COUNT);
    hist.resize(B_COUNT);
    for (int i = 0; i < B_COUNT; ++i) {
      mem[size_t(i)].assign(sizes[i], 0.f);
      hist[size_t(i)].resize(sizes[i]);
    }
    mem[B_K] = k;
    mem[B_V] = v;
    const size_t n = p.tasks.size();
    task_block.resize(n);
    task_seq.resize(n);
    for (size_t i = 0; i < n; ++i) {
      task_block[i] = int32_t(i % size_t(p.blocks));
      task_seq[i] = int32_t(i / size_t(p.blocks));
    }
    vc.assign(n, std::vector<int32_t>());
    attn_last.assign(size_t(d.layers) * BK, -1);
    for (size_t i = 0; i < n; ++i)
      if (p.tasks[i].op == T_ATTN) attn_last[size_t(p.tasks[i].layer) * BK + size_t(p.tasks[i].a)] = int32_t(i);
  }
  bool hb(int32_t a, int32_t b) const {  // task a happens before task b (b started)
    return a == b || vc[size_t(b)][size_t(task_block[size_t(a)])] > task_seq[size_t(a)];
  }
  void fail(const std::string &what, Buf b, size_t i, int32_t other) {
    if (errors.size() < 8)
      errors.push_back(what + " on buffer " + std::to_string(b) + "[" + std::to_string(i) + "]: task " +
                       std::to_string(cur) + " vs task " + std::to_string(other));
  }
  float rd(Buf b, size_t i) {
    Hist &h = hist[size_t(b)][i];
    // every buffer but the caches (rows of earlier steps) is written in the step before it is read: a read of an
    // unwritten element is a stale value on the GPU (e.g. a combine reading an empty split's partials)
    if (h.writer < 0 && b != B_K && b != B_V) fail("read of an element no task of this step wrote", b, i, -1);
    else if (h.worder > cur_order) fail("read after a later task's write (WAR order)", b, i, h.writer);
    else if (h.writer >= 0 && !hb(h.writer, cur)) fail("read not ordered after its write (RAW race)", b, i, h.writer);
    h.readers.emplace_back(cur, cur_order);
    return mem[size_t(b)][i];
  }
  void wr(Buf b, size_t i, float v) {
    Hist &h = hist[size_t(b)][i];
    if (h.worder > cur_order) fail("write after a later task's write", b, i, h.writer);
    else if (h.writer >= 0 && !hb(h.writer, cur)) fail("write not ordered after the previous write (WAW race)", b, i, h.writer);
    for (const auto &[r, ro] : h.readers)
      if (r != cur && (ro > cur_order || !hb(r, cur))) fail("write not ordered after a read (WAR race)", b, i, r);
    h.readers.clear();
    h.writer = cur;
    h.worder = cur_order;
    mem[size_t(b)][i] = v;
  }
  size_t kv_at(int32_t l, int32_t slot, int32_t g, int32_t t, int32_t e) const {
    const Dims &d = p.d;
    return ((((size_t)l * d.batch + slot) * d.n_kv + g) * m.max_ctx + t) * d.head_dim + e;
  }
  // act[b][k] of a GEMV with the RMSNorm prologue over x
  std::vector<float> normed(const std::vector<float> &w) {
    const Dims &d = p.d;
    std::vector<float> a(static_cast<size_t>(d.batch * d.hidden)), x(static_cast<size_t>(d.hidden));
    for (int32_t b = 0; b < d.batch; ++b) {
      for (int32_t k = 0; k < d.hidden; ++k) x[size_t(k)] = rd(B_X, size_t(b * d.hidden + k));
      const float r = rms_rstd(x.data(), d.hidden, m.eps);
      for (int32_t k = 0; k < d.hidden; ++k) a[size_t(b * d.hidden + k)] = x[size_t(k)] * r * w[size_t(k)];
    }
    return a;
  }
  // An attention split past the sequence's keys: the kernel skips its wait and its work and does not signal (the last
  // active split to arrive combines, attn_arrive).
  bool empty_split(const Task &t) const {
    return t.op == T_ATTN && split_empty(s.pos[size_t(t.a / p.d.n_kv)] + 1, p.d.n_split, t.b);
  }
  void run(const Task &t);      // below
  void combine(const Task &t);  // below
};

inline void Grid::run(const Task &t) {
  const Dims &d = p.d;
  const int64_t H = d.hidden, I = d.inter, D = d.head_dim, QD = d.q_dim(), KD = d.kv_dim();
  const int32_t B = d.batch, G = d.group(), half = d.head_dim / 2;
  const EmuModel::Layer *L = t.layer >= 0 ? &m.layers[size_t(t.layer)] : nullptr;
  switch (t.op) {
    case T_EMBED:
      for (int64_t k = 0; k < H; ++k) wr(B_X, size_t(t.a * H + k), m.embed[size_t(s.tokens[size_t(t.a)] * H + k)]);
      break;
    case T_QKV: {
      const std::vector<float> a = normed(L->attn_norm);
      for (int32_t b = 0; b < B; ++b) {
        const int32_t pos = s.pos[size_t(b)], slot = s.slot[size_t(b)];
        for (int32_t r = t.a; r < t.b; r += 2) {  // physical pairs (r, r + 1)
          float v[2];
          int64_t orow[2];
          for (int e = 0; e < 2; ++e) {
            orow[e] = qkv_orig_row(r + e, d.n_heads, d.n_kv, d.head_dim);
            v[e] = dot(&L->qkv_phys[size_t((r + e) * H)], &a[size_t(b * H)], H) + L->qkv_bias[size_t(orow[e])];
          }
          if (r < QD + KD) {  // a RoPE pair: dims (i, i + d/2) of one head
            const int32_t head = int32_t(orow[0] / D), i = int32_t(orow[0] % D);
            const float ang = pos * m.inv_freq[size_t(i)], c = std::cos(ang), sn = std::sin(ang);
            const float o1 = v[0] * c - v[1] * sn, o2 = v[1] * c + v[0] * sn;
            if (head < d.n_heads) {
              wr(B_Q, size_t(b * QD + head * D + i), o1);
              wr(B_Q, size_t(b * QD + head * D + i + half), o2);
            } else {
              wr(B_K, kv_at(t.layer, slot, head - d.n_heads, pos, i), o1);
              wr(B_K, kv_at(t.layer, slot, head - d.n_heads, pos, i + half), o2);
            }
          } else {
            for (int e = 0; e < 2; ++e) {
              const int64_t vi = orow[e] - QD - KD;
              wr(B_V, kv_at(t.layer, slot, int32_t(vi / D), pos, int32_t(vi % D)), v[e]);
            }
          }
        }
      }
      break;
    }
    case T_ATTN: {
      if (empty_split(t)) break;  // no reads, no partials: the combine reads the active splits only
      const int32_t b = t.a / d.n_kv, g = t.a % d.n_kv, len = s.pos[size_t(b)] + 1;
      const int32_t t0 = split_begin(len, d.n_split, t.b), t1 = split_end(len, d.n_split, t.b);
      for (int32_t j = 0; j < G; ++j) {
        const int32_t hq = g * G + j;
        const size_t ws = (size_t(t.a) * d.n_split + t.b) * G + j;
        float mx = -INFINITY, l = 0.f;
        std::vector<float> o(static_cast<size_t>(D), 0.f), q(static_cast<size_t>(D));
        for (int64_t e = 0; e < D; ++e) q[size_t(e)] = rd(B_Q, size_t(b * QD + hq * D + e));
        for (int32_t tk = t0; tk < t1; ++tk) {  // online softmax, the kernel's order
          float sc = 0.f;
          for (int64_t e = 0; e < D; ++e) sc += q[size_t(e)] * rd(B_K, kv_at(t.layer, s.slot[size_t(b)], g, tk, int32_t(e)));
          sc /= std::sqrt(float(D));
          const float mn = std::max(mx, sc), alpha = std::exp(mx - mn), pk = std::exp(sc - mn);
          l = l * alpha + pk;
          for (int64_t e = 0; e < D; ++e)
            o[size_t(e)] = o[size_t(e)] * alpha + pk * rd(B_V, kv_at(t.layer, s.slot[size_t(b)], g, tk, int32_t(e)));
          mx = mn;
        }
        wr(B_WS_M, ws, mx);
        wr(B_WS_L, ws, l);
        for (int64_t e = 0; e < D; ++e) wr(B_WS_O, ws * D + e, o[size_t(e)]);
      }
      break;
    }
    case T_OPROJ:
    case T_DOWN: {
      const bool o = t.op == T_OPROJ;
      const int64_t K = o ? QD : I;
      std::vector<float> a(static_cast<size_t>(B * K));
      for (int64_t i = 0; i < B * K; ++i) a[size_t(i)] = rd(o ? B_Z : B_H, size_t(i));
      for (int32_t b = 0; b < B; ++b)
        for (int32_t r = t.a; r < t.b; ++r) {
          const float v = dot(&(o ? L->o : L->down)[size_t(r * K)], &a[size_t(b * K)], K);
          wr(B_X, size_t(b * H + r), rd(B_X, size_t(b * H + r)) + v);
        }
      break;
    }
    case T_GATEUP: {
      const std::vector<float> a = normed(L->ffn_norm);
      for (int32_t b = 0; b < B; ++b)
        for (int32_t r = t.a; r < t.b; r += 2) {
          const float g = dot(&L->gu_phys[size_t(r * H)], &a[size_t(b * H)], H);
          const float u = dot(&L->gu_phys[size_t((r + 1) * H)], &a[size_t(b * H)], H);
          wr(B_H, size_t(b * I + r / 2), silu(g) * u);
        }
      break;
    }
    case T_LMHEAD: {
      const std::vector<float> a = normed(m.out_norm);
      for (int32_t b = 0; b < B; ++b)
        for (int32_t r = t.a; r < t.b; ++r)
          wr(B_LOGITS, size_t(b * d.vocab + r), dot(&m.lm[size_t(r * H)], &a[size_t(b * H)], H));
      break;
    }
  }
}

// z of (sequence, kv head) t.a from the active splits' partials, in split order: run by the last active split to
// arrive (persistent_kernels.cu attn_arrive), as part of its task.
inline void Grid::combine(const Task &t) {
  const Dims &d = p.d;
  const int64_t D = d.head_dim, QD = d.q_dim();
  const int32_t G = d.group();
  const int32_t b = t.a / d.n_kv, g = t.a % d.n_kv;
  const int32_t nact = split_count(s.pos[size_t(b)] + 1, d.n_split);  // every active split holds >= 1 key: l > 0
  for (int32_t j = 0; j < G; ++j) {
    float M = -INFINITY;
    for (int32_t sp = 0; sp < nact; ++sp) M = std::max(M, rd(B_WS_M, (size_t(t.a) * d.n_split + sp) * G + j));
    std::vector<float> o(static_cast<size_t>(D), 0.f);
    float l = 0.f;
    for (int32_t sp = 0; sp < nact; ++sp) {
      const size_t ws = (size_t(t.a) * d.n_split + sp) * G + j;
      const float ls = rd(B_WS_L, ws);
      const float f = std::exp(rd(B_WS_M, ws) - M);
      l += ls * f;
      for (int64_t e = 0; e < D; ++e) o[size_t(e)] += rd(B_WS_O, ws * D + e) * f;
    }
    for (int64_t e = 0; e < D; ++e) wr(B_Z, size_t(b * QD + (g * G + j) * D + e), o[size_t(e)] / l);
  }
}

// One emulated step: blocks interleaved at random (seed); returns false on a deadlock. The logits are in
// grid.mem[B_LOGITS]; counters end at plan.final_value (checked by the caller through `counters`).
struct EmuResult {
  bool deadlock = false;
  std::vector<int32_t> counters;  // at the end of the step, before the last block's reset
  int32_t prefetch_misses = 0;    // GEMV tasks whose weights were not prefetched before their wait
  // the kernel's trace stamps (PersistArgs::trace) on a logical clock: one tick per event. Wait: when the block took
  // the task up (its previous one signalled), start: its compute event, end: its signal event; empty splits 0
  std::vector<uint64_t> trace;
};

inline EmuResult emulate(Grid &gr, uint64_t seed) {
  const Plan &p = gr.p;
  const int32_t nb = p.blocks, n = int32_t(p.tasks.size());
  std::mt19937_64 rng(seed);
  EmuResult res;
  std::vector<int32_t> cnt(static_cast<size_t>(p.c.count()), 0);
  std::vector<std::vector<int32_t>> cnt_vc(static_cast<size_t>(p.c.count()), std::vector<int32_t>(size_t(nb), 0));
  std::vector<int32_t> next(static_cast<size_t>(nb)), phase(static_cast<size_t>(nb), 0);  // phase 0: waiting, 1: computed, not signalled
  std::vector<std::vector<int32_t>> blk_vc(static_cast<size_t>(nb), std::vector<int32_t>(size_t(nb), 0));
  std::vector<char> prefetched(static_cast<size_t>(n), 0);
  for (int32_t b = 0; b < nb; ++b) next[size_t(b)] = b;
  res.trace.assign(3 * size_t(n), 0);
  uint64_t clock = 1;
  std::vector<uint64_t> took(static_cast<size_t>(nb), clock);  // when each block took up its current task
  for (;;) {
    std::vector<int32_t> ready;
    bool all_done = true;
    for (int32_t b = 0; b < nb; ++b) {
      const int32_t i = next[size_t(b)];
      if (i >= n) continue;
      all_done = false;
      const Task &t = p.tasks[size_t(i)];
      if (phase[size_t(b)] == 1 || t.wait < 0 || gr.empty_split(t) || cnt[size_t(t.wait)] >= t.target) ready.push_back(b);
    }
    if (all_done) break;
    if (ready.empty()) {
      res.deadlock = true;
      return res;
    }
    const int32_t b = ready[size_t(rng() % ready.size())];
    const int32_t i = next[size_t(b)];
    const Task &t = p.tasks[size_t(i)];
    if (phase[size_t(b)] == 0) {
      // the block's prefetch before it waits (persistent_kernels.cu issues the same targets)
      int32_t pf[2];
      const int32_t np = prefetch_targets(i, nb, n, b, pf);
      for (int32_t k = 0; k < np; ++k) prefetched[size_t(pf[k])] = 1;
      if (is_gemv(t.op) && !prefetched[size_t(i)]) ++res.prefetch_misses;
      std::vector<int32_t> v = blk_vc[size_t(b)];
      if (t.wait >= 0 && !gr.empty_split(t))
        for (int32_t k = 0; k < nb; ++k) v[size_t(k)] = std::max(v[size_t(k)], cnt_vc[size_t(t.wait)][size_t(k)]);
      gr.vc[size_t(i)] = v;
      gr.cur = gr.cur_order = i;
      gr.run(t);
      phase[size_t(b)] = 1;
      if (!gr.empty_split(t)) {
        res.trace[3 * size_t(i)] = took[size_t(b)];
        res.trace[3 * size_t(i) + 1] = ++clock;
      }
    } else {
      blk_vc[size_t(b)] = gr.vc[size_t(i)];
      blk_vc[size_t(b)][size_t(b)] = gr.task_seq[size_t(i)] + 1;  // this task is done
      auto release = [&](int32_t ctr) {  // counter += 1, carrying what this block knows
        ++cnt[size_t(ctr)];
        auto &cv = cnt_vc[size_t(ctr)];
        for (int32_t k = 0; k < nb; ++k) cv[size_t(k)] = std::max(cv[size_t(k)], blk_vc[size_t(b)][size_t(k)]);
      };
      if (t.op != T_ATTN) {
        release(t.signal);
      } else if (!gr.empty_split(t)) {  // an active split arrives; the last one combines, resets and signals
        const int32_t ctr = p.c.split(t.layer, t.a);
        release(ctr);
        if (cnt[size_t(ctr)] == split_count(gr.s.pos[size_t(t.a / p.d.n_kv)] + 1, p.d.n_split)) {
          for (int32_t k = 0; k < nb; ++k)  // acquire: every active split's partials
            blk_vc[size_t(b)][size_t(k)] = std::max(blk_vc[size_t(b)][size_t(k)], cnt_vc[size_t(ctr)][size_t(k)]);
          gr.vc[size_t(i)] = blk_vc[size_t(b)];
          gr.cur = i;
          gr.cur_order = gr.attn_last[size_t(t.layer) * size_t(p.d.batch * p.d.n_kv) + size_t(t.a)];
          gr.combine(t);
          cnt[size_t(ctr)] = 0;
          release(t.signal);
        }
      }
      phase[size_t(b)] = 0;
      next[size_t(b)] = i + nb;
      ++clock;
      if (!gr.empty_split(t)) res.trace[3 * size_t(i) + 2] = clock;
      took[size_t(b)] = clock;
    }
  }
  cnt[size_t(p.c.exit())] = nb;  // every block arrives once at the exit (the kernel's last arrival resets)
  res.counters = cnt;
  *gr.kv_k = gr.mem[B_K];
  *gr.kv_v = gr.mem[B_V];
  return res;
}

}  // namespace persist
}  // namespace qw
