// pool.cpp — fork-join worker pool (see pool.hpp for why it exists).
#include "pool.hpp"

#include <chrono>
#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QW_PAUSE() _mm_pause()
#else
#define QW_PAUSE() std::this_thread::yield()
#endif

namespace qw {
namespace cpu {

namespace {
constexpr int64_t kSpinNs = 2000000;  // 2 ms: longer than any gap inside a step or between decode calls
// After this long, spinning threads also yield: on an oversubscribed machine (other processes on our
// cores) a waiter that only spins can burn the time slice its partner needs to finish (measured: a 3 us
// attention call took 370 us on a loaded 2-core box without yielding).
constexpr int64_t kYieldAfterNs = 20000;
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? int(h) : 1;
}

Pool::Pool(int threads) : n_(threads < 1 ? 1 : threads) {
  threads_.reserve(size_t(n_ - 1));
  for (int t = 1; t < n_; ++t) threads_.emplace_back([this, t] { worker(t); });
}

Pool::~Pool() {
  stop_.store(true);
  gen_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lk(mu_);
  }
  cv_.notify_all();
  for (auto &t : threads_) t.join();
}

void Pool::finish_part(std::exception_ptr e) {
  if (e) {
    std::lock_guard<std::mutex> lk(err_mu_);
    if (!err_) err_ = e;
  }
  pending_.fetch_sub(1, std::memory_order_acq_rel);
}

void Pool::worker(int tid) {
  uint64_t seen = 0;
  for (;;) {
    // Wait for a new generation: spin first (cheap wake-up inside a step), then sleep.
    const int64_t t0 = now_ns();
    int spins = 0;
    while (gen_.load() == seen) {
      QW_PAUSE();
      if ((++spins & 63) != 0) continue;
      const int64_t waited = now_ns() - t0;
      if (waited > kYieldAfterNs) std::this_thread::yield();
      if (waited > kSpinNs) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return gen_.load() != seen; });
        sleepers_.fetch_sub(1);
        break;
      }
    }
    seen = gen_.load();
    if (stop_.load()) return;
    // Every worker acknowledges every generation (inactive ones at once), so run() returns only after
    // all workers have read this generation's fn_/active_ and none can see the next one's early.
    std::exception_ptr e;
    if (tid < active_) {
      try {
        (*fn_)(tid, active_);
      } catch (...) {
        e = std::current_exception();
      }
    }
    finish_part(e);
  }
}

void Pool::run(int want, const std::function<void(int, int)> &fn) {
  const int n = want < 1 ? 1 : (want > n_ ? n_ : want);
  if (n == 1) {
    fn(0, 1);
    return;
  }
  fn_ = &fn;
  active_ = n;
  err_ = nullptr;
  pending_.store(n_ - 1);
  gen_.fetch_add(1);  // seq_cst: pairs with the sleepers_ increment in worker() (no lost wake-up)
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lk(mu_); }
    cv_.notify_all();
  }
  std::exception_ptr mine;
  try {
    fn(0, n);
  } catch (...) {
    mine = std::current_exception();
  }
  const int64_t t0 = now_ns();
  for (int spins = 0; pending_.load(std::memory_order_acquire) > 0;) {
    QW_PAUSE();
    if ((++spins & 63) == 0 && now_ns() - t0 > kYieldAfterNs) std::this_thread::yield();
  }
  fn_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  if (err_) std::rethrow_exception(err_);
}

}  // namespace cpu
}  // namespace qw
