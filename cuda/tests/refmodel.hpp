// refmodel.hpp — a tiny random Qwen2 model (GGUF-typed tensors) and an independent fp64 forward pass.
#pragma once

#include <functional>
#include <map>

#include "testlib.hpp"

struct RefConfig {
  int V = 96, H = 64, F = 96, L = 2, nH = 4, nKV = 2, d = 16;
  double theta = 10000.0, eps = 1e-6;
  bool tied = true;
  std::string json() const {
    char b[512];
    std::snprintf(b, sizeof b,
                  "{\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
                  "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,"
                  "\"max_position_embeddings\":4096,\"rope_theta\":%g,\"rms_norm_eps\":%g,\"tie_word_embeddings\":%s}",
                  V, H, F, L, nH, nKV, d, theta, eps, tied ? "true" : "false");
    return b;
  }
};

struct RefTensor {
  int32_t type;
  int64_t ne0, ne1;
  bool vector;
  std::vector<uint8_t> raw;
  std::vector<double> w;  // dequantized by the reference formulas, [ne1][ne0]
};

struct RefModel {
  RefConfig c;
  std::map<std::string, RefTensor> t;
  std::vector<std::string> order;

  // type_for(name, ne0) picks the GGUF type of each matrix (vectors are F32).
  RefModel(const RefConfig &cfg, uint64_t seed, const std::function<int32_t(const std::string &, int64_t)> &type_for)
      : c(cfg) {
    Rng r(seed);
    auto add = [&](const std::string &n, int64_t ne0, int64_t ne1, bool vec, float stdev, float mean = 0) {
      RefTensor x;
      x.type = vec ? QW_GGML_F32 : type_for(n, ne0);
      x.ne0 = ne0;
      x.ne1 = ne1;
      x.vector = vec;
      if (vec) {
        x.raw.resize(size_t(ne0 * 4));
        for (int64_t i = 0; i < ne0; ++i) {
          const float v = mean + stdev * r.normal();
          std::memcpy(&x.raw[size_t(4 * i)], &v, 4);
        }
      } else {
        x.raw = random_ggml(r, x.type, ne0 * ne1, stdev);
      }
      std::vector<float> f(size_t(ne0 * ne1));
      ref_dequant(f.data(), x.type, x.raw.data(), ne0 * ne1);
      x.w.assign(f.begin(), f.end());
      t[n] = std::move(x);
      order.push_back(n);
    };
    const int Q = c.nH * c.d, KV = c.nKV * c.d;
    add("token_embd.weight", c.H, c.V, false, 0.5f);
    for (int l = 0; l < c.L; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      add(b + "attn_norm.weight", c.H, 1, true, 0.1f, 1.0f);
      add(b + "attn_q.weight", c.H, Q, false, 0.15f);
      add(b + "attn_q.bias", Q, 1, true, 0.1f);
      add(b + "attn_k.weight", c.H, KV, false, 0.15f);
      add(b + "attn_k.bias", KV, 1, true, 0.1f);
      add(b + "attn_v.weight", c.H, KV, false, 0.15f);
      add(b + "attn_v.bias", KV, 1, true, 0.1f);
      add(b + "attn_output.weight", Q, c.H, false, 0.1f);
      add(b + "ffn_norm.weight", c.H, 1, true, 0.1f, 1.0f);
      add(b + "ffn_gate.weight", c.H, c.F, false, 0.15f);
      add(b + "ffn_up.weight", c.H, c.F, false, 0.15f);
      add(b + "ffn_down.weight", c.F, c.H, false, 0.1f);
    }
    add("output_norm.weight", c.H, 1, true, 0.1f, 1.0f);
    if (!c.tied) add("output.weight", c.H, c.V, false, 0.1f);
  }

  int32_t load(qw_model *m) const {
    for (const auto &n : order) {
      const RefTensor &x = t.at(n);
      const int32_t st = qw_model_load_tensor(m, n.c_str(), x.type, x.vector ? 1 : 2, x.ne0, x.vector ? 1 : x.ne1, 1, 1,
                                              x.raw.data(), x.raw.size());
      if (st != QW_OK) return st;
    }
    return qw_model_finalize(m);
  }

