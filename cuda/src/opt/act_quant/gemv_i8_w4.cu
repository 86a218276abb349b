// gemv_i8_w4.cu — toggle actQuant = int8's kernels for W4 weights (gemv_i8.cuh), a translation unit of their own so
// that the W4 and W8 instances (about 60 each) compile in parallel.
#include "gemv_i8.cuh"

namespace qwc {
namespace i8detail {

const char *dispatch_w4(const GemvArgs &a, int kt, bool pre, cudaStream_t s) { return dispatch_nb<WT_W4>(a, kt, pre, s); }
void quant_w4(const GemvArgs &a, cudaStream_t s) { launch_quant<WT_W4>(a, s); }

}  // namespace i8detail
}  // namespace qwc
