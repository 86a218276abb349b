// convert.cpp — exact GGUF -> native conversion (see convert.hpp for the mapping and why it is exact).
#include "convert.hpp"

#include <cstring>

#include "half.hpp"

// Every multiply-then-add in this file must stay unfused: the Makefile compiles front/ with
// -ffp-contract=off (the products are exact, so fusion could not change a result today; see convert.hpp).

namespace qw {

namespace {

const GgmlTypeInfo kTypes[] = {
    {QW_GGML_F32, "f32", 1, 4},       {QW_GGML_F16, "f16", 1, 2},       {QW_GGML_BF16, "bf16", 1, 2},
    {QW_GGML_Q8_0, "q8_0", 32, 34},   {QW_GGML_Q4_0, "q4_0", 32, 18},   {QW_GGML_Q5_0, "q5_0", 32, 22},
    {QW_GGML_Q4_K, "q4_k", 256, 144}, {QW_GGML_Q5_K, "q5_k", 256, 176}, {QW_GGML_Q6_K, "q6_k", 256, 210},
};

inline uint16_t rd16(const uint8_t *p) { return uint16_t(p[0] | (p[1] << 8)); }
inline float rdh(const uint8_t *p) { return half_to_float(rd16(p)); }

// get_scale_min_k4 from ggml-quants.c: the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block.
inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

const float kNegZero = -0.0f;

// Each block decoder writes codes (int8 for W8, 0..15 for W4 before packing) and group scale/offset.
// Q8_0: 34 bytes -> 32 codes, 1 group.
void block_q8_0(const uint8_t *b, int8_t *q, float *sc, float *of) {
  sc[0] = rdh(b);
  of[0] = kNegZero;
  std::memcpy(q, b + 2, 32);
}
// Q5_0: 22 bytes: d, qh[4] (bit j of the u32 = 5th bit of element j), qs[16] (low nibble = element j,
// high nibble = element j + 16).
void block_q5_0(const uint8_t *b, int8_t *q, float *sc, float *of) {
  sc[0] = rdh(b);
  of[0] = kNegZero;
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t *qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const uint8_t xh0 = uint8_t(((qh >> (j + 0)) << 4) & 0x10);
    const uint8_t xh1 = uint8_t(((qh >> (j + 12))) & 0x10);
    q[j] = int8_t(((qs[j] & 0x0F) | xh0) - 16);
    q[j + 16] = int8_t(((qs[j] >> 4) | xh1) - 16);
  }
}
// Q6_K: 210 bytes: ql[128], qh[64], int8 scales[16], d -> 256 codes, 16 groups of 16.
void block_q6_k(const uint8_t *b, int8_t *q, float *sc, float *of) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *s = reinterpret_cast<const int8_t *>(b + 192);
  const float d = rdh(b + 208);
  for (int g = 0; g < 16; ++g) {
    sc[g] = d * float(s[g]);
    of[g] = kNegZero;
  }
  for (int n = 0; n < 2; ++n) {
    int8_t *y = q + 128 * n;
    for (int l = 0; l < 32; ++l) {
      y[l + 0] = int8_t(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
      y[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
      y[l + 64] = int8_t(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      y[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
    ql += 64;
    qh += 32;
  }
  // The group of element e is e / 16: ggml's sc[is + 2k] with is = l / 16 indexes exactly that group
  // (element 32k + l of half n lies in group 8n + 2k + l/16).
}
// Q5_K: 176 bytes: d, dmin, scales[12], qh[32], qs[128] -> 256 codes 0..31, 8 groups of 32.
void block_q5_k(const uint8_t *b, int8_t *q, float *sc, float *of) {
  const float d = rdh(b), dmin = rdh(b + 2);
  const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    scale_min_k4(j, scales, &s, &m);
    sc[j] = d * float(s);
    of[j] = -(dmin * float(m));
  }
  uint8_t u1 = 1, u2 = 2;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = int8_t((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0));
      q[64 * c + 32 + l] = int8_t((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0));
    }
    ql += 32;
    u1 = uint8_t(u1 << 2);
    u2 = uint8_t(u2 << 2);
  }
}
// Q4_0: 18 bytes: d, qs[16] (low nibble = element j, high = element j + 16) -> codes 0..15.
void block_q4_0(const uint8_t *b, int8_t *q, float *sc, float *of) {
  const float d = rdh(b);
  sc[0] = d;
  of[0] = -8.0f * d;
  for (int j = 0; j < 16; ++j) {
    q[j] = int8_t(b[2 + j] & 0xF);
    q[j + 16] = int8_t(b[2 + j] >> 4);
  }
}
// Q4_K: 144 bytes: d, dmin, scales[12], qs[128] -> codes 0..15, 8 groups of 32.
void block_q4_k(const uint8_t *b, int8_t *q, float *sc, float *of) {
  const float d = rdh(b), dmin = rdh(b + 2);
  const uint8_t *scales = b + 4, *qs = b + 16;
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    scale_min_k4(j, scales, &s, &m);
    sc[j] = d * float(s);
    of[j] = -(dmin * float(m));
  }
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = int8_t(qs[32 * c + l] & 0xF);
      q[64 * c + 32 + l] = int8_t(qs[32 * c + l] >> 4);
    }
}