  // y[rows] = W x (+ b)
  void mv(std::vector<double> &y, const std::string &w, const std::vector<double> &x, const char *bias = nullptr) const {
    const RefTensor &W = t.at(w);
    y.assign(size_t(W.ne1), 0.0);
    for (int64_t r = 0; r < W.ne1; ++r) {
      double s = 0;
      for (int64_t k = 0; k < W.ne0; ++k) s += W.w[size_t(r * W.ne0 + k)] * x[size_t(k)];
      y[size_t(r)] = s + (bias ? t.at(bias).w[size_t(r)] : 0.0);
    }
  }
  void rms(std::vector<double> &y, const std::vector<double> &x, const std::string &w) const {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double r = 1.0 / std::sqrt(ss / double(x.size()) + c.eps);
    y.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = t.at(w).w[i] * (x[i] * r);
  }
  void rope(std::vector<double> &x, int heads, int pos) const {
    const int h2 = c.d / 2;
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < h2; ++i) {
        const double inv = 1.0 / std::pow(c.theta, double(2 * i) / c.d), a = pos * inv;
        double &x0 = x[size_t(h * c.d + i)], &x1 = x[size_t(h * c.d + i + h2)];
        const double y0 = x0 * std::cos(a) - x1 * std::sin(a), y1 = x1 * std::cos(a) + x0 * std::sin(a);
        x0 = y0;
        x1 = y1;
      }
  }

  // Logits [n, V] for every position of `tokens` (one sequence, from position 0). kv_bf16 rounds K/V as a
  // bf16 cache would. resid_post (optional) receives the last layer's residual stream [n, H].
  std::vector<double> forward(const std::vector<int32_t> &tokens, bool kv_bf16 = false,
                              std::vector<double> *resid_post = nullptr) const {
    const int n = int(tokens.size()), H = c.H, Q = c.nH * c.d, KV = c.nKV * c.d;
    std::vector<std::vector<double>> x(static_cast<size_t>(n));
    const RefTensor &E = t.at("token_embd.weight");
    for (int i = 0; i < n; ++i) x[size_t(i)].assign(E.w.begin() + tokens[size_t(i)] * H, E.w.begin() + (tokens[size_t(i)] + 1) * H);
    for (int l = 0; l < c.L; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      std::vector<std::vector<double>> q(static_cast<size_t>(n)), k(static_cast<size_t>(n)), v(static_cast<size_t>(n));
      std::vector<double> h;
      for (int i = 0; i < n; ++i) {
        rms(h, x[size_t(i)], b + "attn_norm.weight");
        mv(q[size_t(i)], b + "attn_q.weight", h, (b + "attn_q.bias").c_str());
        mv(k[size_t(i)], b + "attn_k.weight", h, (b + "attn_k.bias").c_str());
        mv(v[size_t(i)], b + "attn_v.weight", h, (b + "attn_v.bias").c_str());
        rope(q[size_t(i)], c.nH, i);
        rope(k[size_t(i)], c.nKV, i);
        if (kv_bf16)
          for (int e = 0; e < KV; ++e) {
            k[size_t(i)][size_t(e)] = qw::bf16_to_float(qw::float_to_bf16(float(k[size_t(i)][size_t(e)])));
            v[size_t(i)][size_t(e)] = qw::bf16_to_float(qw::float_to_bf16(float(v[size_t(i)][size_t(e)])));
          }
      }
      for (int i = 0; i < n; ++i) {
        std::vector<double> z(static_cast<size_t>(Q), 0.0), o, g, u;
        for (int hh = 0; hh < c.nH; ++hh) {
          const int kh = hh / (c.nH / c.nKV);
          std::vector<double> s(static_cast<size_t>(i + 1));
          double mx = -1e300;
          for (int j = 0; j <= i; ++j) {
            double dd = 0;
            for (int e = 0; e < c.d; ++e) dd += q[size_t(i)][size_t(hh * c.d + e)] * k[size_t(j)][size_t(kh * c.d + e)];
            s[size_t(j)] = dd / std::sqrt(double(c.d));
            mx = std::max(mx, s[size_t(j)]);
          }
          double sum = 0;
          for (auto &e : s) sum += (e = std::exp(e - mx));
          for (int j = 0; j <= i; ++j)
            for (int e = 0; e < c.d; ++e) z[size_t(hh * c.d + e)] += s[size_t(j)] / sum * v[size_t(j)][size_t(kh * c.d + e)];
        }
        mv(o, b + "attn_output.weight", z);
        for (int e = 0; e < H; ++e) x[size_t(i)][size_t(e)] += o[size_t(e)];
        rms(h, x[size_t(i)], b + "ffn_norm.weight");
        mv(g, b + "ffn_gate.weight", h);
        mv(u, b + "ffn_up.weight", h);
        for (size_t e = 0; e < g.size(); ++e) g[e] = g[e] / (1.0 + std::exp(-g[e])) * u[e];
        mv(o, b + "ffn_down.weight", g);
        for (int e = 0; e < H; ++e) x[size_t(i)][size_t(e)] += o[size_t(e)];
      }
    }
    if (resid_post) {
      resid_post->clear();
      for (int i = 0; i < n; ++i) resid_post->insert(resid_post->end(), x[size_t(i)].begin(), x[size_t(i)].end());
    }
    std::vector<double> logits;
    const std::string out = c.tied ? "token_embd.weight" : "output.weight";
    for (int i = 0; i < n; ++i) {
      std::vector<double> h, y;
      rms(h, x[size_t(i)], "output_norm.weight");
      mv(y, out, h);
      logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
  }
};

// A loaded model with one session, through the C ABI (destroyed in reverse order).
struct Run {
  qw_engine *e = nullptr;
  qw_model *m = nullptr;
  qw_session *s = nullptr;
  // model_json: the config handed to qw_model_create (empty: ref.c.json(); tests add model options to it)
  Run(const RefModel &ref, const char *sess_opts = "{\"max_batch\":3,\"max_context\":64}",
      const char *engine_opts = "{\"threads\":2}", const std::string &model_json = "") {
    CHECK_OK(qw_engine_create(engine_opts, &e));
    CHECK_OK(qw_model_create(e, (model_json.empty() ? ref.c.json() : model_json).c_str(), &m));
    CHECK_OK(ref.load(m));
    CHECK_OK(qw_session_create(m, sess_opts, &s));
  }
  ~Run() {
    CHECK_OK(qw_session_destroy(s));
    CHECK_OK(qw_model_destroy(m));
    CHECK_OK(qw_engine_destroy(e));
  }
  std::vector<float> logits() {
    int32_t rows = 0, V = 0;
    CHECK_OK(qw_session_logits_shape(s, &rows, &V));
    std::vector<float> out(size_t(rows) * size_t(V));
    CHECK_OK(qw_session_read_logits(s, out.data(), int64_t(out.size())));
    return out;
  }
};

// max |a - b| / max(1, max |b|)
template <class A, class B>
static double rel_err(const A &a, const B &b, size_t n) {
  double m = 1, e = 0;
  for (size_t i = 0; i < n; ++i) {
    m = std::max(m, std::fabs(double(b[i])));
    e = std::max(e, std::fabs(double(a[i]) - double(b[i])));
  }
  return e / m;
}
