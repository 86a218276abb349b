// cublaslt.cuh — a minimal run-time shim over cuBLASLt (dlopen "libcublasLt.so.13" / ".so.12" / ".so", or the
// path in QW_CUBLASLT). The build machine and CI have no cuBLAS headers: the few enums and signatures used are
// declared here by hand (values from cublasLt.h, stable since CUDA 11).
#pragma once
#include "gemm.cuh"

namespace qwc {
// True when the library was found and a handle created (first call does the work; thread-safe).
bool cublaslt_available();
// Where it was loaded from, or why not.
const char *cublaslt_status();
// Runs the GEMM of gemm.cuh through cuBLASLt. Returns false if no algorithm fits (caller falls back).
bool cublaslt_gemm(const GemmArgs &g, cudaStream_t stream);
}  // namespace qwc
