#include "cli/machine_ceilings.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

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

double measure_read_bandwidth_gbps(ThreadPool& pool, int repetitions) {
  // 512 MiB: far beyond any last-level cache, so every pass streams from DRAM.
  const size_t n = size_t{128} << 20;
  std::unique_ptr<float[]> buffer(new float[n]);
  const int threads = pool.num_threads();
  // Each thread first-touches its own slice (NUMA-friendly where it matters).
  pool.parallel_for(threads, [&](int64_t t, int) {
    const size_t begin = n * t / threads, end = n * (t + 1) / threads;
    for (size_t i = begin; i < end; ++i) buffer[i] = static_cast<float>(i & 1023) * 1e-3f;
  });
  std::vector<float> partial(threads);
  double best = 0;
  volatile float sink = 0;
  for (int r = 0; r < repetitions; ++r) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int64_t t, int) {
      const size_t begin = n * t / threads, end = n * (t + 1) / threads;
      partial[t] = sum_floats(buffer.get() + begin, end - begin);
    });
    const double s = seconds_since(start);
    for (float p : partial) sink = sink + p;
    best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
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

MachineCeilings measure_ceilings(ThreadPool& pool) {
  MachineCeilings c;
  c.peak_gbps = measure_read_bandwidth_gbps(pool);
  c.peak_gflops = measure_sgemm_gflops(pool.num_threads());
  return c;
}

}  // namespace kdr::cli
