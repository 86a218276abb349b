// marlin_pack_host.hpp — host reference of the gemv = marlin repack (marlin_layout.hpp) and its exact inverse.
// The device packer (marlin.cu, launch_marlin_pack) must produce the same bytes: the kernel lab compares them, and
// test_marlin.cpp checks pack -> unpack == identity and the kernel's fragment arithmetic on the CPU.
#pragma once

#include <cstring>
#include <vector>

#include "marlin_layout.hpp"

namespace qwc {

// Native W4 / W8 matrix on the host (w = scale * q + offset; W4: low nibble = even column).
struct MarlinHostSrc {
  bool w4 = true;
  int64_t rows = 0, cols = 0;
  int32_t group = 0;
  const uint8_t *data = nullptr;
  const float *scale = nullptr, *offset = nullptr;  // [rows][cols / group]
};

inline uint8_t marlin_src_code(const MarlinHostSrc &s, int64_t r, int64_t c) {
  const int64_t i = r * s.cols + c;
  if (!s.w4) return s.data[i];
  const uint8_t b = s.data[i >> 1];
  return (i & 1) ? uint8_t(b >> 4) : uint8_t(b & 15);
}

inline std::vector<uint8_t> marlin_pack_host(const MarlinHostSrc &s) {
  const int32_t ub = marlin_unit_bytes(s.w4, s.group);
  const int64_t ku = s.cols / kMarlinUnitCols, tiles = s.rows / kMarlinTileRows, gpr = s.cols / s.group;
  const int wbytes = s.w4 ? 512 : 1024, ng = kMarlinUnitCols / s.group;
  std::vector<uint8_t> out((size_t)(tiles * ku) * ub, 0);
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t u = 0; u < ku; ++u) {
      uint8_t *unit = out.data() + (size_t)(t * ku + u) * ub;
      for (int lane = 0; lane < 32; ++lane) {
        const int gid = lane >> 2, tig = lane & 3;
        const int64_t r = t * 8 + gid;
        if (s.w4) {
          for (int w = 0; w < 4; ++w) {
            uint32_t word = 0;
            for (int n = 0; n < 8; ++n)
              word |= uint32_t(marlin_src_code(s, r, u * 128 + marlin_w4_col(tig, w, n))) << (4 * n);
            std::memcpy(unit + 16 * lane + 4 * w, &word, 4);
          }
        } else {
          for (int j = 0; j < 8; ++j)
            for (int i = 0; i < 4; ++i) unit[32 * lane + 4 * j + i] = marlin_src_code(s, r, u * 128 + marlin_w8_col(tig, j, i));
        }
      }
      for (int gi = 0; gi < ng; ++gi)
        for (int rr = 0; rr < 8; ++rr) {
          const int64_t g = (t * 8 + rr) * gpr + (u * 128) / s.group + gi;
          std::memcpy(unit + wbytes + 64 * gi + 8 * rr, &s.scale[g], 4);
          std::memcpy(unit + wbytes + 64 * gi + 8 * rr + 4, &s.offset[g], 4);
        }
    }
  return out;
}

// The exact inverse: native codes (W4 packed two per byte), scales and offsets back from the repacked bytes.
inline void marlin_unpack_host(const std::vector<uint8_t> &packed, bool w4, int64_t rows, int64_t cols, int32_t group,
                               std::vector<uint8_t> &data, std::vector<float> &scale, std::vector<float> &offset) {
  const int32_t ub = marlin_unit_bytes(w4, group);
  const int64_t ku = cols / kMarlinUnitCols, gpr = cols / group;
  const int wbytes = w4 ? 512 : 1024, ng = kMarlinUnitCols / group;
  data.assign(w4 ? (size_t)(rows * cols / 2) : (size_t)(rows * cols), 0);
  scale.assign((size_t)(rows * gpr), 0.f);
  offset.assign((size_t)(rows * gpr), 0.f);
  for (int64_t t = 0; t < rows / 8; ++t)
    for (int64_t u = 0; u < ku; ++u) {
      const uint8_t *unit = packed.data() + (size_t)(t * ku + u) * ub;
      for (int lane = 0; lane < 32; ++lane) {
        const int gid = lane >> 2, tig = lane & 3;
        const int64_t r = t * 8 + gid;
        if (w4) {
          for (int w = 0; w < 4; ++w) {
            uint32_t word;
            std::memcpy(&word, unit + 16 * lane + 4 * w, 4);
            for (int n = 0; n < 8; ++n) {
              const int64_t i = r * cols + u * 128 + marlin_w4_col(tig, w, n);
              const uint8_t q = uint8_t((word >> (4 * n)) & 15);
              data[i >> 1] |= (i & 1) ? uint8_t(q << 4) : q;
            }
          }
        } else {
          for (int j = 0; j < 8; ++j)
            for (int i = 0; i < 4; ++i) data[r * cols + u * 128 + marlin_w8_col(tig, j, i)] = unit[32 * lane + 4 * j + i];
        }
      }
      for (int gi = 0; gi < ng; ++gi)
        for (int rr = 0; rr < 8; ++rr) {
          const int64_t g = (t * 8 + rr) * gpr + (u * 128) / group + gi;
          std::memcpy(&scale[g], unit + wbytes + 64 * gi + 8 * rr, 4);
          std::memcpy(&offset[g], unit + wbytes + 64 * gi + 8 * rr + 4, 4);
        }
    }
}

}  // namespace qwc
