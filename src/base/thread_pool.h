// A fixed pool of worker threads for data-parallel loops. The calling thread takes part,
// so ThreadPool(1) runs everything inline. Tasks are claimed dynamically; code that must
// be batch-invariant makes each task's result independent of the thread that runs it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace kdr {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task, thread) for every task in [0, num_tasks); thread is in [0, num_threads()).
  // Returns when all tasks are done. Not re-entrant: fn must not call parallel_for.
  template <typename Fn>
  void parallel_for(int64_t num_tasks, Fn&& fn) {
    if (num_tasks <= 0) return;
    if (workers_.empty() || num_tasks == 1) {
      for (int64_t i = 0; i < num_tasks; ++i) fn(i, 0);
      return;
    }
    using F = std::remove_reference_t<Fn>;
    run(
        num_tasks,
        [](void* ctx, int64_t task, int thread) { (*static_cast<F*>(ctx))(task, thread); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Number of hardware threads, at least 1.
  static int hardware_threads();

 private:
  using TaskFn = void (*)(void*, int64_t, int);
  void run(int64_t num_tasks, TaskFn fn, void* ctx);
  void worker_loop(int thread);
  void drain(int thread);

  std::vector<std::thread> workers_;
  // Hand-off: a run publishes fn_/ctx_/num_tasks_ and then bumps generation_ (release);
  // workers spin on generation_ for a short while before sleeping on start_cv_, and the
  // caller spins on active_ before sleeping on done_cv_. A model step makes hundreds of
  // short parallel_for calls; waking a sleeping thread costs tens of microseconds each time.
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> active_{0};
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_{0};
};

}  // namespace kdr
