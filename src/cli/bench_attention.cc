// `kdr bench attention`: times rpa::run on Llama-3-8B attention shapes (Hq 32, Hkv 8, D 128,
// page 16) and prints, per case, utilisation against this machine's ceilings measured in the
// same run (the read bandwidth, sgemm, and the compute unit the case can use on the active
// kernel path), a roofline fraction, the speedup over the scalar reference and the error
// against it. Exits non-zero when a kernel's error exceeds its tolerance. Peers (ggml, PyTorch)
// are timed in the same run by `scripts/bench peers`, never typed in here.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/dtype.h"
#include "base/huge_buffer.h"
#include "base/thread_pool.h"
#include "cli/commands.h"
#include "cli/machine_ceilings.h"
#include "rpa/rpa.h"

namespace kdr::cli {
namespace {

// Llama-3-8B attention.
constexpr int32_t kQHeads = 32;  // the default; --q-heads changes the query group
constexpr int32_t kKvHeads = 8;
constexpr int32_t kHeadDim = 128;
constexpr int32_t kPageSize = 16;

// The scalar reference accumulates in double, one element at a time: time it only on cases
// of at most this many useful FLOPs (larger cases are shrunk, see reduce_case).
constexpr double kReferenceFlopBudget = 1.2e9;

struct Sequence {
  int32_t q_len = 1;   // new tokens this step
  int32_t kv_len = 1;  // cached + new
};

struct BenchCase {
  std::string name;
  std::string group;  // decode | prefill | mixed: what --case selects
  rpa::KvDType dtype = rpa::KvDType::kBF16;
  std::vector<Sequence> seqs;  // decodes first, then equal prefill chunks, then the rest
  // Every cached page but each sequence's last (where its new rows go) aliased to two pages
  // that stay in L2: the same arithmetic without the DRAM traffic, so the "MBU" of such a
  // case is the most the kernel's arithmetic allows on this machine.
  bool kv_in_cache = false;
};

struct Options {
  bool json = false;
  bool quick = false;         // tiny cases and short ceilings: a check that runs in seconds
  double perturb_output = 0;  // added to one kernel output before the error check (tests)
  int threads = 0;
  std::string which = "all";
  int reps = 5;
  int32_t q_heads = kQHeads;  // a multiple of the 8 KV heads: 8 is MHA, 16 GQA 2
  rpa::Tuning tuning;         // block sizes for sweeps (0: the library's defaults)
};

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// kv lengths spread deterministically over [lo, hi], interleaved so that long and short
// sequences alternate in the batch, and not page aligned so partial last pages occur.
std::vector<Sequence> decode_spread(int32_t count, int32_t lo, int32_t hi) {
  std::vector<Sequence> seqs(count);
  for (int32_t i = 0; i < count; ++i) {
    const int32_t k = (i * 13) % count;  // 13 is coprime with the counts used here
    const int32_t len =
        count == 1 ? lo : lo + static_cast<int32_t>((int64_t{hi - lo} * k) / (count - 1));
    seqs[i] = {1, std::max(lo, len - k % 7)};
  }
  return seqs;
}

std::vector<BenchCase> all_cases() {
  std::vector<BenchCase> cases;
  const auto spread = decode_spread(32, 512, 8192);
  for (rpa::KvDType dt : {rpa::KvDType::kBF16, rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3,
                          rpa::KvDType::kF16, rpa::KvDType::kF32}) {
    cases.push_back({"decode-32seq", "decode", dt, spread});
  }
  cases.push_back({"decode-32seq-inL2", "decode", rpa::KvDType::kBF16, spread, true});
  cases.push_back({"decode-4096", "decode", rpa::KvDType::kF16, {{1, 4096}}});
  cases.push_back({"decode-16384", "decode", rpa::KvDType::kF16, {{1, 16384}}});
  cases.push_back({"prefill-2048", "prefill", rpa::KvDType::kBF16, {{2048, 2048}}});

  // One continuous-batching step: 24 decodes plus two 512-token prefill chunks on top of
  // 1024 and 4096 cached tokens; and the same two parts run alone.
  const auto decodes = decode_spread(24, 512, 8192);
  const std::vector<Sequence> chunks = {{512, 1024 + 512}, {512, 4096 + 512}};
  std::vector<Sequence> mixed = decodes;
  mixed.insert(mixed.end(), chunks.begin(), chunks.end());
  cases.push_back({"mixed", "mixed", rpa::KvDType::kBF16, mixed});
  cases.push_back({"mixed-decode-part", "mixed", rpa::KvDType::kBF16, decodes});
  cases.push_back({"mixed-prefill-part", "mixed", rpa::KvDType::kBF16, chunks});
  return cases;
}

// --quick: the same kinds of case (ragged decodes, one long decode, a prefill, a mixed step
// and its parts) at sizes the scalar reference checks in full within a second.
std::vector<BenchCase> quick_cases() {
  std::vector<BenchCase> cases;
  const auto spread = decode_spread(4, 40, 300);
  cases.push_back({"decode-4seq", "decode", rpa::KvDType::kBF16, spread});
  cases.push_back({"decode-4seq", "decode", rpa::KvDType::kInt8, spread});
  cases.push_back({"decode-4seq-inL2", "decode", rpa::KvDType::kBF16, spread, true});
  cases.push_back({"decode-512", "decode", rpa::KvDType::kF16, {{1, 512}}});
  cases.push_back({"prefill-64", "prefill", rpa::KvDType::kBF16, {{64, 64}}});
  const auto decodes = decode_spread(3, 40, 200);
  const std::vector<Sequence> chunks = {{32, 64 + 32}, {32, 96 + 32}};
  std::vector<Sequence> mixed = decodes;
  mixed.insert(mixed.end(), chunks.begin(), chunks.end());
  cases.push_back({"mixed", "mixed", rpa::KvDType::kBF16, mixed});
  cases.push_back({"mixed-decode-part", "mixed", rpa::KvDType::kBF16, decodes});
  cases.push_back({"mixed-prefill-part", "mixed", rpa::KvDType::kBF16, chunks});
  return cases;
}

AttentionKind kind_of(const std::string& group) {
  if (group == "decode") return AttentionKind::kDecode;
  if (group == "prefill") return AttentionKind::kPrefill;
  return AttentionKind::kMixed;
}

// Useful attention FLOPs: 2*D for q.k and 2*D for p.v per (query head, attended position);
// causal masking and the sliding window are counted exactly.
double useful_flops(const std::vector<Sequence>& seqs, const rpa::AttentionParams& p) {
  double attended = 0;
  for (const Sequence& s : seqs) {
    for (int32_t j = 0; j < s.q_len; ++j) {
      const int64_t pos = int64_t{s.kv_len} - s.q_len + j;
      const int64_t end = p.causal ? pos + 1 : s.kv_len;  // exclusive
      const int64_t begin =
          p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
      attended += static_cast<double>(std::max<int64_t>(0, end - begin));
    }
  }
  return attended * p.num_q_heads * 4.0 * kHeadDim;
}

// Bytes that must cross the memory bus: the KV cache over each sequence's kv_len (the cached
// part read, the new tokens' rows written), int8 row scales, and the f32 q, k, v and out.
double bytes_moved(const std::vector<Sequence>& seqs, rpa::KvDType dtype, int32_t q_heads) {
  double kv_positions = 0, tokens = 0;
  for (const Sequence& s : seqs) {
    kv_positions += s.kv_len;
    tokens += s.q_len;
  }
  double per_position = 2.0 * kKvHeads * kHeadDim * static_cast<double>(rpa::element_size(dtype));
  if (dtype == rpa::KvDType::kInt8) per_position += 2.0 * kKvHeads * sizeof(float);
  const double activations = tokens * 4.0 * (2.0 * q_heads + 2.0 * kKvHeads) * kHeadDim;
  return kv_positions * per_position + activations;
}

void* alloc_bytes(size_t bytes) {
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p) throw std::runtime_error("out of memory allocating " + std::to_string(bytes) + " bytes");
  return p;
}
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<void, FreeDeleter>;

// One case made concrete: metadata, a filled cache and random activations.
class Workload {
 public:
  Workload(const std::vector<Sequence>& seqs, rpa::KvDType dtype, int32_t q_heads, uint64_t seed,
           bool kv_in_cache = false)
      : seqs_(seqs) {
    const int32_t n = static_cast<int32_t>(seqs.size());
    int32_t total_pages = 0;
    pages_per_seq_ = 1;
    cu_q_lens_.push_back(0);
    for (const Sequence& s : seqs) {
      const int32_t pages = (s.kv_len + kPageSize - 1) / kPageSize;
      total_pages += pages;
      pages_per_seq_ = std::max(pages_per_seq_, pages);
      cu_q_lens_.push_back(cu_q_lens_.back() + s.q_len);
      kv_lens_.push_back(s.kv_len);
    }
    // Pages are scattered through the pool, as in a long-running server.
    std::vector<int32_t> order(total_pages);
    for (int32_t i = 0; i < total_pages; ++i) order[i] = i;
    std::mt19937_64 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    page_indices_.assign(static_cast<size_t>(n) * pages_per_seq_, 0);
    int32_t next = 0;
    for (int32_t i = 0; i < n; ++i) {
      const int32_t pages = (seqs[i].kv_len + kPageSize - 1) / kPageSize;
      for (int32_t j = 0; j < pages; ++j)
        page_indices_[static_cast<size_t>(i) * pages_per_seq_ + j] = order[next++];
    }
    if (kv_in_cache) {
      // Two pages that are no sequence's last stand in for every earlier page: they are only
      // read, and sharing pages is allowed (prefix caching does it).
      std::vector<char> last(total_pages, 0);
      for (int32_t i = 0; i < n; ++i) {
        const int32_t pages = (seqs[i].kv_len + kPageSize - 1) / kPageSize;
        last[page_indices_[static_cast<size_t>(i) * pages_per_seq_ + pages - 1]] = 1;
      }
      std::vector<int32_t> shared;
      for (int32_t pg = 0; pg < total_pages && shared.size() < 2; ++pg)
        if (!last[pg]) shared.push_back(pg);
      for (int32_t i = 0; i < n && !shared.empty(); ++i) {
        const int32_t pages = (seqs[i].kv_len + kPageSize - 1) / kPageSize;
        for (int32_t j = 0; j + 1 < pages; ++j)
          page_indices_[static_cast<size_t>(i) * pages_per_seq_ + j] =
              shared[(i + j) % shared.size()];
      }
    }
    // Sort order of the contract: decodes, then a run of equal-size prefill chunks, then mixed.
    int32_t decode_end = 0;
    while (decode_end < n && seqs[decode_end].q_len == 1) ++decode_end;
    int32_t prefill_end = decode_end;
    while (prefill_end < n && seqs[prefill_end].q_len == seqs[decode_end].q_len) ++prefill_end;
    batch_.num_seqs = n;
    batch_.num_tokens = cu_q_lens_.back();
    batch_.cu_q_lens = cu_q_lens_.data();
    batch_.kv_lens = kv_lens_.data();
    batch_.page_indices = page_indices_.data();
    batch_.pages_per_seq = pages_per_seq_;
    batch_.distribution[0] = decode_end;
    batch_.distribution[1] = prefill_end;
    batch_.distribution[2] = n;

    cache_.shape = {total_pages, kKvHeads, kPageSize, kHeadDim, dtype};
    const size_t pool_bytes = cache_.shape.pool_elements() * rpa::element_size(dtype);
    k_pool_ = kdr::alloc_huge(pool_bytes);
    v_pool_ = kdr::alloc_huge(pool_bytes);
    cache_.k = k_pool_.get();
    cache_.v = v_pool_.get();
    fill_pool(k_pool_.get(), pool_bytes, dtype, rng);
    fill_pool(v_pool_.get(), pool_bytes, dtype, rng);
    if (dtype == rpa::KvDType::kInt8) {
      const size_t rows = cache_.shape.scale_elements();
      k_scales_.reset(alloc_bytes(rows * sizeof(float)));
      v_scales_.reset(alloc_bytes(rows * sizeof(float)));
      cache_.k_row_scales = static_cast<float*>(k_scales_.get());
      cache_.v_row_scales = static_cast<float*>(v_scales_.get());
      std::uniform_real_distribution<float> scale(0.5f / 127, 1.0f / 127);
      for (size_t i = 0; i < rows; ++i) {
        cache_.k_row_scales[i] = scale(rng);
        cache_.v_row_scales[i] = scale(rng);
      }
    }

    const size_t t = static_cast<size_t>(batch_.num_tokens);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    q_.resize(t * q_heads * kHeadDim);
    k_.resize(t * kKvHeads * kHeadDim);
    v_.resize(t * kKvHeads * kHeadDim);
    out_.assign(q_.size(), 0.0f);
    for (auto* x : {&q_, &k_, &v_})
      for (float& e : *x) e = unit(rng);
  }