typedef void (*BlockFn)(const uint8_t *, int8_t *, float *, float *);

struct QuantPlan {
  BlockFn fn;
  NativeType native;
  int32_t group;
};

bool quant_plan(int32_t t, QuantPlan *p) {
  switch (t) {
    case QW_GGML_Q8_0: *p = {block_q8_0, NativeType::W8, 32}; return true;
    case QW_GGML_Q5_0: *p = {block_q5_0, NativeType::W8, 32}; return true;
    case QW_GGML_Q6_K: *p = {block_q6_k, NativeType::W8, 16}; return true;
    case QW_GGML_Q5_K: *p = {block_q5_k, NativeType::W8, 32}; return true;
    case QW_GGML_Q4_0: *p = {block_q4_0, NativeType::W4, 32}; return true;
    case QW_GGML_Q4_K: *p = {block_q4_k, NativeType::W4, 32}; return true;
    default: return false;
  }
}

}  // namespace

const GgmlTypeInfo *ggml_type_info(int32_t t) {
  for (const auto &k : kTypes)
    if (k.id == t) return &k;
  return nullptr;
}

const char *ggml_type_name(int32_t t) {
  const GgmlTypeInfo *k = ggml_type_info(t);
  return k ? k->name : "?";
}

const char *native_type_name(NativeType t) {
  switch (t) {
    case NativeType::F32: return "f32";
    case NativeType::F16: return "f16";
    case NativeType::BF16: return "bf16";
    case NativeType::W8: return "w8";
    case NativeType::W4: return "w4";
  }
  return "?";
}

double native_bytes_per_element(NativeType type, int32_t group) {
  switch (type) {
    case NativeType::F32: return 4;
    case NativeType::F16:
    case NativeType::BF16: return 2;
    case NativeType::W8: return 1.0 + 8.0 / (group > 0 ? group : 32);
    case NativeType::W4: return 0.5 + 8.0 / (group > 0 ? group : 32);
  }
  return 4;
}

uint64_t ggml_nbytes(const std::string &name, int32_t t, int64_t rows, int64_t cols) {
  const GgmlTypeInfo *k = ggml_type_info(t);
  if (!k)
    throw Error(QW_ERR_INVALID_ARGUMENT, name + ": unsupported ggml type " + std::to_string(t) +
                                             " (accepted: f32, f16, bf16, q8_0, q4_0, q5_0, q4_k, q5_k, q6_k)");
  if (cols % k->block_elems != 0)
    throw Error(QW_ERR_SHAPE, name + ": ne0 = " + std::to_string(cols) + " is not a multiple of the " + k->name +
                                  " block size " + std::to_string(k->block_elems));
  return uint64_t(rows) * uint64_t(cols / k->block_elems) * uint64_t(k->block_bytes);
}

void dequant_ggml(float *out, int32_t t, const void *data, int64_t n) {
  const uint8_t *p = static_cast<const uint8_t *>(data);
  switch (t) {
    case QW_GGML_F32: std::memcpy(out, p, size_t(n) * 4); return;
    case QW_GGML_F16:
      for (int64_t i = 0; i < n; ++i) out[i] = rdh(p + 2 * i);
      return;
    case QW_GGML_BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(rd16(p + 2 * i));
      return;
    default: break;
  }
  QuantPlan plan;
  if (!quant_plan(t, &plan)) throw Error(QW_ERR_INVALID_ARGUMENT, "dequant: unsupported ggml type");
  const GgmlTypeInfo *k = ggml_type_info(t);
  int8_t q[256];
  float sc[16], of[16];
  for (int64_t b = 0; b < n / k->block_elems; ++b) {
    plan.fn(p + b * k->block_bytes, q, sc, of);
    float *y = out + b * k->block_elems;
    for (int e = 0; e < k->block_elems; ++e) {
      const float prod = sc[e / plan.group] * float(q[e]);
      y[e] = prod + of[e / plan.group];
    }
  }
}

