// test_pool.cpp — the CPU backend's worker pool (src/cpu/pool.cpp, compiled into this test): every work
// item runs exactly once over many short jobs, with more threads than cores, exceptions propagate, and
// an idle pool (sleeping workers) wakes up.
#include <atomic>
#include <stdexcept>

#include "../src/cpu/pool.cpp"
#include "testlib.hpp"

using qw::cpu::Pool;

int main() {
  for (int threads : {1, 2, 3, 8}) {
    Pool pool(threads);
    std::vector<int> hits(1000);
    bool ok = true;
    for (int job = 0; job < 3000; ++job) {
      const int n = 1 + job % 1000;
      std::fill(hits.begin(), hits.begin() + n, 0);
      std::atomic<int> next{0};
      pool.run(threads, [&] {
        for (int i = next++; i < n; i = next++) hits[size_t(i)]++;  // each item taken once
      });
      for (int i = 0; i < n; ++i) ok = ok && hits[size_t(i)] == 1;
    }
    CHECK(ok, "%d threads: every item exactly once", threads);
    // parallel_range covers [0, n) exactly once
    std::vector<std::atomic<int>> cover(5000);
    qw::cpu::parallel_range(pool, 5000, 1, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) cover[size_t(i)]++;
    });
    bool once = true;
    for (auto &c : cover) once = once && c.load() == 1;
    CHECK(once, "%d threads: parallel_range covers once", threads);
    // an exception thrown inside a job reaches the caller, and the pool keeps working
    bool caught = false;
    std::atomic<int> next{0};
    try {
      pool.run(threads, [&] {
        for (int i = next++; i < 100; i = next++)
          if (i == 57) throw std::runtime_error("item 57");
      });
    } catch (const std::runtime_error &e) {
      caught = std::string(e.what()) == "item 57";
    }
    CHECK(caught, "%d threads: exception propagates", threads);
    std::atomic<int> after{0};
    pool.run(threads, [&] { after++; });
    CHECK(after.load() >= 1, "pool usable after an exception");
  }
  // workers that went to sleep (idle > 2 ms) wake up for the next job
  Pool pool(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::atomic<int> next{0}, sum{0};
  pool.run(2, [&] {
    for (int i = next++; i < 1000; i = next++) sum += i;
  });
  CHECK(sum.load() == 499500, "after sleep: sum %d", sum.load());
  return finish("test_pool");
}
