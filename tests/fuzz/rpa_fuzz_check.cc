#include "rpa_fuzz_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <vector>

#include "base/thread_pool.h"
#include "rpa/rpa.h"

namespace rpa_fuzz {
namespace {

// Reads the fuzz input front to back; past the end every byte is 0, so short inputs still
// decode to a (small) batch.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  int32_t below(int32_t n) { return n <= 0 ? 0 : u8() % n; }  // in [0, n)
  bool bit() { return u8() & 1; }
  uint64_t u64() {
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x = (x << 8) | u8();
    return x;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Tensor values come from a generator seeded by the input, not from the input itself: the
// fuzzer explores shapes and metadata, and values only need to be varied and in [-1, 1].
class SplitMix {
 public:
  explicit SplitMix(uint64_t s) : s_(s) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float unit() {  // in [-1, 1)
    return static_cast<float>(next() >> 40) / static_cast<float>(1 << 23) - 1.0f;
  }

 private:
  uint64_t s_;
};

// The ways a decoded batch is broken. Each is applied only where it surely breaks the
// contract (e.g. a shared page is one that receives new tokens), so validate() must reject
// exactly the batches marked must_reject.
enum Corruption : int {
  kZeroQLen,
  kKvShorterThanQ,
  kPagePastPool,
  kNegativePage,
  kCuDecreases,
  kCuNotFromZero,
  kTokenCountOff,
  kDecodeRangeTooLong,
  kDistributionEnd,
  kHeadsNotMultiple,
  kBadHeadDim,
  kBadPageSize,
  kFewerPagesPerSeq,
  kSharedPage,
  kBadOption,
  kNumCorruptions
};

struct Decoded {
  rpa::CacheShape shape;
  rpa::AttentionParams params;
  std::vector<float> sinks;
  std::vector<int32_t> cu, kv, pages;
  rpa::RaggedBatch batch;
  rpa::Tuning tuning;  // block sizes and decode head grouping, small so tails are exercised
  bool must_reject = false;
  int corruption = -1;
};

Decoded decode(ByteReader& r) {
  Decoded d;
  static constexpr int32_t kPageSizes[] = {1, 2, 3, 4, 5, 8, 16};
  d.shape.dtype = static_cast<rpa::KvDType>(r.below(5));
  d.shape.page_size = kPageSizes[r.below(7)];
  d.shape.num_kv_heads = 1 + r.below(3);
  d.params.num_q_heads = d.shape.num_kv_heads * (1 + r.below(3));
  d.shape.head_dim = 8 * (1 + r.below(8));
  const int32_t n = r.below(7);
  const int32_t decode_end = r.below(n + 1);
  const int32_t prefill_end = decode_end + r.below(n - decode_end + 1);
  std::vector<int32_t> q_lens(n);
  d.kv.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    q_lens[i] = i < decode_end ? 1 : 1 + r.below(9);
    d.kv[i] = q_lens[i] + r.below(41);
  }
  d.params.causal = !r.bit();
  d.params.sliding_window = r.bit() ? 1 + r.below(9) : 0;
  static constexpr float kCaps[] = {0.0f, 0.0f, 5.0f, 30.0f};
  d.params.soft_cap = kCaps[r.below(4)];
  d.params.sm_scale = 0.02f + r.u8() / 512.0f;
  const bool sinks = r.bit();
  const int32_t extra_pages = r.below(4);

  // Page table: each sequence's pages drawn from a shuffled pool.
  int32_t pages_per_seq = 1, total = 0;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t need = (d.kv[i] + d.shape.page_size - 1) / d.shape.page_size;
    pages_per_seq = std::max(pages_per_seq, need);
    total += need;
  }
  d.shape.num_pages = total + extra_pages + 1;
  std::vector<int32_t> perm(d.shape.num_pages);
  for (int32_t i = 0; i < d.shape.num_pages; ++i) perm[i] = i;
  for (int32_t i = d.shape.num_pages - 1; i > 0; --i) std::swap(perm[i], perm[r.below(i + 1)]);
  d.pages.assign(static_cast<size_t>(std::max(n, 1)) * pages_per_seq, -7);
  for (int32_t i = 0, next = 0; i < n; ++i)
    for (int32_t j = 0; j * d.shape.page_size < d.kv[i]; ++j)
      d.pages[static_cast<size_t>(i) * pages_per_seq + j] = perm[next++];

