// tp_group.cu — the CUDA rank group of tensor parallelism (see tp_group.cuh). Host code only.
#include "tp_group.cuh"

#include <string>

#include "common.cuh"

namespace qwc {

TpGroup::TpGroup(int n, int first_device) {
  int count = 0;
  QWC_CHECK(cudaGetDeviceCount(&count));
  if (n < 1 || first_device < 0 || first_device + n > count)
    throw CudaError("tensor parallelism: " + std::to_string(n) + " ranks from device " + std::to_string(first_device) +
                    " need " + std::to_string(first_device + n) + " devices; this machine has " + std::to_string(count));
  const Nccl &nc = nccl();
  for (int r = 0; r < n; ++r) devices_.push_back(first_device + r);
  comms_.resize(size_t(n));
  nccl_check(nc.CommInitAll(comms_.data(), n, devices_.data()), "ncclCommInitAll");
  for (int r = 0; r < n; ++r) {
    QWC_CHECK(cudaSetDevice(devices_[size_t(r)]));
    cudaStream_t s;
    QWC_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    streams_.push_back(s);
  }
  QWC_CHECK(cudaSetDevice(devices_[0]));
}

TpGroup::~TpGroup() {
  drop_graphs();
  for (size_t r = 0; r < devices_.size(); ++r) {
    cudaSetDevice(devices_[r]);
    if (r < streams_.size()) cudaStreamDestroy(streams_[r]);
    if (comms_[r]) nccl().CommDestroy(comms_[r]);
  }
  if (!devices_.empty()) cudaSetDevice(devices_[0]);
}

void TpGroup::all_reduce_sum(void *const *buf, size_t count, NcclType type) {
  const Nccl &nc = nccl();
  nccl_check(nc.GroupStart(), "ncclGroupStart");
  for (int r = 0; r < ranks(); ++r)
    nccl_check(nc.AllReduce(buf[r], buf[r], count, type, NCCL_SUM, comms_[size_t(r)], streams_[size_t(r)]), "ncclAllReduce");
  nccl_check(nc.GroupEnd(), "ncclGroupEnd");
}

void TpGroup::all_gather(const void *const *send, void *const *recv, size_t count, NcclType type) {
  const Nccl &nc = nccl();
  nccl_check(nc.GroupStart(), "ncclGroupStart");
  for (int r = 0; r < ranks(); ++r)
    nccl_check(nc.AllGather(send[r], recv[r], count, type, comms_[size_t(r)], streams_[size_t(r)]), "ncclAllGather");
  nccl_check(nc.GroupEnd(), "ncclGroupEnd");
}

void TpGroup::each(const std::function<void(int)> &f) {
  for (int r = 0; r < ranks(); ++r) {
    QWC_CHECK(cudaSetDevice(devices_[size_t(r)]));
    f(r);
  }
  QWC_CHECK(cudaSetDevice(devices_[0]));
}

void TpGroup::sync() {
  each([&](int r) { QWC_CHECK(cudaStreamSynchronize(streams_[size_t(r)])); });
}

void TpGroup::capture(const std::function<void()> &body) {
  drop_graphs();
  // Relaxed mode: NCCL's own setup calls (e.g. cudaMalloc on first use) must not invalidate the capture.
  each([&](int r) { QWC_CHECK(cudaStreamBeginCapture(streams_[size_t(r)], cudaStreamCaptureModeRelaxed)); });
  body();
  graphs_.resize(devices_.size());
  execs_.resize(devices_.size());
  each([&](int r) {
    QWC_CHECK(cudaStreamEndCapture(streams_[size_t(r)], &graphs_[size_t(r)]));
    QWC_CHECK(cudaGraphInstantiate(&execs_[size_t(r)], graphs_[size_t(r)], 0));
  });
}

void TpGroup::replay() {
  if (!captured()) throw CudaError("TpGroup::replay: nothing captured");
  each([&](int r) { QWC_CHECK(cudaGraphLaunch(execs_[size_t(r)], streams_[size_t(r)])); });
}

void TpGroup::drop_graphs() {
  for (size_t r = 0; r < execs_.size(); ++r) {
    cudaSetDevice(devices_[r]);
    if (execs_[r]) cudaGraphExecDestroy(execs_[r]);
    if (graphs_[r]) cudaGraphDestroy(graphs_[r]);
  }
  execs_.clear();
  graphs_.clear();
}

}  // namespace qwc
