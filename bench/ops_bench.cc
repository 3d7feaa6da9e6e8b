// Matmul timing driver: gemma3-270m shapes x weight types, decode (M=1, reported as weight
// GB/s and as a fraction of this machine's measured streaming read bandwidth) and prompt
// (M=512, GFLOP/s). Usage: ops_bench [threads] [--hot] [types...], e.g. ops_bench 2 Q8_0 Q4_K.
// --hot: one-row matmuls reuse one copy of the weights, which the smaller shapes keep in
// L2, so their time is the decoders' compute alone (compare decoder variants with it).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "ops/matmul.h"
#include "ops/quant.h"

using kdr::ThreadPool;
using namespace kdr::ops;

namespace {

// CPU time of the process divided by the pool's threads when KDR_BENCH_CPU_TIME is set (for
// loaded machines: time spent descheduled does not count), else wall time.
int g_threads = 1;
double now() {
  if (std::getenv("KDR_BENCH_CPU_TIME")) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (ts.tv_sec + ts.tv_nsec * 1e-9) / g_threads;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best-of-5 time of fn.
template <class Fn>
double best_time(Fn&& fn, int reps) {
  double best = 1e30;
  for (int t = 0; t < 5; ++t) {
    const double t0 = now();
    for (int r = 0; r < reps; ++r) fn();
    best = std::min(best, (now() - t0) / reps);
  }
  return best;
}

// Streaming read bandwidth of the pool over a buffer far larger than the caches.
double read_bandwidth(ThreadPool& pool) {
  const size_t n = size_t{256} << 20;  // 1 GiB of floats
  std::vector<float> buf(n / 4, 1.0f);
  std::vector<double> sums(64);
  const int tasks = pool.num_threads() * 4;
  const double t = best_time(
      [&] {
        pool.parallel_for(tasks, [&](int64_t task, int) {
          const size_t chunk = buf.size() / tasks;
          const float* p = buf.data() + task * chunk;
          float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
          for (size_t i = 0; i + 8 <= chunk; i += 8) {
            s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
            s4 += p[i + 4], s5 += p[i + 5], s6 += p[i + 6], s7 += p[i + 7];
          }
          sums[task % 64] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
        });
      },
      1);
  return static_cast<double>(buf.size() * 4) / t / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : ThreadPool::hardware_threads();
  std::vector<std::string> types;
  bool hot = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--hot") == 0) {
      hot = true;
    } else {
      types.push_back(argv[i]);
    }
  }
  if (types.empty()) types = {"Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K", "F16", "F32"};
  ThreadPool pool(threads);
  g_threads = threads;
  const double bw = read_bandwidth(pool);
  std::printf("threads=%d  streaming read bandwidth %.2f GB/s%s\n", threads, bw,
              hot ? "  (--hot: one-row weights reused from cache)" : "");
  std::printf("%-5s %7s %6s %4s %10s %9s %8s %9s\n", "type", "N", "K", "M", "time_ms", "GB/s",
              "%bw", "GFLOP/s");
  struct Shape {
    int64_t n, k;
  };
  const Shape shapes[] = {{2048, 640}, {640, 2048}, {1024, 640}, {262144, 640}};
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  for (const std::string& name : types) {
    kdr::DType type;
    try {
      type = kdr::parse_dtype(name);
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "ops_bench: %s\n", e.what());
      return 2;
    }
    if (!is_supported_type(type) || type == kdr::DType::Q8_K) {
      std::fprintf(stderr, "ops_bench: matmul has no kernel for %s weights\n", dtype_name(type));
      return 2;
    }
    for (const Shape& s : shapes) {
      if (s.k % dtype_traits(type).block_elems != 0) continue;
      const size_t rb = row_bytes(type, s.k);
      std::vector<uint8_t> w(rb * s.n);
      // Quantizing 262144 rows is slow; tile one random 64-row slab.
      {
        std::vector<float> row(s.k);
        const int64_t slab = std::min<int64_t>(s.n, 64);
        for (int64_t r = 0; r < slab; ++r) {
          for (auto& v : row) v = normal(rng) * 0.05f;
          quantize_row(type, row.data(), w.data() + r * rb, s.k);
        }
        for (int64_t r = slab; r < s.n; ++r)
          std::memcpy(w.data() + r * rb, w.data() + (r % slab) * rb, rb);
      }
      // One-row matmuls stream their weights from memory in generation (a model's weights
      // are far larger than the caches): rotate over copies filling 128 MB.
      const size_t copies = hot ? 1 : std::max<size_t>(1, (size_t{128} << 20) / w.size());
      std::vector<uint8_t> stream(w.size() * copies);
      for (size_t c = 0; c < copies; ++c)
        std::memcpy(stream.data() + c * w.size(), w.data(), w.size());
      size_t next_copy = 0;
      const WeightMatrix wm{type, w.data(), s.n, s.k, 0};
      for (int64_t m : {int64_t{1}, int64_t{512}}) {
        if (m == 512 && s.n > 4096) continue;  // logits are only computed for last tokens
        std::vector<float> x(m * s.k), y(m * s.n);
        for (auto& v : x) v = normal(rng);
        const double flops = 2.0 * m * s.n * s.k;
        const int reps = std::max(
            1, static_cast<int>(2e8 / (flops + 1e6 * 0 + static_cast<double>(w.size()) * 4)));
        const double t = best_time(
            [&] {
              WeightMatrix cur = wm;
              if (m == 1 && !hot) {
                cur.data = stream.data() + (next_copy++ % copies) * w.size();
              }
              matmul(pool, x.data(), m, cur, y.data());
            },
            reps);
        const double gbs = static_cast<double>(w.size()) / t / 1e9;
        std::printf("%-5s %7lld %6lld %4lld %10.3f %9.2f %7.0f%% %9.1f\n", name.c_str(),
                    static_cast<long long>(s.n), static_cast<long long>(s.k),
                    static_cast<long long>(m), t * 1e3, gbs, 100 * gbs / bw, flops / t / 1e9);
      }
    }
  }
  return 0;
}