  const rpa::RaggedBatch& batch() const { return batch_; }
  rpa::KvCache& cache() { return cache_; }
  const std::vector<Sequence>& seqs() const { return seqs_; }

  void run(const rpa::Plan& plan, ThreadPool& pool) {
    rpa::run(plan, q_.data(), k_.data(), v_.data(), cache_, out_.data(), &pool);
  }
  void reference(const rpa::AttentionParams& params) {
    rpa::reference(batch_, params, q_.data(), k_.data(), v_.data(), cache_, out_.data());
  }
  const std::vector<float>& out() const { return out_; }

 private:
  // Tiles a random pattern of valid values of the cache dtype over the pool: attention
  // time does not depend on the values, and this is much faster than quantising each row.
  static void fill_pool(void* pool, size_t bytes, rpa::KvDType dtype, std::mt19937_64& rng) {
    const size_t pattern_bytes = size_t{1} << 20;
    std::vector<uint8_t> pattern(pattern_bytes);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    const size_t esize = rpa::element_size(dtype);
    for (size_t i = 0; i < pattern_bytes / esize; ++i) {
      const float x = unit(rng);
      uint8_t* dst = pattern.data() + i * esize;
      switch (dtype) {
        case rpa::KvDType::kF32:
          std::memcpy(dst, &x, 4);
          break;
        case rpa::KvDType::kBF16: {
          const uint16_t h = f32_to_bf16(x);
          std::memcpy(dst, &h, 2);
          break;
        }
        case rpa::KvDType::kF16: {
          const uint16_t h = f32_to_f16(x);
          std::memcpy(dst, &h, 2);
          break;
        }
        case rpa::KvDType::kInt8:
          *dst = static_cast<uint8_t>(static_cast<int8_t>(std::lrint(x * 127)));
          break;
        case rpa::KvDType::kFp8E4M3:
          *dst = f32_to_fp8e4m3(x);
          break;
      }
    }
    uint8_t* p = static_cast<uint8_t*>(pool);
    for (size_t off = 0; off < bytes; off += pattern_bytes)
      std::memcpy(p + off, pattern.data(), std::min(pattern_bytes, bytes - off));
  }

