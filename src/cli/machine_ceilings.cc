#include "cli/machine_ceilings.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "base/huge_buffer.h"
#include "base/thread_pool.h"

namespace kdr::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Sixteen independent accumulators so the loop is limited by loads, not by the latency of
// one add chain; GCC vectorises the inner loop at -O2 and above.
float sum_floats(const float* x, size_t n) {
  float acc[16] = {};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) acc[j] += x[i + j];
  }
  for (; i < n; ++i) acc[0] += x[i];
  float total = 0;
  for (float a : acc) total += a;
  return total;
}

}  // namespace

namespace {

// Fills f[0, n) with small values, each thread first-touching its own slice (NUMA-friendly
// where it matters).
void fill_slices(ThreadPool& pool, float* f, size_t n) {
  const int threads = pool.num_threads();
  pool.parallel_for(threads, [&](int64_t t, int) {
    const size_t begin = n * t / threads, end = n * (t + 1) / threads;
    for (size_t i = begin; i < end; ++i) f[i] = static_cast<float>(i & 1023) * 1e-3f;
  });
}

// Best of `repetitions` passes in which every thread t returns sum_slice(t, threads), the
// sum of its share of `bytes`: the read bandwidth in GB/s (1e9 bytes).
template <class SumSlice>
double best_read_gbps(ThreadPool& pool, size_t bytes, int repetitions, SumSlice&& sum_slice) {
  const int threads = pool.num_threads();
  std::vector<float> partial(threads);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int64_t t, int) {
      partial[t] = sum_slice(static_cast<size_t>(t), static_cast<size_t>(threads));
    });
    const double s = seconds_since(start);
    for (float p : partial) sink = sink + p;
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  return best;
}

}  // namespace

struct ReadProbe::Impl {
  ThreadPool& pool;
  size_t n;  // floats
  HugeBuffer buffer;
};

ReadProbe::ReadProbe(ThreadPool& pool, size_t bytes) {
  // On 2 MiB pages where the kernel grants them, like the KV pools: on 4 KiB pages the same
  // read measured 10-20% slower here (TLB misses), which would flatter every ratio against it.
  const size_t n = std::max<size_t>(bytes / sizeof(float), 1024);
  HugeBuffer buffer = alloc_huge(n * sizeof(float));
  fill_slices(pool, reinterpret_cast<float*>(buffer.get()), n);
  impl_.reset(new Impl{pool, n, std::move(buffer)});
}

ReadProbe::~ReadProbe() = default;

double ReadProbe::pass_gbps() {
  const size_t n = impl_->n;
  const float* f = reinterpret_cast<const float*>(impl_->buffer.get());
  return best_read_gbps(impl_->pool, n * sizeof(float), 1, [&](size_t t, size_t threads) {
    const size_t begin = n * t / threads, end = n * (t + 1) / threads;
    return sum_floats(f + begin, end - begin);
  });
}

double ReadProbe::best_gbps(int passes) {
  double best = 0;
  for (int r = 0; r < passes; ++r) best = std::max(best, pass_gbps());
  return best;
}

namespace {
// 512 MiB: far beyond any last-level cache, so every pass streams from DRAM.
constexpr size_t kStreamingBytes = size_t{512} << 20;
}  // namespace

double measure_read_bandwidth_gbps(ThreadPool& pool, int repetitions) {
  ReadProbe probe(pool, kStreamingBytes);
  return probe.best_gbps(repetitions);
}

double measure_page_run_read_gbps(ThreadPool& pool, size_t run_bytes, int repetitions) {
  run_bytes = std::max<size_t>(64, run_bytes / 64 * 64);
  const size_t runs = (size_t{512} << 20) / run_bytes;
  HugeBuffer buffer = alloc_huge(runs * run_bytes);  // like the KV pools
  fill_slices(pool, reinterpret_cast<float*>(buffer.get()), runs * run_bytes / sizeof(float));
  std::vector<uint32_t> order(runs);
  for (size_t i = 0; i < runs; ++i) order[i] = static_cast<uint32_t>(i);
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  // The best of three ways to read them: no software prefetch; the first two cache lines of
  // the run two ahead (the hardware's streamer takes the rest); every line of the run two
  // ahead. Which one wins changes from run to run on the same machine.
  double best = 0;
  for (const size_t prefetch_bytes : {size_t{0}, std::min<size_t>(128, run_bytes), run_bytes}) {
    best = std::max(
        best, best_read_gbps(pool, runs * run_bytes, repetitions, [&](size_t t, size_t threads) {
          float total = 0;
          const size_t end = runs * (t + 1) / threads;
          for (size_t i = runs * t / threads; i < end; ++i) {
            if (prefetch_bytes > 0 && i + 2 < end) {
              const uint8_t* next = buffer.get() + static_cast<size_t>(order[i + 2]) * run_bytes;
              for (size_t b = 0; b < prefetch_bytes; b += 64) __builtin_prefetch(next + b, 0, 3);
            }
            const float* run = reinterpret_cast<const float*>(buffer.get() + order[i] * run_bytes);
            total += sum_floats(run, run_bytes / sizeof(float));
          }
          return total;
        }));
  }
  return best;
}

double measure_sgemm_gflops(int num_threads, int repetitions) {
  const int n = 2048;
  std::vector<float> a(size_t{n} * n), b(size_t{n} * n), c(size_t{n} * n);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : a) x = dist(rng);
  for (auto& x : b) x = dist(rng);
  openblas_set_num_threads(num_threads);
  double best = 0;
  for (int r = 0; r < repetitions + 1; ++r) {  // the first call warms up OpenBLAS's threads
    const auto start = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = seconds_since(start);
    if (r > 0) best = std::max(best, 2.0 * n * n * static_cast<double>(n) / s / 1e9);
  }
  return best;
}

MachineCeilings measure_ceilings(ThreadPool& pool, size_t page_run_bytes) {
  MachineCeilings c;
  // Streaming passes before and after the other probes (one buffer, filled once): the best
  // over a longer stretch of a shared machine's changing speed.
  ReadProbe streaming(pool, kStreamingBytes);
  c.streaming_gbps = streaming.best_gbps(5);
  c.peak_gflops = measure_sgemm_gflops(pool.num_threads());
  if (page_run_bytes > 0) {
    c.page_run_bytes = page_run_bytes;
    c.page_run_gbps = measure_page_run_read_gbps(pool, page_run_bytes);
  }
  c.streaming_gbps = std::max(c.streaming_gbps, streaming.best_gbps(5));
  c.peak_gbps = std::max(c.streaming_gbps, c.page_run_gbps);
  return c;
}

}  // namespace kdr::cli
