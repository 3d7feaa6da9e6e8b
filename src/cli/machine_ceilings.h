// This machine's own ceilings, measured in the same run as a benchmark so that utilisation
// (MBU, MFU) is relative to what the hardware really does, not to a datasheet.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "base/cpu_features.h"
#include "rpa/rpa.h"

namespace kdr {
class ThreadPool;
}

namespace kdr::cli {

// The compute units whose throughput `kdr bench` measures, one register-resident loop each
// (ceilings_*.cc). A kernel path (cpu::Path) can use some of them; MFU is taken against the
// unit a case can use on the active path (attention_unit below).
enum class ComputeUnit : int {
  kF32Sse = 0,  // f32 multiply + add on 128-bit vectors: the scalar path (Highway's EMU128)
  kF32Avx2,     // f32 FMA on ymm: the avx2 path
  kF32Avx512,   // f32 FMA on zmm: the avx512 path
  kBf16Dot,     // vdpbf16ps (bf16 pairs into f32) on zmm: the avx512bf16 path
  kInt8Dot,     // vpdpbusd (u8 x s8 quads into int32) on zmm: the avx512bf16 path (VNNI)
  kAmxBf16,     // tdpbf16ps tile products: the amx path
  kAmxInt8,     // tdpbssd tile products: the amx path
};
inline constexpr int kNumComputeUnits = 7;

const char* unit_name(ComputeUnit u);  // "f32-sse", "f32-avx2-fma", ..., "amx-int8"
// The least path that has the unit: it runs here when cpu::hardware_reason(path) is empty.
cpu::Path unit_path(ComputeUnit u);
// What the unit's products take their inputs in: "f32", "bf16" or "int8".
const char* unit_input_precision(ComputeUnit u);

struct UnitCeiling {
  double gops = 0;          // G(FL)OP/s on all threads; int8 units count integer operations
  std::string unavailable;  // why it was not measured ("not on this CPU: ..."), or empty
};

struct ComputeCeilings {
  UnitCeiling unit[kNumComputeUnits];
  const UnitCeiling& operator[](ComputeUnit u) const { return unit[static_cast<int>(u)]; }
};

// Each unit this CPU has, timed on every thread of `pool` at once: the best of five runs of
// about `seconds` each. AMX asks cpu::amx_permitted() first.
ComputeCeilings measure_compute_ceilings(ThreadPool& pool, double seconds = 0.05);
// One unit alone, the best of `runs` runs of about `seconds`: 0 where the unit cannot run
// here (unit_unavailable_reason says why). A benchmark calls it right next to a timed case,
// so that on a shared machine whose speed moves the ceiling is taken in the same moment.
double measure_unit_gops(ThreadPool& pool, ComputeUnit u, double seconds, int runs = 5);
std::string unit_unavailable_reason(ComputeUnit u);  // "not on this CPU: ..." or empty

// What an attention case is, for the unit its kernels can use.
enum class AttentionKind { kDecode, kPrefill, kMixed };

// The unit the kernels of `path` can use on a case of this kind over a cache of `kv`: the
// f32 FMA of the path's width for every dtype on the scalar/avx2/avx512 paths (today's
// kernels); on avx512bf16, bf16 dot products for bf16 caches and VNNI for int8 ones; on amx,
// tiles for the prefill and mixed work on bf16 (int8) caches and the dot products for
// decodes. Other dtypes fall back to f32 FMA on zmm.
ComputeUnit attention_unit(cpu::Path path, AttentionKind kind, rpa::KvDType kv);

// The error a kernel on `u` may have against the scalar reference, element-wise
// |kernel - reference| <= atol + rtol * |reference|: f32 products 1e-4 (the rpa tests'
// tolerance), bf16 ones 1e-2 (8-bit mantissas for Q and P), int8 ones 2e-2.
struct Tolerance {
  double atol = 0, rtol = 0;
};
Tolerance error_tolerance(ComputeUnit u);
// The largest |got - want| / (atol + rtol * |want|) over the elements: > 1 fails.
double tolerance_ratio(const float* got, const float* want, size_t n, Tolerance tol);

// Utilisation: achieved G(FL)OP/s (flops over ms) against a ceiling in G(FL)OP/s.
double utilisation(double flops, double ms, double ceiling_gops);

// A case's roofline: the least time the bytes and FLOPs allow, max(bytes / read ceiling,
// flops / compute ceiling), and the fraction of it the measured time reaches.
struct Roofline {
  double bound_ms = 0;
  double fraction = 0;         // bound_ms / ms: 1 is at the roof
  bool compute_bound = false;  // the FLOP term is the larger
};
Roofline roofline(double bytes, double flops, double ms, double read_gbps, double compute_gops);

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
  ComputeCeilings compute;  // per unit, on all threads
};

// Best of several multi-threaded sums over a buffer much larger than the last-level cache.
double measure_read_bandwidth_gbps(ThreadPool& pool, int repetitions = 5);

// Best of several large square cblas_sgemm calls with OpenBLAS using num_threads threads.
double measure_sgemm_gflops(int num_threads, int repetitions = 3, int n = 2048);

// Best of several multi-threaded sums over a huge-page buffer far larger than the caches,
// read in runs of `run_bytes` (a multiple of 64) whose order is a fixed random permutation:
// the pattern of a KV cache whose pages are scattered through the pool. The best of reading
// them without software prefetch and with the run two ahead prefetched (its first two lines,
// or all of it).
double measure_page_run_read_gbps(ThreadPool& pool, size_t run_bytes, int repetitions = 5,
                                  size_t total_bytes = size_t{512} << 20);

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

// Stream bandwidth, sgemm and the compute units; with page_run_bytes > 0 also
// measure_page_run_read_gbps. `quick`: small buffers and short loops (tests; the numbers are
// then rough).
MachineCeilings measure_ceilings(ThreadPool& pool, size_t page_run_bytes = 0, bool quick = false);

}  // namespace kdr::cli
