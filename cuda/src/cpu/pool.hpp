// pool.hpp — the CPU backend's worker threads: a fork-join pool with dynamic participation.
//
// Why not OpenMP parallel regions: a decode step of a small model is ~25 parallel sections of 5-50 us
// each. With libgomp's default wait policy the workers went to sleep between steps and sections often
// began with a futex wake-up (tiny model: ~2250 tok/s on 2 threads, ~3000 with GOMP_SPINCOUNT raised —
// an environment variable a library loaded by bun:ffi cannot set before libgomp reads it).
//
// Why dynamic participation: on a 2-core box that also runs the web server, builds or a second engine,
// one of our two threads is regularly descheduled for a whole time slice. A fork-join that waits for
// every worker to show up then runs at the pace of the scheduler (measured: 740 tok/s on 2 threads vs
// 2220 on 1 with one busy neighbour process). Here the caller never waits for a worker that has not
// started: work is always taken from shared counters inside `fn`, a worker joins a job only while it is
// open, and the caller closes the job as soon as its own part is done and no joined worker is still busy.
// Late workers find the job closed and go back to waiting.
//
// Workers spin (with `pause`, yielding after 20 us) for up to 2 ms after each job, then sleep on a
// condition variable, so an idle session costs no CPU. One pool per session: sessions used from
// different threads never share workers.
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
  // Calls fn() on the caller and on up to want - 1 workers that arrive while the job is open. fn must
  // take its work items from shared counters (any number of calls, on any threads, must cover the work
  // exactly once). Returns when the caller's call and every joined worker's call have finished; rethrows
  // the first exception one of them threw.
  void run(int want, const std::function<void()> &fn);
  // Brings sleeping workers back to spinning (a fresh spin budget) and returns once none sleeps, or after
  // 1 ms. Opens no job. Profiling calls it at a step's start so the wake-up is measured as its own record.
  void wake();

 private:
  void worker();

  int n_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int64_t> join_{-1};  // >= 0: open, number of workers inside fn; -1: closed
  std::atomic<int> limit_{0};      // workers allowed to join the current job
  std::atomic<const std::function<void()> *> fn_{nullptr};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex err_mu_;
  std::exception_ptr err_;
};

// Runs body(i0, i1) over [0, n) in chunks taken from a shared counter; inline when n < min_parallel.
void parallel_range(Pool &pool, int64_t n, int64_t min_parallel, const std::function<void(int64_t, int64_t)> &body);

int available_cores();  // CPUs this process may run on (affinity mask), at least 1

}  // namespace cpu
}  // namespace qw
