// nccl.cuh — a minimal run-time shim over NCCL (dlopen "libnccl.so.2", or the path in QW_NCCL), like cublaslt.cuh:
// the build machine has no NCCL headers, so the few types, enum values and entry points the tensor-parallel path
// uses are declared here by hand (values from nccl.h, stable since NCCL 2.10, which added bfloat16).
// Used by opt/parallel/tp_group.cuh (one process, one communicator per device, group calls) and cuda/dev/tplab.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace qwc {

typedef struct ncclComm *ncclComm_t;
struct ncclUniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};
enum NcclResult : int { NCCL_OK = 0 };  // ncclSuccess; anything else is an error (ncclGetErrorString)
enum NcclType : int { NCCL_FLOAT16 = 6, NCCL_FLOAT32 = 7, NCCL_BFLOAT16 = 9 };  // ncclDataType_t
enum NcclOp : int { NCCL_SUM = 0 };                                            // ncclRedOp_t

// The entry points we call, by their NCCL names.
struct Nccl {
  int (*GetVersion)(int *version);
  int (*GetUniqueId)(ncclUniqueId *id);
  int (*CommInitAll)(ncclComm_t *comms, int ndev, const int *devlist);
  int (*CommInitRank)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
  int (*CommDestroy)(ncclComm_t comm);
  int (*AllReduce)(const void *send, void *recv, size_t count, int type, int op, ncclComm_t comm, cudaStream_t s);
  int (*AllGather)(const void *send, void *recv, size_t send_count, int type, ncclComm_t comm, cudaStream_t s);
  int (*GroupStart)();
  int (*GroupEnd)();
  const char *(*GetErrorString)(int result);
};

// True when the library was found and every entry point resolved (the first call loads; thread-safe).
bool nccl_available();
// Where it was loaded from and its version, or why not (names the remedy: QW_NCCL=/path/libnccl.so.2).
const char *nccl_status();
// The entry points; throws CudaError (common.cuh) with nccl_status() when NCCL is not available.
const Nccl &nccl();
// Throws CudaError "<what>: <ncclGetErrorString>" when r is not NCCL_OK.
void nccl_check(int r, const char *what);

}  // namespace qwc
