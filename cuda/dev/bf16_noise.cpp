// bf16_noise.cpp — how far two correct bf16 decode pipelines drift apart with depth when only an fp32 summation
// order differs (host only, no GPU): the graph path's bf16 rounding points (q/k/v after bias and RoPE, z, SwiGLU's
// inputs and output, the normed GEMV inputs; fp32 residual), random Qwen2.5-0.5B-shaped weights as `qwlab persistent`
// makes them, one decode step at position 127 over a random bf16 cache. Arm A sums every row as gemv.cu does without
// a K split (lane l takes the 8-element chunks l, l + 32, ..., then an xor butterfly); arm B splits the o_proj and down
// sums into two contiguous halves, as the persistent kernel's 0.5B o_proj tiles do. Prints the logits' max |A - B| /
// max |A| for L layers. Written to judge the first GPU run of decode = persistent (2-layer lab case bitwise equal to
// the graph path, 24-layer engine test 5.6e-3..7.3e-3 apart). Deterministic (seed 1).
//   g++ -O2 -std=c++17 -o /tmp/bf16_noise cuda/dev/bf16_noise.cpp && for L in 2 4 8 12 16 24; do /tmp/bf16_noise $L; done
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {

float bfr(float x) {  // round to bf16 (nearest even), as __float2bfloat16
  uint32_t u;
  memcpy(&u, &x, 4);
  u += 0x7fff + ((u >> 16) & 1);
  u &= 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

// Row . act in `parts` contiguous K parts (each kc elements, whole 8-element chunks), summed in part order; inside a
// part, lane l of 32 takes chunks l, l + 32, ... (a sequential fma chain), then an xor butterfly over the lanes.
float dot_lanes(const float *w, const float *a, int K, int parts) {
  const int kc = ((K + parts - 1) / parts + 7) / 8 * 8;
  float tot = 0.f;
  for (int p = 0; p < parts; ++p) {
    const int k0 = p * kc, k1 = std::min(K, k0 + kc);
    float lane[32] = {0};
    for (int k = k0; k < k1; k += 8) {
      float &s = lane[((k - k0) / 8) % 32];
      for (int e = 0; e < 8 && k + e < k1; ++e) s = fmaf(w[k + e], a[k + e], s);
    }
    for (int off = 16; off; off >>= 1) {
      float t[32];
      for (int l = 0; l < 32; ++l) t[l] = lane[l] + lane[l ^ off];
      memcpy(lane, t, sizeof t);
    }
    tot += lane[0];
  }
  return tot;
}

struct Model {
  int L = 24;
  static constexpr int H = 896, I = 4864, nH = 14, nKV = 2, D = 64, V = 32768, pos = 127, G = nH / nKV;
  static constexpr int QD = nH * D, KD = nKV * D, QKV = QD + 2 * KD;
  struct Lay { std::vector<float> qkv, o, gu, dn, bias, n1, n2, kc, vc; };
  std::vector<Lay> lay;
  std::vector<float> emb, lm, fn, inv;
};

Model make_model(int L) {
  Model m;
  m.L = L;
  std::mt19937 g(1);
  std::normal_distribution<float> n(0.f, 1.f);
  auto mk = [&](size_t count, float sd, float base = 0.f) {
    std::vector<float> v(count);
    for (auto &x : v) x = bfr(base + sd * n(g));
    return v;
  };
  const int H = Model::H, I = Model::I, QD = Model::QD, KD = Model::KD, QKV = Model::QKV, T = Model::pos + 1;
  const float sh = 1.f / sqrtf((float)H);
  m.lay.resize(size_t(L));
  for (auto &w : m.lay) {
    w.qkv = mk((size_t)QKV * H, sh);
    w.o = mk((size_t)H * QD, sh);
    w.gu = mk((size_t)2 * I * H, sh);
    w.dn = mk((size_t)H * I, 1.f / sqrtf((float)I));
    w.bias = mk(QKV, 0.02f);
    w.n1 = mk(H, 0.1f, 1.f);
    w.n2 = mk(H, 0.1f, 1.f);
    w.kc = mk((size_t)KD * T, 1.f);
    w.vc = mk((size_t)KD * T, 1.f);
  }
  m.emb = mk(H, 1.f);
  m.lm = mk((size_t)Model::V * H, sh);
  m.fn = mk(H, 0.1f, 1.f);
  m.inv.resize(Model::D / 2);
  for (int i = 0; i < Model::D / 2; ++i) m.inv[size_t(i)] = 1.0f / powf(1e6f, (float)(2 * i) / Model::D);
  return m;
}

// One decode step; o_proj and down summed in `parts` contiguous K parts.
std::vector<float> step(const Model &m, int parts) {
  const int H = Model::H, I = Model::I, D = Model::D, QD = Model::QD, KD = Model::KD, pos = Model::pos;
  std::vector<float> x(m.emb);
  auto normed = [&](const std::vector<float> &w) {
    float ss = 0;
    for (int k = 0; k < H; ++k) ss = fmaf(x[size_t(k)], x[size_t(k)], ss);
    const float rs = 1.f / sqrtf(ss / H + 1e-6f);
    std::vector<float> a(size_t(H), 0.f);
    for (int k = 0; k < H; ++k) a[size_t(k)] = bfr(bfr(x[size_t(k)] * rs) * w[size_t(k)]);
    return a;
  };
  for (const Model::Lay &w : m.lay) {
    const auto a = normed(w.n1);
    std::vector<float> q(static_cast<size_t>(QD)), k(static_cast<size_t>(KD)), v(static_cast<size_t>(KD)),
        z(static_cast<size_t>(QD)), h(static_cast<size_t>(I));
    for (int o = 0; o < Model::QKV; ++o) {
      const float val = bfr(dot_lanes(&w.qkv[(size_t)o * H], a.data(), H, 1) + w.bias[size_t(o)]);
      if (o < QD) q[size_t(o)] = val;
      else if (o < QD + KD) k[size_t(o - QD)] = val;
      else v[size_t(o - QD - KD)] = val;
    }
    for (int hd = 0; hd < Model::nH + Model::nKV; ++hd)  // RoPE, the epilogue's rounding
      for (int i = 0; i < D / 2; ++i) {
        float *p = hd < Model::nH ? &q[size_t(hd * D)] : &k[size_t((hd - Model::nH) * D)];
        const float c = bfr(cosf(pos * m.inv[size_t(i)])), s = bfr(sinf(pos * m.inv[size_t(i)]));
        const float x1 = p[i], x2 = p[i + D / 2];
        p[i] = bfr(bfr(x1 * c) + bfr(-x2 * s));
        p[i + D / 2] = bfr(bfr(x2 * c) + bfr(x1 * s));
      }
    for (int hq = 0; hq < Model::nH; ++hq) {
      const int g = hq / Model::G;
      auto key = [&](int t) { return t == pos ? &k[size_t(g * D)] : &w.kc[((size_t)g * (pos + 1) + t) * D]; };
      auto val = [&](int t) { return t == pos ? &v[size_t(g * D)] : &w.vc[((size_t)g * (pos + 1) + t) * D]; };
      std::vector<float> sc(static_cast<size_t>(pos + 1));
      float mx = -1e30f, sum = 0;
      for (int t = 0; t <= pos; ++t) {
        float s = 0;
        for (int e = 0; e < D; ++e) s = fmaf(q[size_t(hq * D + e)], key(t)[e], s);
        sc[size_t(t)] = s / sqrtf((float)D);
        mx = std::max(mx, sc[size_t(t)]);
      }
      for (auto &s : sc) sum += (s = expf(s - mx));
      for (int e = 0; e < D; ++e) {
        float acc = 0;
        for (int t = 0; t <= pos; ++t) acc += sc[size_t(t)] * val(t)[e];
        z[size_t(hq * D + e)] = bfr(acc / sum);
      }
    }
    for (int o = 0; o < H; ++o) x[size_t(o)] += dot_lanes(&w.o[(size_t)o * QD], z.data(), QD, parts);
    const auto a2 = normed(w.n2);
    for (int j = 0; j < I; ++j) {  // epilogue_swiglu's rounding
      const float gb = bfr(dot_lanes(&w.gu[(size_t)2 * j * H], a2.data(), H, 1));
      const float ub = bfr(dot_lanes(&w.gu[(size_t)(2 * j + 1) * H], a2.data(), H, 1));
      h[size_t(j)] = bfr(bfr(gb / (1.f + expf(-gb))) * ub);
    }
    for (int o = 0; o < H; ++o) x[size_t(o)] += dot_lanes(&w.dn[(size_t)o * I], h.data(), I, parts);
  }
  const auto a = normed(m.fn);
  std::vector<float> lg(static_cast<size_t>(Model::V));
  for (int t = 0; t < Model::V; ++t) lg[size_t(t)] = dot_lanes(&m.lm[(size_t)t * H], a.data(), H, 1);
  return lg;
}

}  // namespace

int main(int argc, char **argv) {
  const int L = argc > 1 ? atoi(argv[1]) : 24;
  if (L < 1 || L > 64) {
    fprintf(stderr, "usage: bf16_noise [layers 1..64]\n");
    return 2;
  }
  const Model m = make_model(L);
  const auto A = step(m, 1), B = step(m, 2);
  double num = 0, den = 0;
  for (size_t t = 0; t < A.size(); ++t) {
    num = std::max(num, (double)fabsf(A[t] - B[t]));
    den = std::max(den, (double)fabsf(A[t]));
  }
  printf("L=%d: logits max|A-B|/max|A| = %.3e (o_proj and down: one sum vs two contiguous halves)\n", L, num / den);
  return 0;
}