  std::vector<Sequence> seqs_;
  std::vector<int32_t> cu_q_lens_, kv_lens_, page_indices_;
  int32_t pages_per_seq_ = 1;
  rpa::RaggedBatch batch_;
  rpa::KvCache cache_;
  kdr::HugeBuffer k_pool_, v_pool_;  // as the engine allocates its pools
  Buffer k_scales_, v_scales_;
  std::vector<float> q_, k_, v_, out_;
};

rpa::AttentionParams llama3_params(int32_t q_heads) {
  rpa::AttentionParams p;
  p.num_q_heads = q_heads;
  p.sm_scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  p.causal = true;
  return p;
}

// A smaller case of the same shape for the scalar reference: every length halved until the
// useful FLOPs fit the budget (decodes keep q_len 1).
std::vector<Sequence> reduce_case(std::vector<Sequence> seqs, const rpa::AttentionParams& p) {
  while (useful_flops(seqs, p) > kReferenceFlopBudget) {
    for (Sequence& s : seqs) {
      const int32_t cached = s.kv_len - s.q_len;
      s.q_len = s.q_len == 1 ? 1 : std::max(1, s.q_len / 2);
      s.kv_len = s.q_len + cached / 2;
    }
  }
  return seqs;
}

struct Result {
  int32_t q_heads = kQHeads;
  std::string name;
  rpa::KvDType dtype;
  ComputeUnit unit = ComputeUnit::kF32Sse;  // what the case can use on the active path
  int32_t num_seqs = 0, num_tokens = 0;
  double ms = 0, plan_ms = 0, bytes = 0, flops = 0;
  double ref_ms = 0, ref_fast_ms = 0, ref_flops = 0, max_abs_err = 0;
  double tolerance_ratio = 0;  // worst |err| / (atol + rtol |ref|): > 1 fails
  // The unit's ceiling measured right before and after the case's timed calls (the best of
  // the two): on a shared machine the header's ceiling may come from a slower moment.
  double unit_gops_adjacent = 0;
  bool ref_reduced = false;
  // Decode cases, from paired_runs (calls after a streaming read pass); 0 elsewhere.
  double cold_ms = 0, paired_gbps = 0, paired_mbu = 0;
};

// Median time of `reps` calls after a warm-up.
double time_runs(Workload& w, const rpa::Plan& plan, ThreadPool& pool, int reps) {
  w.run(plan, pool);  // warm-up: page faults, caches, thread wake-up
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    const double start = now_ms();
    w.run(plan, pool);
    times.push_back(now_ms() - start);
  }
  return median(times);
}

