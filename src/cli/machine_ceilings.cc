#include "cli/machine_ceilings.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "base/huge_buffer.h"
#include "base/thread_pool.h"
#include "cli/ceilings_kernels.h"

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

double measure_page_run_read_gbps(ThreadPool& pool, size_t run_bytes, int repetitions,
                                  size_t total_bytes) {
  run_bytes = std::max<size_t>(64, run_bytes / 64 * 64);
  const size_t runs = std::max<size_t>(1, total_bytes / run_bytes);
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

double measure_sgemm_gflops(int num_threads, int repetitions, int n) {
  const size_t elements = static_cast<size_t>(n) * n;
  std::vector<float> a(elements), b(elements), c(elements);
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

MachineCeilings measure_ceilings(ThreadPool& pool, size_t page_run_bytes, bool quick) {
  MachineCeilings c;
  // Streaming passes before and after the other probes (one buffer, filled once): the best
  // over a longer stretch of a shared machine's changing speed.
  const size_t stream_bytes = quick ? size_t{32} << 20 : kStreamingBytes;
  const int passes = quick ? 2 : 5;
  ReadProbe streaming(pool, stream_bytes);
  c.streaming_gbps = streaming.best_gbps(passes);
  c.peak_gflops = measure_sgemm_gflops(pool.num_threads(), quick ? 1 : 3, quick ? 256 : 2048);
  c.compute = measure_compute_ceilings(pool, quick ? 0.005 : 0.05);
  if (page_run_bytes > 0) {
    c.page_run_bytes = page_run_bytes;
    c.page_run_gbps = measure_page_run_read_gbps(pool, page_run_bytes, passes, stream_bytes);
  }
  c.streaming_gbps = std::max(c.streaming_gbps, streaming.best_gbps(passes));
  c.peak_gbps = std::max(c.streaming_gbps, c.page_run_gbps);
  return c;
}

const char* unit_name(ComputeUnit u) {
  switch (u) {
    case ComputeUnit::kF32Sse:
      return "f32-sse";
    case ComputeUnit::kF32Avx2:
      return "f32-avx2-fma";
    case ComputeUnit::kF32Avx512:
      return "f32-avx512-fma";
    case ComputeUnit::kBf16Dot:
      return "bf16-dot";
    case ComputeUnit::kInt8Dot:
      return "int8-vnni";
    case ComputeUnit::kAmxBf16:
      return "amx-bf16";
    case ComputeUnit::kAmxInt8:
      return "amx-int8";
  }
  return "?";
}

cpu::Path unit_path(ComputeUnit u) {
  switch (u) {
    case ComputeUnit::kF32Sse:
      return cpu::Path::kScalar;
    case ComputeUnit::kF32Avx2:
      return cpu::Path::kAvx2;
    case ComputeUnit::kF32Avx512:
      return cpu::Path::kAvx512;
    case ComputeUnit::kBf16Dot:
    case ComputeUnit::kInt8Dot:
      return cpu::Path::kAvx512Bf16;
    case ComputeUnit::kAmxBf16:
    case ComputeUnit::kAmxInt8:
      return cpu::Path::kAmx;
  }
  return cpu::Path::kScalar;
}

const char* unit_input_precision(ComputeUnit u) {
  switch (u) {
    case ComputeUnit::kBf16Dot:
    case ComputeUnit::kAmxBf16:
      return "bf16";
    case ComputeUnit::kInt8Dot:
    case ComputeUnit::kAmxInt8:
      return "int8";
    default:
      return "f32";
  }
}

namespace {

using UnitLoop = double (*)(int64_t, float*);

UnitLoop unit_loop(ComputeUnit u) {
  switch (u) {
    case ComputeUnit::kF32Sse:
      return ceilings::f32_sse_mul_add;
    case ComputeUnit::kF32Avx2:
      return ceilings::f32_avx2_fma;
    case ComputeUnit::kF32Avx512:
      return ceilings::f32_avx512_fma;
    case ComputeUnit::kBf16Dot:
      return ceilings::bf16_avx512_dot;
    case ComputeUnit::kInt8Dot:
      return ceilings::int8_avx512_vnni;
    case ComputeUnit::kAmxBf16:
      return ceilings::amx_bf16_tiles;
    case ComputeUnit::kAmxInt8:
      return ceilings::amx_int8_tiles;
  }
  return nullptr;
}

// One run of `loop` on every thread of the pool at once: each task waits until all have
// started (so no thread runs two of them one after the other), then runs `iterations`. Returns
// the operations of all threads over the span from the first start to the last end, G/s;
// `*seconds` is that span.
double run_on_all_threads(ThreadPool& pool, UnitLoop loop, int64_t iterations, double* seconds) {
  const int threads = pool.num_threads();
  std::atomic<int> arrived{0};
  std::vector<double> ops(threads);
  std::vector<std::chrono::steady_clock::time_point> begin(threads), end(threads);
  std::vector<float> sinks(threads);
  pool.parallel_for(threads, [&](int64_t t, int) {
    arrived.fetch_add(1);
    while (arrived.load() < threads) {
    }
    begin[t] = std::chrono::steady_clock::now();
    ops[t] = loop(iterations, &sinks[t]);
    end[t] = std::chrono::steady_clock::now();
  });
  const auto first = *std::min_element(begin.begin(), begin.end());
  const auto last = *std::max_element(end.begin(), end.end());
  *seconds = std::max(1e-9, std::chrono::duration<double>(last - first).count());
  volatile float sink = 0;
  double total = 0;
  for (int t = 0; t < threads; ++t) {
    total += ops[t];
    sink = sink + sinks[t];
  }
  return total / *seconds / 1e9;
}

}  // namespace

std::string unit_unavailable_reason(ComputeUnit u) {
  // The scalar path's reason (Highway's portable target not compiled) says nothing about the
  // CPU: SSE2 is the x86-64 baseline.
  if (u == ComputeUnit::kF32Sse) return "";
  // What the hardware allows, not what the kernels are admitted to (cpu_features.h: the
  // unverified paths are opt-in, their units are still measured).
  if (const std::string why = cpu::hardware_reason(unit_path(u)); !why.empty())
    return "not on this CPU: " + why;
  return "";
}

double measure_unit_gops(ThreadPool& pool, ComputeUnit u, double seconds, int runs) {
  if (!unit_unavailable_reason(u).empty()) return 0;
  const UnitLoop loop = unit_loop(u);
  // Size the runs by the fastest rate seen while doubling: double until a run at that rate
  // takes a tenth of the target, then run `seconds` at it. A run stretched by a thread that
  // lost its core (common on a shared machine) lowers no estimate and shrinks no run.
  int64_t iterations = 1024;
  double best_rate = 0, s = 0;  // iterations per second
  for (;;) {
    run_on_all_threads(pool, loop, iterations, &s);
    best_rate = std::max(best_rate, static_cast<double>(iterations) / s);
    if (iterations >= best_rate * seconds / 10 || iterations >= (int64_t{1} << 40)) break;
    iterations *= 2;
  }
  iterations = std::max(iterations, static_cast<int64_t>(best_rate * seconds));
  double best = 0;
  for (int r = 0; r < runs; ++r)
    best = std::max(best, run_on_all_threads(pool, loop, iterations, &s));
  return best;
}

ComputeCeilings measure_compute_ceilings(ThreadPool& pool, double seconds) {
  ComputeCeilings out;
  for (int i = 0; i < kNumComputeUnits; ++i) {
    const auto u = static_cast<ComputeUnit>(i);
    out.unit[i].unavailable = unit_unavailable_reason(u);
    out.unit[i].gops = measure_unit_gops(pool, u, seconds);
  }
  return out;
}

ComputeUnit attention_unit(cpu::Path path, AttentionKind kind, rpa::KvDType kv) {
  switch (path) {
    case cpu::Path::kScalar:
      return ComputeUnit::kF32Sse;
    case cpu::Path::kAvx2:
      return ComputeUnit::kF32Avx2;
    case cpu::Path::kAvx512:
      return ComputeUnit::kF32Avx512;
    case cpu::Path::kAvx512Bf16:
    case cpu::Path::kAmx: {
      const bool tiles = path == cpu::Path::kAmx && kind != AttentionKind::kDecode;
      if (kv == rpa::KvDType::kBF16) return tiles ? ComputeUnit::kAmxBf16 : ComputeUnit::kBf16Dot;
      if (kv == rpa::KvDType::kInt8) return tiles ? ComputeUnit::kAmxInt8 : ComputeUnit::kInt8Dot;
      return ComputeUnit::kF32Avx512;
    }
  }
  return ComputeUnit::kF32Sse;
}

Tolerance error_tolerance(ComputeUnit u) {
  const std::string precision = unit_input_precision(u);
  if (precision == "bf16") return {1e-2, 1e-2};
  if (precision == "int8") return {2e-2, 2e-2};
  return {1e-4, 1e-4};
}

double tolerance_ratio(const float* got, const float* want, size_t n, Tolerance tol) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double allowed = tol.atol + tol.rtol * std::fabs(static_cast<double>(want[i]));
    // A NaN on either side fails outright.
    worst = std::isnan(err) ? INFINITY : std::max(worst, err / allowed);
    if (std::isinf(worst)) break;
  }
  return worst;
}

double utilisation(double flops, double ms, double ceiling_gops) {
  if (!(ms > 0) || !(ceiling_gops > 0)) return 0;
  return flops / (ms * 1e6) / ceiling_gops;
}

Roofline roofline(double bytes, double flops, double ms, double read_gbps, double compute_gops) {
  Roofline r;
  const double memory_ms = read_gbps > 0 ? bytes / (read_gbps * 1e6) : 0;
  const double compute_ms = compute_gops > 0 ? flops / (compute_gops * 1e6) : 0;
  r.compute_bound = compute_ms > memory_ms;
  r.bound_ms = std::max(memory_ms, compute_ms);
  r.fraction = ms > 0 ? r.bound_ms / ms : 0;
  return r;
}

}  // namespace kdr::cli
