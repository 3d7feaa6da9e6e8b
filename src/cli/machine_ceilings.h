// This machine's own ceilings, measured in the same run as a benchmark so that utilisation
// (MBU, MFU) is relative to what the hardware really does, not to a datasheet.
#pragma once

#include <cstddef>
#include <memory>

namespace kdr {
class ThreadPool;
}

namespace kdr::cli {

struct MachineCeilings {
  // The read ceiling that MBU is taken against, GB/s (1e9 bytes): the streaming read, or the
  // random-run read below where that measured faster (a streaming read slowed by a busy
  // moment of a shared machine would otherwise flatter every ratio against it).
  double peak_gbps = 0;
  double streaming_gbps = 0;  // streaming read bandwidth: the best of its passes
  double peak_gflops = 0;     // fp32 FMA throughput from OpenBLAS sgemm, GFLOP/s
  // Read bandwidth when the bytes come in runs of `page_run_bytes` visited in random order,
  // as a paged KV cache hands them to attention (0 when not measured).
  double page_run_gbps = 0;
  size_t page_run_bytes = 0;
};

// Best of several multi-threaded sums over a buffer much larger than the last-level cache.
double measure_read_bandwidth_gbps(ThreadPool& pool, int repetitions = 5);

// Best of several large square cblas_sgemm calls with OpenBLAS using num_threads threads.
double measure_sgemm_gflops(int num_threads, int repetitions = 3);

// Best of several multi-threaded sums over a huge-page buffer far larger than the caches,
// read in runs of `run_bytes` (a multiple of 64) whose order is a fixed random permutation:
// the pattern of a KV cache whose pages are scattered through the pool. The best of reading
// them without software prefetch and with the run two ahead prefetched (its first two lines,
// or all of it).
double measure_page_run_read_gbps(ThreadPool& pool, size_t run_bytes, int repetitions = 5);

// One streaming read pass at a time over a huge-page buffer far larger than the caches, for
// a benchmark to measure the bandwidth right next to each timed call: on a shared machine
// whose speed moves between runs, a ratio of two adjacent measurements is steadier than one
// against a ceiling measured minutes earlier.
class ReadProbe {
 public:
  explicit ReadProbe(ThreadPool& pool, size_t bytes = size_t{256} << 20);
  ~ReadProbe();
  ReadProbe(const ReadProbe&) = delete;
  ReadProbe& operator=(const ReadProbe&) = delete;
  double pass_gbps();            // one multi-threaded pass over the whole buffer: GB/s (1e9 bytes)
  double best_gbps(int passes);  // the best of `passes` passes

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Stream bandwidth and sgemm; with page_run_bytes > 0 also measure_page_run_read_gbps.
MachineCeilings measure_ceilings(ThreadPool& pool, size_t page_run_bytes = 0);

}  // namespace kdr::cli