// `reps` calls, each right after one streaming read pass of `probe` (which also evicts the
// batch's KV from the caches, as the other layers of a model would): fills r.cold_ms, the
// median call time, r.paired_gbps, the median pass, and r.paired_mbu, the median over the
// calls of (the call's GB/s) / (its pass's GB/s).
void paired_runs(Workload& w, const rpa::Plan& plan, ThreadPool& pool, int reps, ReadProbe& probe,
                 Result& r) {
  std::vector<double> times, passes, ratios;
  for (int i = 0; i < reps; ++i) {
    const double pass = probe.pass_gbps();
    const double start = now_ms();
    w.run(plan, pool);
    times.push_back(now_ms() - start);
    passes.push_back(pass);
    ratios.push_back(r.bytes / (times.back() * 1e6) / pass);
  }
  r.cold_ms = median(times);
  r.paired_gbps = median(passes);
  r.paired_mbu = median(ratios);
}

// The mixed step against its two parts run alone, measured round by round: each round times
// one call of each (mixed, decode part, prefill part, back to back) and takes mixed / (decode
// + prefill); returns the median over `reps` rounds. The three calls of a round see the same
// machine state, where the cases' own medians are taken seconds apart (their ratio moved by
// up to 0.3 between runs on this machine).
double mixed_over_parts_interleaved(const std::vector<const BenchCase*>& trio, const Options& opt,
                                    ThreadPool& pool) {
  const rpa::AttentionParams params = llama3_params(opt.q_heads);
  std::vector<std::unique_ptr<Workload>> loads;
  std::vector<rpa::Plan> plans;
  for (const BenchCase* c : trio) {
    loads.push_back(std::make_unique<Workload>(c->seqs, c->dtype, opt.q_heads, 42, c->kv_in_cache));
    plans.push_back(rpa::make_plan(loads.back()->batch(), loads.back()->cache().shape, params,
                                   pool.num_threads(), opt.tuning));
    loads.back()->run(plans.back(), pool);  // warm-up
  }
  std::vector<double> ratios;
  for (int r = 0; r < opt.reps; ++r) {
    double ms[3];
    for (size_t i = 0; i < 3; ++i) {
      const double start = now_ms();
      loads[i]->run(plans[i], pool);
      ms[i] = now_ms() - start;
    }
    ratios.push_back(ms[0] / (ms[1] + ms[2]));
  }
  return median(ratios);
}

