// pool.cpp — fork-join worker pool with dynamic participation (see pool.hpp for why).
#include "pool.hpp"

#include <algorithm>
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
// After this long, waiting threads also yield, so that on an oversubscribed machine a waiter does not burn
// the time slice another thread needs.
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
  for (int t = 1; t < n_; ++t) threads_.emplace_back([this] { worker(); });
}

Pool::~Pool() {
  stop_.store(true);
  gen_.fetch_add(1);
  { std::lock_guard<std::mutex> lk(mu_); }
  cv_.notify_all();
  for (auto &t : threads_) t.join();
}

void Pool::worker() {
  uint64_t seen = 0;
  for (;;) {
    const int64_t t0 = now_ns();
    int spins = 0;
    while (gen_.load() == seen) {
      QW_PAUSE();
      if ((++spins & 63) != 0) continue;
      const int64_t waited = now_ns() - t0;
      if (waited > kYieldAfterNs) std::this_thread::yield();
      if (waited > kSpinNs) {
        std::unique_lock<std::mutex> lk(mu_);
        sleepers_.fetch_add(1);  // seq_cst: pairs with gen_.fetch_add in run() (no lost wake-up)
        cv_.wait(lk, [&] { return gen_.load() != seen; });
        sleepers_.fetch_sub(1);
        break;
      }
    }
    seen = gen_.load();
    if (stop_.load()) return;
    // Join if the job is open and not full. Whatever job is open now is the one we run: fn is read after
    // joining, and the caller cannot finish a job while we are inside it.
    int64_t v = join_.load();
    while (v >= 0 && v < limit_.load() && !join_.compare_exchange_weak(v, v + 1)) {
    }
    if (v < 0 || v >= limit_.load()) continue;
    try {
      (*fn_.load())();
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu_);
      if (!err_) err_ = std::current_exception();
    }
    join_.fetch_sub(1);
  }
}

void Pool::run(int want, const std::function<void()> &fn) {
  const int n = std::max(1, std::min(want, n_));
  if (n == 1) {
    fn();
    return;
  }
  err_ = nullptr;
  fn_.store(&fn);
  limit_.store(n - 1);
  join_.store(0);     // open
  gen_.fetch_add(1);  // wake spinning workers
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lk(mu_); }
    cv_.notify_all();
  }
  std::exception_ptr mine;
  try {
    fn();
  } catch (...) {
    mine = std::current_exception();
  }
  // Close: wait only for workers that joined (they hold work items), then forbid late joins.
  const int64_t t0 = now_ns();
  for (int spins = 0;;) {
    int64_t v = 0;
    if (join_.compare_exchange_weak(v, -1)) break;
    QW_PAUSE();
    if ((++spins & 63) == 0 && now_ns() - t0 > kYieldAfterNs) std::this_thread::yield();
  }
  if (mine) std::rethrow_exception(mine);
  if (err_) std::rethrow_exception(err_);
}

void Pool::wake() {
  if (n_ == 1) return;
  gen_.fetch_add(1);  // workers see a closed job (join_ < 0), rejoin the spin loop with a fresh budget
  if (sleepers_.load() == 0) return;
  { std::lock_guard<std::mutex> lk(mu_); }
  cv_.notify_all();
  const int64_t t0 = now_ns();
  while (sleepers_.load() > 0 && now_ns() - t0 < 1000000) std::this_thread::yield();
}

void parallel_range(Pool &pool, int64_t n, int64_t min_parallel, const std::function<void(int64_t, int64_t)> &body) {
  if (n < min_parallel || pool.size() == 1) {
    body(0, n);
    return;
  }
  const int64_t chunk = std::max<int64_t>(1, (n + 4 * pool.size() - 1) / (4 * pool.size()));
  std::atomic<int64_t> next{0};
  pool.run(pool.size(), [&] {
    for (int64_t a = next.fetch_add(chunk); a < n; a = next.fetch_add(chunk)) body(a, std::min(n, a + chunk));
  });
}

}  // namespace cpu
}  // namespace qw
