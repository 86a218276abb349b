// tp_layout.hpp — index math of the CUDA ranks' collectives (toggle "parallel", tp_plan.hpp), in one place for the
// device kernels (tp_kernels.cu) and their CPU tests (test_parallel.cpp).
//
// lm_head gather: rank q computes the logits of its vocab rows [q*P, q*P + vocab_q) for `rows` rows into a
// [rows, P] buffer (P = TpPlan::vocab_part; the last rank's columns past its vocab_q are padding). NCCL's
// all-gather concatenates the ranks' buffers: gathered = [ranks][rows][P]. The logits [rows, V] of the tp1 layout
// read column v of row `row` at tp_gathered_index(row, v, rows, P); columns of the padding are never read.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QW_TP_HD __host__ __device__
#else
#define QW_TP_HD
#endif

namespace qw {

QW_TP_HD inline int64_t tp_gathered_index(int64_t row, int64_t v, int64_t rows, int64_t part) {
  const int64_t q = v / part;  // the rank owning vocab row v
  return (q * rows + row) * part + (v - q * part);
}

// Whether global vocab row `tok` is one of this rank's embedding rows [vocab0, vocab0 + vocab); its local row is
// tok - vocab0. The vocab-parallel embedding writes that row, or zeros when another rank owns it.
QW_TP_HD inline bool tp_owns_token(int64_t tok, int64_t vocab0, int64_t vocab) { return tok >= vocab0 && tok < vocab0 + vocab; }

}  // namespace qw