Result run_case(const BenchCase& c, const Options& opt, ThreadPool& pool, ReadProbe& probe) {
  const rpa::AttentionParams params = llama3_params(opt.q_heads);
  Result r;
  r.name = c.name;
  r.q_heads = opt.q_heads;
  r.dtype = c.dtype;
  r.unit = attention_unit(cpu::active_path(), kind_of(c.group), c.dtype);
  r.flops = useful_flops(c.seqs, params);
  r.bytes = bytes_moved(c.seqs, c.dtype, opt.q_heads);
  {
    Workload w(c.seqs, c.dtype, opt.q_heads, 42, c.kv_in_cache);
    r.num_seqs = w.batch().num_seqs;
    r.num_tokens = w.batch().num_tokens;
    std::vector<double> plan_times;
    rpa::Plan plan;
    for (int i = 0; i < 5; ++i) {
      const double start = now_ms();
      plan = rpa::make_plan(w.batch(), w.cache().shape, params, pool.num_threads(), opt.tuning);
      plan_times.push_back(now_ms() - start);
    }
    r.plan_ms = median(plan_times);
    const double probe_s = opt.quick ? 0.002 : 0.02;
    r.unit_gops_adjacent = measure_unit_gops(pool, r.unit, probe_s, 3);
    r.ms = time_runs(w, plan, pool, opt.reps);
    r.unit_gops_adjacent =
        std::max(r.unit_gops_adjacent, measure_unit_gops(pool, r.unit, probe_s, 3));
    if (c.group == "decode") paired_runs(w, plan, pool, opt.reps, probe, r);
  }

  // Scalar reference on the same or a reduced case; the fast kernel's output on that case
  // is also checked against it, so every number printed comes from a validated kernel.
  const std::vector<Sequence> small = reduce_case(c.seqs, params);
  r.ref_reduced = useful_flops(small, params) < r.flops;
  r.ref_flops = useful_flops(small, params);
  Workload w(small, c.dtype, opt.q_heads, 43, c.kv_in_cache);
  const rpa::Plan plan =
      rpa::make_plan(w.batch(), w.cache().shape, params, pool.num_threads(), opt.tuning);
  r.ref_fast_ms = r.ref_reduced ? time_runs(w, plan, pool, opt.reps) : r.ms;
  w.run(plan, pool);
  std::vector<float> fast = w.out();
  if (!fast.empty()) fast[fast.size() / 2] += static_cast<float>(opt.perturb_output);
  const double start = now_ms();
  w.reference(params);
  r.ref_ms = now_ms() - start;
  for (size_t i = 0; i < fast.size(); ++i)
    r.max_abs_err = std::max(r.max_abs_err, static_cast<double>(std::fabs(fast[i] - w.out()[i])));
  r.tolerance_ratio =
      tolerance_ratio(fast.data(), w.out().data(), fast.size(), error_tolerance(r.unit));
  return r;
}

