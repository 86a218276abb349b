// pool.hpp — the CPU backend's worker threads: a fork-join pool whose workers spin briefly between jobs.
//
// Why not OpenMP parallel regions: a decode step of a small model is ~25 parallel sections of 5-50 us
// each. With libgomp's default wait policy the workers went to sleep between steps and sections often
// began with a futex wake-up; the tiny model decoded at ~2250 tok/s (2 threads), and at ~3000 with
// GOMP_SPINCOUNT raised — but that environment variable must be set before the process loads libgomp,
// which a library loaded by bun:ffi cannot do. This pool spins (with `pause`) for up to kSpinNs after
// each job, then sleeps on a condition variable, so an idle session costs no CPU.
//
// One pool per session: sessions used from different threads never share workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace qw {
namespace cpu {

class Pool {
 public:
  explicit Pool(int threads);  // total threads including the caller
  ~Pool();
  Pool(const Pool &) = delete;
  Pool &operator=(const Pool &) = delete;
  int size() const { return n_; }
  // Runs fn(tid, n) for tid in [0, n) with n = min(want, size()); the caller runs tid 0. Returns when every
  // part has finished; rethrows the first exception a part threw.
  void run(int want, const std::function<void(int, int)> &fn);
  // Static split of [0, count) for part `tid` of `n`.
  static void split(int64_t count, int tid, int n, int64_t *begin, int64_t *end) {
    *begin = count * tid / n;
    *end = count * (tid + 1) / n;
  }

 private:
  void worker(int tid);
  void finish_part(std::exception_ptr e);

  int n_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int, int)> *fn_ = nullptr;
  int active_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex err_mu_;
  std::exception_ptr err_;
};

int available_cores();  // CPUs this process may run on (affinity mask), at least 1

}  // namespace cpu
}  // namespace qw