NativeTensor convert_tensor(const std::string &name, int32_t t, int64_t rows, int64_t cols, const void *data,
                            bool as_vector) {
  NativeTensor nt;
  nt.name = name;
  nt.ggml_type = t;
  nt.rows = rows;
  nt.cols = cols;
  const GgmlTypeInfo *k = ggml_type_info(t);
  if (!k) throw Error(QW_ERR_INVALID_ARGUMENT, name + ": unsupported ggml type " + std::to_string(t));
  const uint8_t *p = static_cast<const uint8_t *>(data);
  const uint64_t n = uint64_t(rows) * uint64_t(cols);
  if (as_vector || t == QW_GGML_F32) {
    nt.type = NativeType::F32;
    nt.data.resize(n * 4);
    dequant_ggml(reinterpret_cast<float *>(nt.data.data()), t, p, int64_t(n));
    return nt;
  }
  if (t == QW_GGML_F16 || t == QW_GGML_BF16) {
    nt.type = t == QW_GGML_F16 ? NativeType::F16 : NativeType::BF16;
    nt.data.assign(p, p + n * 2);
    return nt;
  }
  QuantPlan plan;
  if (!quant_plan(t, &plan)) throw Error(QW_ERR_INVALID_ARGUMENT, name + ": unsupported ggml type");
  nt.type = plan.native;
  nt.group = plan.group;
  const int64_t groups_per_block = k->block_elems / plan.group;
  const int64_t blocks_per_row = cols / k->block_elems;
  const int64_t groups_per_row = cols / plan.group;
  nt.scale.resize(size_t(rows * groups_per_row));
  nt.offset.resize(size_t(rows * groups_per_row));
  nt.data.resize(plan.native == NativeType::W8 ? n : n / 2);
  int8_t q[256];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks_per_row; ++b) {
      const int64_t g0 = r * groups_per_row + b * groups_per_block;
      plan.fn(p + (r * blocks_per_row + b) * k->block_bytes, q, &nt.scale[size_t(g0)], &nt.offset[size_t(g0)]);
      const int64_t c0 = r * cols + b * k->block_elems;  // first element of the block in the tensor
      if (plan.native == NativeType::W8) {
        std::memcpy(&nt.data[size_t(c0)], q, size_t(k->block_elems));
      } else {
        uint8_t *dst = &nt.data[size_t(c0 / 2)];  // cols is even (a multiple of 32): c0 is even
        for (int e = 0; e < k->block_elems; e += 2) dst[e / 2] = uint8_t((q[e] & 0xF) | ((q[e + 1] & 0xF) << 4));
      }
    }
  }
  return nt;
}

void dequant_rows(float *out, const NativeTensor &t, int64_t row0, int64_t nrows) {
  const int64_t cols = t.cols;
  for (int64_t r = row0; r < row0 + nrows; ++r) {
    float *y = out + (r - row0) * cols;
    switch (t.type) {
      case NativeType::F32:
        std::memcpy(y, t.data.data() + size_t(r * cols) * 4, size_t(cols) * 4);
        break;
      case NativeType::F16: {
        const uint8_t *p = t.data.data() + size_t(r * cols) * 2;
        for (int64_t c = 0; c < cols; ++c) y[c] = rdh(p + 2 * c);
        break;
      }
      case NativeType::BF16: {
        const uint8_t *p = t.data.data() + size_t(r * cols) * 2;
        for (int64_t c = 0; c < cols; ++c) y[c] = bf16_to_float(rd16(p + 2 * c));
        break;
      }
      case NativeType::W8:
      case NativeType::W4: {
        const int64_t gpr = cols / t.group;
        const float *sc = t.scale.data() + r * gpr;
        const float *of = t.offset.data() + r * gpr;
        for (int64_t c = 0; c < cols; ++c) {
          int q;
          if (t.type == NativeType::W8) {
            q = int8_t(t.data[size_t(r * cols + c)]);
          } else {
            const uint8_t byte = t.data[size_t((r * cols + c) / 2)];
            q = (c & 1) ? (byte >> 4) : (byte & 0xF);
          }
          const float prod = sc[c / t.group] * float(q);
          y[c] = prod + of[c / t.group];
        }
        break;
      }
    }
  }
}

}  // namespace qw