void print_header(const MachineCeilings& m, const Options& opt) {
  std::printf(
      "kdr bench attention: Llama-3-8B attention (Hq %d, Hkv %d, D %d, page %d), %d threads, "
      "median of %d%s\n",
      opt.q_heads, kKvHeads, kHeadDim, kPageSize, opt.threads, opt.reps,
      opt.quick ? " (--quick: tiny cases, rough ceilings)" : "");
  std::printf("cpu: %s\n", cpu::describe().c_str());
  std::printf("machine ceilings: read bandwidth %.1f GB/s, sgemm fp32 %.1f GFLOP/s\n", m.peak_gbps,
              m.peak_gflops);
  std::printf(
      "                  read in %zu-byte runs in random order (one bf16 page of all KV heads,\n"
      "                  the pages scattered): %.1f GB/s = %.0f%% of the streaming read (%.1f)\n",
      m.page_run_bytes, m.page_run_gbps, 100 * m.page_run_gbps / m.streaming_gbps,
      m.streaming_gbps);
  if (m.page_run_gbps > m.streaming_gbps)
    std::printf(
        "                  (the random runs read faster than the streaming passes: a busy moment\n"
        "                  slowed those, so MBU is taken against the faster of the two)\n");
  std::printf("compute ceilings (register-resident loops on all %d threads):\n", opt.threads);
  for (int i = 0; i < kNumComputeUnits; ++i) {
    const auto u = static_cast<ComputeUnit>(i);
    const UnitCeiling& c = m.compute[u];
    if (c.unavailable.empty())
      std::printf("  %-15s %10.1f G%s/s  (path %s)\n", unit_name(u), c.gops,
                  std::string(unit_input_precision(u)) == "int8" ? "OP" : "FLOP",
                  cpu::path_name(unit_path(u)));
    else
      std::printf("  %-15s %s\n", unit_name(u), c.unavailable.c_str());
  }
  std::printf("\n");
  std::printf("%-19s %-7s %4s %5s %9s %7s %8s %7s %8s %5s %5s %-14s %5s %5s %5s %10s %7s %8s %5s\n",
              "case", "kv", "seqs", "toks", "ms", "plan_ms", "MB", "GB/s", "GFLOP/s", "MBU", "MBUp",
              "unit", "MFU", "MFUsg", "roof", "ref_ms", "speedup", "max_err", "tol");
}

// Derived numbers of one case against the ceilings: one place for the table and the JSON.
struct Derived {
  double gbps = 0, gflops = 0, mbu = 0, unit_gops = 0, mfu = 0, mfu_sgemm = 0, roof_gbps = 0;
  Roofline roof;
};

Derived derive(const Result& r, const MachineCeilings& m) {
  Derived d;
  d.gbps = r.bytes / (r.ms * 1e6);
  d.gflops = r.flops / (r.ms * 1e6);
  d.mbu = d.gbps / m.peak_gbps;
  // The best the unit did in this run: the header's probe or the ones next to this case.
  d.unit_gops = std::max(m.compute[r.unit].gops, r.unit_gops_adjacent);
  d.mfu = utilisation(r.flops, r.ms, d.unit_gops);
  d.mfu_sgemm = utilisation(r.flops, r.ms, m.peak_gflops);
  // Likewise the read: the ceiling, or the passes next to the decode's cold calls.
  d.roof_gbps = std::max(m.peak_gbps, r.paired_gbps);
  d.roof = roofline(r.bytes, r.flops, r.ms, d.roof_gbps, d.unit_gops);
  return d;
}

void print_row(const Result& r, const MachineCeilings& m) {
  const Derived d = derive(r, m);
  char mbup[16] = "-";
  if (r.paired_mbu > 0) std::snprintf(mbup, sizeof mbup, "%.0f%%", 100 * r.paired_mbu);
  std::printf(
      "%-19s %-7s %4d %5d %9.3f %7.3f %8.1f %7.2f %8.2f %4.0f%% %5s %-14s %4.0f%% %4.0f%% %4.0f%% "
      "%9.1f%s %6.1fx %8.1e %5.2f%s\n",
      r.name.c_str(), rpa::to_string(r.dtype), r.num_seqs, r.num_tokens, r.ms, r.plan_ms,
      r.bytes / 1e6, d.gbps, d.gflops, 100 * d.mbu, mbup, unit_name(r.unit), 100 * d.mfu,
      100 * d.mfu_sgemm, 100 * d.roof.fraction, r.ref_ms, r.ref_reduced ? "*" : " ",
      r.ref_ms / r.ref_fast_ms, r.max_abs_err, r.tolerance_ratio,
      r.tolerance_ratio > 1 ? " FAIL" : "");
  std::fflush(stdout);
}

nlohmann::json ceilings_json(const MachineCeilings& m) {
  nlohmann::json units = nlohmann::json::object();
  for (int i = 0; i < kNumComputeUnits; ++i) {
    const auto u = static_cast<ComputeUnit>(i);
    const UnitCeiling& c = m.compute[u];
    units[unit_name(u)] = c.unavailable.empty() ? nlohmann::json(c.gops) : nlohmann::json(nullptr);
  }
  return units;
}

