// `kdr bench attention`: times rpa::run on Llama-3-8B attention shapes (Hq 32, Hkv 8, D 128,
// page 16) and prints, per case, utilisation against this machine's ceilings measured in the
// same run, the speedup over the scalar reference and the ratio to a peer where one exists.
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
  std::string peer;            // a measured peer on this machine kind (docs/rpa.md), or empty
  double peer_ms = 0;
  // Every cached page but each sequence's last (where its new rows go) aliased to two pages
  // that stay in L2: the same arithmetic without the DRAM traffic, so the "MBU" of such a
  // case is the most the kernel's arithmetic allows on this machine.
  bool kv_in_cache = false;
};

struct Options {
  bool json = false;
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
    cases.push_back({"decode-32seq", "decode", dt, spread, "", 0});
  }
  cases.push_back({"decode-32seq-inL2", "decode", rpa::KvDType::kBF16, spread, "", 0, true});
  cases.push_back({"decode-4096", "decode", rpa::KvDType::kF16, {{1, 4096}}, "ggml", 3.8});
  cases.push_back({"decode-16384", "decode", rpa::KvDType::kF16, {{1, 16384}}, "ggml", 17.1});
  cases.push_back({"prefill-2048", "prefill", rpa::KvDType::kBF16, {{2048, 2048}}, "ggml", 1110});

  // One continuous-batching step: 24 decodes plus two 512-token prefill chunks on top of
  // 1024 and 4096 cached tokens; and the same two parts run alone.
  const auto decodes = decode_spread(24, 512, 8192);
  const std::vector<Sequence> chunks = {{512, 1024 + 512}, {512, 4096 + 512}};
  std::vector<Sequence> mixed = decodes;
  mixed.insert(mixed.end(), chunks.begin(), chunks.end());
  cases.push_back({"mixed", "mixed", rpa::KvDType::kBF16, mixed, "", 0});
  cases.push_back({"mixed-decode-part", "mixed", rpa::KvDType::kBF16, decodes, "", 0});
  cases.push_back({"mixed-prefill-part", "mixed", rpa::KvDType::kBF16, chunks, "", 0});
  return cases;
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
  int32_t num_seqs = 0, num_tokens = 0;
  double ms = 0, plan_ms = 0, bytes = 0, flops = 0;
  double ref_ms = 0, ref_fast_ms = 0, ref_flops = 0, max_abs_err = 0;
  bool ref_reduced = false;
  std::string peer;
  double peer_ms = 0;
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
  if (opt.q_heads == kQHeads) {  // the peers were timed on Llama-3-8B's 32 query heads
    r.peer = c.peer;
    r.peer_ms = c.peer_ms;
  }
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
    r.ms = time_runs(w, plan, pool, opt.reps);
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
  const std::vector<float> fast = w.out();
  const double start = now_ms();
  w.reference(params);
  r.ref_ms = now_ms() - start;
  for (size_t i = 0; i < fast.size(); ++i)
    r.max_abs_err = std::max(r.max_abs_err, static_cast<double>(std::fabs(fast[i] - w.out()[i])));
  return r;
}

void print_header(const MachineCeilings& m, const Options& opt) {
  std::printf(
      "kdr bench attention: Llama-3-8B attention (Hq %d, Hkv %d, D %d, page %d), %d threads, "
      "median of %d\n",
      opt.q_heads, kKvHeads, kHeadDim, kPageSize, opt.threads, opt.reps);
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
  std::printf("\n");
  std::printf("%-19s %-7s %4s %5s %9s %7s %8s %7s %8s %5s %5s %5s %10s %7s %8s %s\n", "case", "kv",
              "seqs", "toks", "ms", "plan_ms", "MB", "GB/s", "GFLOP/s", "MBU", "MBUp", "MFU",
              "ref_ms", "speedup", "max_err", "peer");
}

void print_row(const Result& r, const MachineCeilings& m) {
  const double gbps = r.bytes / (r.ms * 1e6), gflops = r.flops / (r.ms * 1e6);
  char peer[64] = "";
  if (!r.peer.empty())
    std::snprintf(peer, sizeof peer, "%s %.2f ms: %.2fx", r.peer.c_str(), r.peer_ms,
                  r.peer_ms / r.ms);
  char mbup[16] = "-";
  if (r.paired_mbu > 0) std::snprintf(mbup, sizeof mbup, "%.0f%%", 100 * r.paired_mbu);
  std::printf(
      "%-19s %-7s %4d %5d %9.3f %7.3f %8.1f %7.2f %8.2f %4.0f%% %5s %4.0f%% %9.1f%s %6.1fx "
      "%8.1e %s\n",
      r.name.c_str(), rpa::to_string(r.dtype), r.num_seqs, r.num_tokens, r.ms, r.plan_ms,
      r.bytes / 1e6, gbps, gflops, 100 * gbps / m.peak_gbps, mbup, 100 * gflops / m.peak_gflops,
      r.ref_ms, r.ref_reduced ? "*" : " ", r.ref_ms / r.ref_fast_ms, r.max_abs_err, peer);
  std::fflush(stdout);
}

