// ThreadPool::parallel_for runs every task exactly once, on a thread id in range, for any
// pool size and task count, and a pool can be reused for many loops.
#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <vector>

#include "seed.h"

namespace kdr {
namespace {

// Counts how often each task ran and checks every thread id against the pool size.
void expect_each_task_once(ThreadPool& pool, int64_t num_tasks) {
  std::unique_ptr<std::atomic<int>[]> runs(new std::atomic<int>[num_tasks > 0 ? num_tasks : 1]);
  for (int64_t i = 0; i < num_tasks; ++i) runs[i] = 0;
  std::atomic<int> bad_thread{0};
  pool.parallel_for(num_tasks, [&](int64_t task, int thread) {
    runs[task].fetch_add(1);
    if (thread < 0 || thread >= pool.num_threads()) bad_thread.fetch_add(1);
  });
  for (int64_t i = 0; i < num_tasks; ++i)
    ASSERT_EQ(runs[i].load(), 1) << "task " << i << " of " << num_tasks << " on "
                                 << pool.num_threads() << " threads";
  EXPECT_EQ(bad_thread.load(), 0);
}

TEST(ThreadPool, SizeIsAtLeastOne) {
  EXPECT_EQ(ThreadPool(0).num_threads(), 1);
  EXPECT_EQ(ThreadPool(-3).num_threads(), 1);
  EXPECT_EQ(ThreadPool(1).num_threads(), 1);
  EXPECT_EQ(ThreadPool(5).num_threads(), 5);
  EXPECT_GE(ThreadPool::hardware_threads(), 1);
}

TEST(ThreadPool, EveryTaskRunsExactlyOnceForManySizes) {
  for (int threads : {1, 2, 3, 4, 8}) {
    ThreadPool pool(threads);
    for (int64_t tasks : {0, 1, 2, 3, 7, 8, 9, 64, 1000, 10007}) {
      SCOPED_TRACE(::testing::Message() << threads << " threads, " << tasks << " tasks");
      expect_each_task_once(pool, tasks);
    }
  }
}

TEST(ThreadPool, ReusedForManyLoopsOfRandomSizes) {
  std::mt19937_64 rng(kdr_test::test_seed());
  ThreadPool pool(4);
  std::uniform_int_distribution<int64_t> size(0, 300);
  for (int loop = 0; loop < 500; ++loop) expect_each_task_once(pool, size(rng));
}

TEST(ThreadPool, SumMatchesSerialAndUsesPerThreadSlots) {
  // A typical reduction: each thread accumulates into its own slot, then the slots add up.
  ThreadPool pool(3);
  const int64_t n = 100000;
  std::vector<int64_t> per_thread(pool.num_threads(), 0);
  pool.parallel_for(n, [&](int64_t task, int thread) { per_thread[thread] += task; });
  int64_t total = 0;
  for (int64_t s : per_thread) total += s;
  EXPECT_EQ(total, n * (n - 1) / 2);
}

TEST(ThreadPool, NestedLoopSizesFromOuterTasks) {
  // Loops whose sizes depend on an outer index, run one after another from the caller
  // (parallel_for is not re-entrant), as a kernel does per layer and per sequence.
  ThreadPool pool(2);
  for (int64_t outer = 0; outer < 40; ++outer) {
    std::vector<std::atomic<int>> runs(outer * 3 + 1);
    pool.parallel_for(static_cast<int64_t>(runs.size()),
                      [&](int64_t task, int) { runs[task].fetch_add(1); });
    for (size_t i = 0; i < runs.size(); ++i) ASSERT_EQ(runs[i].load(), 1) << "outer " << outer;
  }
}

TEST(ThreadPool, SingleTaskRunsOnCallingThread) {
  ThreadPool pool(4);
  int thread_seen = -1;
  pool.parallel_for(1, [&](int64_t, int thread) { thread_seen = thread; });
  EXPECT_EQ(thread_seen, 0);
}

}  // namespace
}  // namespace kdr