nlohmann::json to_json(const Result& r, const MachineCeilings& m, const Options& opt) {
  const Derived d = derive(r, m);
  const Tolerance tol = error_tolerance(r.unit);
  nlohmann::json j = {{"case", r.name},
                      {"kv_dtype", rpa::to_string(r.dtype)},
                      {"q_heads", r.q_heads},
                      {"num_seqs", r.num_seqs},
                      {"num_tokens", r.num_tokens},
                      {"threads", opt.threads},
                      {"cpu", cpu::describe()},
                      {"path", cpu::path_name(cpu::active_path())},
                      {"ms", r.ms},
                      {"plan_ms", r.plan_ms},
                      {"bytes", r.bytes},
                      {"flops", r.flops},
                      {"gbps", d.gbps},
                      {"gflops", d.gflops},
                      {"mbu", d.mbu},
                      {"unit", unit_name(r.unit)},
                      {"unit_gops", d.unit_gops},
                      {"unit_gops_adjacent", r.unit_gops_adjacent},
                      {"mfu", d.mfu},
                      {"mfu_sgemm", d.mfu_sgemm},
                      {"roofline_bound_ms", d.roof.bound_ms},
                      {"roofline_fraction", d.roof.fraction},
                      {"roofline_read_gbps", d.roof_gbps},
                      {"roofline_compute_bound", d.roof.compute_bound},
                      {"peak_gbps", m.peak_gbps},
                      {"streaming_gbps", m.streaming_gbps},
                      {"peak_gflops", m.peak_gflops},
                      {"compute_ceilings_gops", ceilings_json(m)},
                      {"page_run_bytes", m.page_run_bytes},
                      {"page_run_gbps", m.page_run_gbps},
                      {"mbu_page_runs", d.gbps / m.page_run_gbps},

                      {"ref_ms", r.ref_ms},
                      {"ref_reduced", r.ref_reduced},
                      {"ref_flops", r.ref_flops},
                      {"speedup_vs_ref", r.ref_ms / r.ref_fast_ms},
                      {"max_abs_err", r.max_abs_err},
                      {"tolerance_atol", tol.atol},
                      {"tolerance_rtol", tol.rtol},
                      {"tolerance_ratio", r.tolerance_ratio},
                      {"within_tolerance", r.tolerance_ratio <= 1}};
  if (r.paired_mbu > 0) {
    j["cold_ms"] = r.cold_ms;
    j["mbu_paired"] = r.paired_mbu;
    j["paired_gbps"] = r.paired_gbps;
  }
  return j;
}

// Whether results[i..i+2] are the mixed case and its two parts, in that order.
bool is_mixed_trio(const std::vector<Result>& results, size_t i) {
  return i + 2 < results.size() && results[i].name == "mixed" &&
         results[i + 1].name == "mixed-decode-part" && results[i + 2].name == "mixed-prefill-part";
}