nlohmann::json to_json(const Result& r, const MachineCeilings& m, const Options& opt) {
  const double gbps = r.bytes / (r.ms * 1e6), gflops = r.flops / (r.ms * 1e6);
  nlohmann::json j = {{"case", r.name},
                      {"kv_dtype", rpa::to_string(r.dtype)},
                      {"q_heads", r.q_heads},
                      {"num_seqs", r.num_seqs},
                      {"num_tokens", r.num_tokens},
                      {"threads", opt.threads},
                      {"ms", r.ms},
                      {"plan_ms", r.plan_ms},
                      {"bytes", r.bytes},
                      {"flops", r.flops},
                      {"gbps", gbps},
                      {"gflops", gflops},
                      {"mbu", gbps / m.peak_gbps},
                      {"mfu", gflops / m.peak_gflops},
                      {"peak_gbps", m.peak_gbps},
                      {"streaming_gbps", m.streaming_gbps},
                      {"peak_gflops", m.peak_gflops},
                      {"page_run_bytes", m.page_run_bytes},
                      {"page_run_gbps", m.page_run_gbps},
                      {"mbu_page_runs", gbps / m.page_run_gbps},

                      {"ref_ms", r.ref_ms},
                      {"ref_reduced", r.ref_reduced},
                      {"ref_flops", r.ref_flops},
                      {"speedup_vs_ref", r.ref_ms / r.ref_fast_ms},
                      {"max_abs_err", r.max_abs_err}};
  if (r.paired_mbu > 0) {
    j["cold_ms"] = r.cold_ms;
    j["mbu_paired"] = r.paired_mbu;
    j["paired_gbps"] = r.paired_gbps;
  }
  if (!r.peer.empty()) {
    j["peer"] = r.peer;
    j["peer_ms"] = r.peer_ms;
    j["peer_ratio"] = r.peer_ms / r.ms;  // > 1: we are faster
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
  const MachineCeilings m = measure_ceilings(pool, size_t{kKvHeads} * kPageSize * kHeadDim * 2);
  ReadProbe probe(pool);
  if (!opt.json) print_header(m, opt);

  std::vector<Result> results;
  const std::vector<BenchCase> cases = all_cases();
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
  if (opt.json) return;
  std::printf(
      "\nMB: KV bytes over every kv_len (cached read + new rows written) + f32 q, k, v, out.\n"
      "GFLOP/s: 4*D per (query head, attended position), causal counted exactly.\n"
      "MBU/MFU: against the read and sgemm ceilings above (the read ceiling is the streaming\n"
      "read, or the random page-run read where that measured faster; --json also gives\n"
      "mbu_page_runs, against the random page-run read). MBUp (decode): the same number of\n"
      "calls, each right after one streaming read pass over 256 MiB (which also evicts the KV\n"
      "from the caches, as a model's other layers do), the median of the calls' GB/s over their\n"
      "pass's: steadier where the machine's speed moves between runs (--json: mbu_paired, and\n"
      "cold_ms, those calls' median time; back to back, decode-4096's 17 MB partly stay in\n"
      "L3). -inL2: the same batch with its cached pages aliased to two that stay in L2: its MBU\n"
      "is what the arithmetic alone allows. ref_ms: scalar rpa::reference (* = on the same\n"
      "case with lengths halved until <= %.1f GFLOP); speedup = ref_ms / kernel ms on that\n"
      "case; max_err = max |kernel - reference| there. peer: ggml CPU flash attention on this\n"
      "machine kind (docs/rpa.md, f16 KV); ratio > 1 means kdr is faster.\n",
      kReferenceFlopBudget / 1e9);
  for (size_t i = 0; i + 2 < results.size(); ++i) {
    if (is_mixed_trio(results, i)) {
      std::printf(
          "mixed / (decode part + prefill part) = %.3f from the cases' medians, %.3f as the "
          "median of %d rounds that time one call of each back to back (target <= 1.05)\n",
          results[i].ms / (results[i + 1].ms + results[i + 2].ms), interleaved, opt.reps);
    }
  }
}

}  // namespace

void add_bench_attention_command(CLI::App& bench) {
  auto opt = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "attention", "Ragged paged attention on Llama-3-8B shapes vs this machine's ceilings");
  cmd->add_flag("--json", opt->json, "Print one JSON object per line per case");
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