  // Break it, maybe (about one input in three).
  const uint8_t c = r.u8();
  int32_t num_tokens = 0;
  const int32_t k = r.below(std::max(n, 1));  // the sequence a corruption targets
  auto corrupt_q_lens = [&] {
    if (c >= 85 || n == 0) return;
    switch (c % kNumCorruptions) {
      case kZeroQLen:
        q_lens[k] = 0;
        d.kv[k] = std::max(d.kv[k] - 1, 0);  // keep the page count
        d.must_reject = true;
        break;
      case kKvShorterThanQ:
        if (q_lens[k] > 1) {
          d.kv[k] = q_lens[k] - 1;
          d.must_reject = true;
        }
        break;
      default:
        break;
    }
  };
  corrupt_q_lens();
  d.cu.assign(1, 0);
  for (int32_t q : q_lens) d.cu.push_back(d.cu.back() + q);
  num_tokens = d.cu.back();
  if (c < 85) {
    d.corruption = c % kNumCorruptions;
    const size_t row = static_cast<size_t>(k) * pages_per_seq;
    const int32_t used = n ? (d.kv[k] + d.shape.page_size - 1) / d.shape.page_size : 0;
    switch (d.corruption) {
      case kPagePastPool:
        if (used > 0) {
          d.pages[row + r.below(used)] = d.shape.num_pages + r.below(3);
          d.must_reject = true;
        }
        break;
      case kNegativePage:
        if (used > 0) {
          d.pages[row + r.below(used)] = -1 - r.below(1000);
          d.must_reject = true;
        }
        break;
      case kCuDecreases:
        if (n > 0 && d.cu[k + 1] > 0) {
          d.cu[k + 1] = d.cu[k] - 1 - r.below(2);
          d.must_reject = true;
        }
        break;
      case kCuNotFromZero:
        d.cu[0] = 1 + r.below(2);
        d.must_reject = true;
        break;
      case kTokenCountOff:
        num_tokens += r.bit() ? 1 : -1;
        d.must_reject = true;
        break;
      case kDecodeRangeTooLong:
        if (prefill_end > decode_end && q_lens[decode_end] > 1) {
          d.batch.distribution[0] = decode_end + 1;  // fixed below
          d.must_reject = true;
        }
        break;
      case kDistributionEnd:
        d.must_reject = true;
        break;
      case kHeadsNotMultiple:
        if (d.shape.num_kv_heads > 1) {
          d.params.num_q_heads += 1;
          d.must_reject = true;
        }
        break;
      case kBadHeadDim:
        d.shape.head_dim = r.bit() ? 4 + 8 * r.below(4) : 264;
        d.must_reject = true;
        break;
      case kBadPageSize:
        d.shape.page_size = r.bit() ? 0 : 257;
        d.must_reject = true;
        break;
      case kFewerPagesPerSeq:
        // A shorter table row: the sequence that needed the full row no longer fits.
        if (pages_per_seq > 1) {
          pages_per_seq -= 1;
          d.must_reject = true;
        }
        break;
      case kSharedPage:
        if (n > 1) {
          const int32_t m = (k + 1) % n;
          const int32_t used_m = (d.kv[m] + d.shape.page_size - 1) / d.shape.page_size;
          if (used > 0 && used_m > 0)
            d.pages[row + used - 1] = d.pages[static_cast<size_t>(m) * pages_per_seq + used_m - 1];
          // Both last pages receive new tokens, so this is always a conflict.
          d.must_reject = used > 0 && used_m > 0;
        }
        break;
      case kBadOption:
        switch (r.below(3)) {
          case 0:
            d.params.sliding_window = -1 - r.below(5);
            break;
          case 1:
            d.params.soft_cap = -1.0f;
            break;
          default:
            d.params.sm_scale = std::numeric_limits<float>::quiet_NaN();
            break;
        }
        d.must_reject = true;
        break;
      default:
        break;
    }
  }
  if (sinks) {
    d.sinks.resize(std::max(d.params.num_q_heads, 1));
    for (float& s : d.sinks) s = (r.u8() - 128) / 32.0f;
    d.params.sinks = d.sinks.data();
  }
  static constexpr int32_t kBlocks[] = {0, 0, 1, 3, 7, 32};
  static constexpr int32_t kSplits[] = {0, 0, 4, 9, 16};
  d.tuning.decode_heads_per_item = r.below(4);  // 0: all KV heads
  d.tuning.decode_kv_block = kBlocks[r.below(6)];
  d.tuning.split_kv_tokens = kSplits[r.below(5)];
  d.tuning.prefill_kv_block = kBlocks[r.below(6)];
  d.batch.num_seqs = n;
  d.batch.num_tokens = num_tokens;
  d.batch.cu_q_lens = d.cu.data();
  d.batch.kv_lens = d.kv.data();
  d.batch.page_indices = d.pages.data();
  d.batch.pages_per_seq = pages_per_seq;
  d.batch.distribution[0] = std::max(d.batch.distribution[0], decode_end);
  d.batch.distribution[1] = std::max(prefill_end, d.batch.distribution[0]);
  d.batch.distribution[2] = d.corruption == kDistributionEnd && c < 85 ? n + 1 : n;
  return d;
}

struct Pools {
  std::vector<uint8_t> k, v;
  std::vector<float> ks, vs;
  rpa::KvCache view(const rpa::CacheShape& shape, float k_scale, float v_scale) {
    rpa::KvCache c;
    c.shape = shape;
    c.k = k.data();
    c.v = v.data();
    c.k_row_scales = ks.data();
    c.v_row_scales = vs.data();
    c.k_scale = k_scale;
    c.v_scale = v_scale;
    return c;
  }
  // Bitwise, so NaN row scales compare equal to themselves.
  static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() &&
           (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
  bool operator==(const Pools& o) const {
    return k == o.k && v == o.v && same_bits(ks, o.ks) && same_bits(vs, o.vs);
  }
};

// Pools sized for the shape as given (no larger), so an accepted broken shape is caught by
// the sanitizers rather than hidden by slack.
Pools allocate(const rpa::CacheShape& s, SplitMix& gen) {
  Pools p;
  const bool sane = s.num_pages > 0 && s.num_kv_heads > 0 && s.page_size > 0 && s.head_dim > 0;
  const size_t bytes = sane ? s.pool_elements() * rpa::element_size(s.dtype) : 0;
  p.k.resize(bytes);
  p.v.resize(bytes);
  // Garbage bytes stand for stale rows of other sequences; never read past kv_len.
  for (auto& b : p.k) b = static_cast<uint8_t>(gen.next());
  for (auto& b : p.v) b = static_cast<uint8_t>(gen.next());
  p.ks.assign(sane ? s.scale_elements() : 0, std::numeric_limits<float>::quiet_NaN());
  p.vs = p.ks;
  return p;
}

std::string describe(const Decoded& d) {
  std::string s = "batch: num_seqs " + std::to_string(d.batch.num_seqs) + " num_tokens " +
                  std::to_string(d.batch.num_tokens) + " dist (" +
                  std::to_string(d.batch.distribution[0]) + "," +
                  std::to_string(d.batch.distribution[1]) + "," +
                  std::to_string(d.batch.distribution[2]) + ") cu [";
  for (int32_t x : d.cu) s += std::to_string(x) + " ";
  s += "] kv [";
  for (int32_t x : d.kv) s += std::to_string(x) + " ";
  s += "] dtype " + std::string(rpa::to_string(d.shape.dtype)) + " page_size " +
       std::to_string(d.shape.page_size) + " hq " + std::to_string(d.params.num_q_heads) + " hkv " +
       std::to_string(d.shape.num_kv_heads) + " d " + std::to_string(d.shape.head_dim) +
       " corruption " + std::to_string(d.corruption) + " tuning (heads per item " +
       std::to_string(d.tuning.decode_heads_per_item) + ", decode block " +
       std::to_string(d.tuning.decode_kv_block) + ", split " +
       std::to_string(d.tuning.split_kv_tokens) + ", prefill kv block " +
       std::to_string(d.tuning.prefill_kv_block) + ")";
  return s;
}

kdr::ThreadPool& pool() {
  static kdr::ThreadPool p(2);
  return p;
}

}  // namespace

bool check_bytes(const uint8_t* data, size_t size, Outcome* outcome, std::string* failure) {
  ByteReader r(data, size);
  Decoded d = decode(r);
  SplitMix gen(r.u64());
  const float k_scale = 0.01f + (gen.unit() + 1.0f) * 0.02f;
  const float v_scale = 0.01f + (gen.unit() + 1.0f) * 0.02f;
  const int32_t hq = std::max(d.params.num_q_heads, 0);
  const int32_t hkv = std::max(d.shape.num_kv_heads, 0);
  const int32_t dim = std::max(d.shape.head_dim, 0);
  const size_t tokens = static_cast<size_t>(std::max(d.batch.num_tokens, 0)) + 4;
  std::vector<float> q(tokens * hq * dim), k(tokens * hkv * dim), v(k.size());
  for (float& x : q) x = gen.unit();
  for (float& x : k) x = gen.unit();
  for (float& x : v) x = gen.unit();
  Pools pools = allocate(d.shape, gen);

  bool valid = true;
  try {
    rpa::validate(d.batch, d.shape, d.params);
  } catch (const rpa::Error& e) {
    valid = false;
    // Every corruption that is applied breaks the contract, so an intact batch must pass.
    if (!d.must_reject) {
      *failure = std::string("validate rejected an intact batch: ") + e.what() + "\n" + describe(d);
      return false;
    }
  } catch (const std::exception& e) {
    *failure = std::string("validate threw a non-rpa::Error: ") + e.what() + "\n" + describe(d);
    return false;
  }

  if (!valid) {
    // Every entry point must refuse, and refuse before writing anything.
    const Pools before = pools;
    std::vector<float> out(q.size());
    const char* who = nullptr;
    try {
      who = "make_plan";
      rpa::make_plan(d.batch, d.shape, d.params, 2);
      *failure = "make_plan accepted a batch validate rejects\n" + describe(d);
      return false;
    } catch (const rpa::Error&) {
    } catch (const std::exception& e) {
      *failure = std::string(who) + " threw a non-rpa::Error: " + e.what() + "\n" + describe(d);
      return false;
    }
    try {
      rpa::KvCache c = pools.view(d.shape, k_scale, v_scale);
      rpa::reference(d.batch, d.params, q.data(), k.data(), v.data(), c, out.data());
      *failure = "reference accepted a batch validate rejects\n" + describe(d);
      return false;
    } catch (const rpa::Error&) {
    }
    if (!(pools == before)) {
      *failure = "a rejected batch changed the cache\n" + describe(d);
      return false;
    }
    *outcome = Outcome::kRejected;
    return true;
  }
  if (d.must_reject) {
    *failure = "validate accepted a broken batch\n" + describe(d);
    return false;
  }

  // A valid batch: fill every cached prefix, then the kernel must agree with the reference.
  rpa::KvCache cache = pools.view(d.shape, k_scale, v_scale);
  std::vector<float> row(dim);
  for (int32_t i = 0; i < d.batch.num_seqs; ++i) {
    const int32_t cached = d.kv[i] - (d.cu[i + 1] - d.cu[i]);
    for (int32_t pos = 0; pos < cached; ++pos)
      for (int32_t h = 0; h < hkv; ++h)
        for (bool is_v : {false, true}) {
          for (float& x : row) x = gen.unit();
          rpa::store_row(
              cache, is_v,
              d.pages[static_cast<size_t>(i) * d.batch.pages_per_seq + pos / d.shape.page_size], h,
              pos % d.shape.page_size, row.data());
        }
  }
  Pools want_pools = pools;
  std::vector<float> want(q.size()), got(q.size());
  try {
    rpa::KvCache want_cache = want_pools.view(d.shape, k_scale, v_scale);
    rpa::reference(d.batch, d.params, q.data(), k.data(), v.data(), want_cache, want.data());
    const rpa::Plan plan =
        rpa::make_plan(d.batch, d.shape, d.params, pool().num_threads(), d.tuning);
    rpa::run(plan, q.data(), k.data(), v.data(), cache, got.data(), &pool());
  } catch (const std::exception& e) {
    *failure = std::string("a valid batch threw: ") + e.what() + "\n" + describe(d);
    return false;
  }
  // Same tolerance as tests/rpa/kernel_test.cc: f32 accumulation against double.
  const size_t n = static_cast<size_t>(d.batch.num_tokens) * hq * dim;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= 1e-4 + 1e-4 * std::fabs(want[i]))) {
      *failure = "output " + std::to_string(i) + ": run " + std::to_string(got[i]) + " reference " +
                 std::to_string(want[i]) + "\n" + describe(d);
      return false;
    }
  }
  if (!(pools == want_pools)) {
    *failure = "run wrote different cache bytes than the reference\n" + describe(d);
    return false;
  }
  *outcome = Outcome::kMatched;
  return true;
}

}  // namespace rpa_fuzz