void bench_attention(const Options& in) {
  Options opt = in;
  if (opt.threads <= 0) opt.threads = ThreadPool::hardware_threads();
  ThreadPool pool(opt.threads);
  // One page of every KV head in bf16: the contiguous run of K (and of V) that a decode item
  // over all KV heads reads before it jumps to the next scattered page.
  const MachineCeilings m =
      measure_ceilings(pool, size_t{kKvHeads} * kPageSize * kHeadDim * 2, opt.quick);
  ReadProbe probe(pool, opt.quick ? size_t{16} << 20 : size_t{256} << 20);
  if (opt.json) {
    // One line for the machine, then one per case.
    const nlohmann::json machine = {{"cpu", cpu::describe()},
                                    {"path", cpu::path_name(cpu::active_path())},
                                    {"threads", opt.threads},
                                    {"reps", opt.reps},
                                    {"quick", opt.quick},
                                    {"peak_gbps", m.peak_gbps},
                                    {"streaming_gbps", m.streaming_gbps},
                                    {"page_run_gbps", m.page_run_gbps},
                                    {"peak_gflops", m.peak_gflops},
                                    {"compute_ceilings_gops", ceilings_json(m)}};
    std::printf("%s\n", nlohmann::json{{"machine", machine}}.dump().c_str());
  } else {
    print_header(m, opt);
  }

  std::vector<Result> results;
  const std::vector<BenchCase> cases = opt.quick ? quick_cases() : all_cases();
  double interleaved = 0;  // mixed / parts, round by round (after the three mixed cases)
  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const BenchCase& c = cases[ci];
    if (opt.which != "all" && opt.which != c.group) continue;
    results.push_back(run_case(c, opt, pool, probe));
    // The mixed step against its parts run alone: the cost of batching them together.
    const size_t n = results.size();
    const bool mixed_trio = n >= 3 && is_mixed_trio(results, n - 3);
    if (mixed_trio) {
      interleaved =
          mixed_over_parts_interleaved({&cases[ci - 2], &cases[ci - 1], &cases[ci]}, opt, pool);
    }
    if (opt.json) {
      nlohmann::json j = to_json(results.back(), m, opt);
      if (mixed_trio) {
        j["mixed_over_parts"] = results[n - 3].ms / (results[n - 2].ms + results[n - 1].ms);
        j["mixed_over_parts_interleaved"] = interleaved;
      }
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    } else {
      print_row(results.back(), m);
    }
  }
  std::vector<const Result*> failed;
  for (const Result& r : results)
    if (!(r.tolerance_ratio <= 1)) failed.push_back(&r);
  const auto check_errors = [&] {
    if (failed.empty()) return;
    std::string names;
    for (const Result* r : failed) {
      const Tolerance tol = error_tolerance(r->unit);
      char line[200];
      std::snprintf(line, sizeof line,
                    "%s%s %s (max |err| %.2e, %.2fx its tolerance %.0e + %.0e|ref|)",
                    names.empty() ? "" : "; ", r->name.c_str(), rpa::to_string(r->dtype),
                    r->max_abs_err, r->tolerance_ratio, tol.atol, tol.rtol);
      names += line;
    }
    throw std::runtime_error("bench attention: kernel error above its tolerance: " + names);
  };
  if (opt.json) {
    check_errors();
    return;
  }
  std::printf(
      "\nMB: KV bytes over every kv_len (cached read + new rows written) + f32 q, k, v, out.\n"
      "GFLOP/s: 4*D per (query head, attended position), causal counted exactly.\n"
      "MBU: against the read ceiling above (the streaming read, or the random page-run read\n"
      "where that measured faster; --json also gives mbu_page_runs, against the random\n"
      "page-run read). unit: the compute unit the case can use on the active path (%s);\n"
      "MFU against that unit's ceiling (the best of the header's probe and probes run right\n"
      "before and after the case), MFUsg against sgemm. roof: the roofline fraction,\n"
      "max(bytes / read ceiling, FLOPs / unit ceiling) over the time (read: the better of the\n"
      "ceiling and the decode's paired passes). MBUp (decode): the same number of\n"
      "calls, each right after one streaming read pass over 256 MiB (which also evicts the KV\n"
      "from the caches, as a model's other layers do), the median of the calls' GB/s over their\n"
      "pass's: steadier where the machine's speed moves between runs (--json: mbu_paired, and\n"
      "cold_ms, those calls' median time; back to back, decode-4096's 17 MB partly stay in\n"
      "L3). -inL2: the same batch with its cached pages aliased to two that stay in L2: its MBU\n"
      "is what the arithmetic alone allows. ref_ms: scalar rpa::reference (* = on the same\n"
      "case with lengths halved until <= %.1f GFLOP); speedup = ref_ms / kernel ms on that\n"
      "case; max_err = max |kernel - reference| there; tol = the worst element's error over\n"
      "its tolerance (atol + rtol |ref|, by the unit's input precision): above 1 fails the run.\n"
      "Peers (ggml flash attention, PyTorch SDPA) in the same run: scripts/bench peers.\n",
      cpu::path_name(cpu::active_path()), kReferenceFlopBudget / 1e9);
  for (size_t i = 0; i + 2 < results.size(); ++i) {
    if (is_mixed_trio(results, i)) {
      std::printf(
          "mixed / (decode part + prefill part) = %.3f from the cases' medians, %.3f as the "
          "median of %d rounds that time one call of each back to back (target <= 1.05)\n",
          results[i].ms / (results[i + 1].ms + results[i + 2].ms), interleaved, opt.reps);
    }
  }
  check_errors();
}

}  // namespace

void add_bench_attention_command(CLI::App& bench) {
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "attention", "Ragged paged attention on Llama-3-8B shapes vs this machine's ceilings");
  cmd->add_flag("--json", opt->json,
                "Print one JSON object per line: the machine first, then one per case");
  cmd->add_flag(
      "--quick", opt->quick,
      "Tiny cases and short ceiling probes: checks the kernels and the report in seconds");
  // For the test of the error check: adds this to one kernel output before the comparison.
  cmd->add_option("--perturb-output", opt->perturb_output)->group("");
  cmd->add_option("--threads", opt->threads, "Worker threads (default: all hardware threads)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--case", opt->which, "Which cases to run")
      ->check(CLI::IsMember({"decode", "prefill", "mixed", "all"}));
  cmd->add_option("--reps", opt->reps, "Timed repetitions per case (the median is printed)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--q-heads", opt->q_heads,
                  "Query heads over the 8 KV heads (default 32: GQA 4; 8: MHA, 16: GQA 2)")
      ->check(CLI::IsMember({8, 16, 24, 32, 40, 48, 56, 64}));
  const auto block_option = [&](const char* name, int32_t& value, const char* what) {
    cmd->add_option(name, value, std::string(what) + " (0: the default; for sweeps)")
        ->check(CLI::Range(0, 1 << 20));
  };
  block_option("--decode-kv-block", opt->tuning.decode_kv_block, "KV positions per decode tile");
  block_option("--decode-heads-per-item", opt->tuning.decode_heads_per_item,
               "KV heads per decode work item");
  block_option("--split-kv-tokens", opt->tuning.split_kv_tokens,
               "Split decodes at multiples of this many positions");
  block_option("--prefill-q-block", opt->tuning.prefill_q_block, "New tokens per prefill tile");
  block_option("--prefill-kv-block", opt->tuning.prefill_kv_block, "KV positions per prefill tile");
  cmd->callback([opt] { bench_attention(*opt); });
}

}  // namespace kdr::cli
