// This machine's own ceilings, measured in the same run as a benchmark so that utilisation
// (MBU, MFU) is relative to what the hardware really does, not to a datasheet.
#pragma once

namespace kdr {
class ThreadPool;
}

namespace kdr::cli {

struct MachineCeilings {
  double peak_gbps = 0;    // streaming read bandwidth, GB/s (1e9 bytes)
  double peak_gflops = 0;  // fp32 FMA throughput from OpenBLAS sgemm, GFLOP/s
};

// Best of several multi-threaded sums over a buffer much larger than the last-level cache.
double measure_read_bandwidth_gbps(ThreadPool& pool, int repetitions = 5);

// Best of several large square cblas_sgemm calls with OpenBLAS using num_threads threads.
double measure_sgemm_gflops(int num_threads, int repetitions = 3);

MachineCeilings measure_ceilings(ThreadPool& pool);

}  // namespace kdr::cli
