// Developer smoke test of the CPU kernel: rpa::run against rpa::reference on random ragged
// batches covering the three paths, every KV dtype and the attention options; the cache
// bytes must match the reference's exactly, and results must be batch invariant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../base/seed.h"
#include "base/dtype.h"
#include "base/thread_pool.h"
#include "rpa/internal.h"
#include "rpa/rpa.h"

namespace {

uint64_t test_seed() {
  static const uint64_t seed = kdr_test::test_seed();
  return seed;
}

struct Case {
  int hq = 4, hkv = 1, d = 64, page = 16;
  rpa::KvDType dtype = rpa::KvDType::kF32;
  std::vector<int> q_lens, kv_lens;  // per sequence
  int decode_end = 0, prefill_end = 0;
  bool causal = true;
  int window = 0;
  float soft_cap = 0.0f;
  bool sinks = false;
  rpa::Tuning tuning;
};

// A ragged batch with its own cache and inputs, filled at random.
struct Batch {
  Case c;
  std::vector<int32_t> cu, kv, pages;
  int32_t pps = 0, num_pages = 0, tokens = 0;
  std::vector<float> q, k, v, sinks;
  std::vector<uint8_t> kpool, vpool;
  std::vector<float> kscales, vscales;

  Batch(const Case& cs, std::mt19937_64& rng) : c(cs) {
    const int n = static_cast<int>(c.q_lens.size());
    cu.push_back(0);
    for (int i = 0; i < n; ++i) cu.push_back(cu.back() + c.q_lens[i]);
    tokens = cu.back();
    kv.assign(c.kv_lens.begin(), c.kv_lens.end());
    for (int x : kv) pps = std::max(pps, (x + c.page - 1) / c.page);
    num_pages = n * pps + 3;
    // A random permutation of pages, so sequences are scattered through the pool.
    std::vector<int32_t> perm(num_pages);
    for (int i = 0; i < num_pages; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    pages.assign(perm.begin(), perm.begin() + n * pps);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    auto fill = [&](std::vector<float>& x, size_t count) {
      x.resize(count);
      for (auto& e : x) e = nd(rng);
    };
    fill(q, static_cast<size_t>(tokens) * c.hq * c.d);
    fill(k, static_cast<size_t>(tokens) * c.hkv * c.d);
    fill(v, static_cast<size_t>(tokens) * c.hkv * c.d);
    if (c.sinks) fill(sinks, c.hq);
    const rpa::CacheShape sh = shape();
    kpool.resize(sh.pool_elements() * rpa::element_size(c.dtype));
    vpool.resize(kpool.size());
    kscales.assign(sh.scale_elements(), 0.0f);
    vscales.assign(sh.scale_elements(), 0.0f);
    // Cached history: store random rows through the official row writer.
    rpa::KvCache cache = make_cache();
    std::vector<float> row(c.d);
    for (int i = 0; i < n; ++i)
      for (int pos = 0; pos < kv[i] - c.q_lens[i]; ++pos)
        for (int h = 0; h < c.hkv; ++h)
          for (int is_v = 0; is_v < 2; ++is_v) {
            for (auto& e : row) e = nd(rng);
            rpa::store_row(cache, is_v, pages[i * pps + pos / c.page], h, pos % c.page, row.data());
          }
  }
  rpa::CacheShape shape() const { return {num_pages, c.hkv, c.page, c.d, c.dtype}; }
  rpa::KvCache make_cache() {
    rpa::KvCache cache;
    cache.shape = shape();
    cache.k = kpool.data();
    cache.v = vpool.data();
    cache.k_row_scales = kscales.data();
    cache.v_row_scales = vscales.data();
    cache.k_scale = 0.5f;
    cache.v_scale = 0.25f;
    return cache;
  }
  rpa::RaggedBatch ragged() const {
    rpa::RaggedBatch b;
    b.num_seqs = static_cast<int32_t>(kv.size());
    b.num_tokens = tokens;
    b.cu_q_lens = cu.data();
    b.kv_lens = kv.data();
    b.page_indices = pages.data();
    b.pages_per_seq = pps;
    b.distribution[0] = c.decode_end;
    b.distribution[1] = c.prefill_end;
    b.distribution[2] = b.num_seqs;
    return b;
  }
  rpa::AttentionParams params() const {
    rpa::AttentionParams p;
    p.num_q_heads = c.hq;
    p.sm_scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    p.causal = c.causal;
    p.sliding_window = c.window;
    p.soft_cap = c.soft_cap;
    p.sinks = c.sinks ? sinks.data() : nullptr;
    return p;
  }
};

void check_against_reference(const Case& c, int threads) {
  std::mt19937_64 rng(test_seed() ^
                      std::hash<std::string>{}(std::to_string(c.d) + "," + std::to_string(c.hq)));
  Batch ours(c, rng);
  Batch ref = ours;
  // NaN-filled so that any element the kernel fails to write fails the comparison.
  std::vector<float> out(ours.q.size());
  std::vector<float> expect(ours.q.size());
  std::fill(out.begin(), out.end(), NAN);
  std::fill(expect.begin(), expect.end(), NAN);
  kdr::ThreadPool pool(threads);
  const rpa::Plan plan =
      rpa::make_plan(ours.ragged(), ours.shape(), ours.params(), threads, c.tuning);
  rpa::KvCache cache = ours.make_cache();
  rpa::run(plan, ours.q.data(), ours.k.data(), ours.v.data(), cache, out.data(), &pool);
  rpa::KvCache rcache = ref.make_cache();
  rpa::reference(ref.ragged(), ref.params(), ref.q.data(), ref.k.data(), ref.v.data(), rcache,
                 expect.data());
  ASSERT_EQ(ours.kpool, ref.kpool) << "K pool bytes differ from the reference";
  ASSERT_EQ(ours.vpool, ref.vpool) << "V pool bytes differ from the reference";
  ASSERT_EQ(ours.kscales, ref.kscales);
  ASSERT_EQ(ours.vscales, ref.vscales);
  const float tol = c.dtype == rpa::KvDType::kF32 ? 2e-4f : 1e-3f;
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_NEAR(out[i], expect[i], tol + tol * std::fabs(expect[i]))
        << "element " << i << " (token " << i / (c.hq * c.d) << ", head " << (i / c.d) % c.hq
        << ")";
  }
}

Case mixed_case() {
  Case c;
  c.q_lens = {1, 1, 1, 37, 20, 3, 1, 9};
  c.kv_lens = {1, 50, 300, 37, 90, 3, 77, 200};
  c.decode_end = 3;
  c.prefill_end = 5;
  return c;
}

TEST(KernelSmoke, MixedBatchF32MatchesReference) { check_against_reference(mixed_case(), 2); }

TEST(KernelSmoke, AllDtypesMatchReference) {
  for (auto dt :
       {rpa::KvDType::kBF16, rpa::KvDType::kF16, rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3}) {
    Case c = mixed_case();
    c.dtype = dt;
    SCOPED_TRACE(rpa::to_string(dt));
    check_against_reference(c, 2);
  }
}

TEST(KernelSmoke, OptionsMatchReference) {
  for (int variant = 0; variant < 6; ++variant) {
    Case c = mixed_case();
    c.causal = variant != 1;
    c.window = variant == 2 ? 5 : variant == 3 ? 40 : 0;
    c.soft_cap = variant == 4 ? 2.0f : 0.0f;
    c.sinks = variant == 5 || variant == 2;
    c.hq = 12;
    c.hkv = 2;
    c.d = variant % 2 ? 80 : 96;
    c.page = variant == 3 ? 1 : 7;
    SCOPED_TRACE("variant " + std::to_string(variant));
    check_against_reference(c, 2);
  }
}

TEST(KernelSmoke, SplitKvAndOddBlocksMatchReference) {
  Case c;
  c.hq = 8;
  c.hkv = 8;
  c.d = 128;
  c.q_lens = {1, 1, 5};
  c.kv_lens = {1000, 129, 700};
  c.decode_end = 2;
  c.prefill_end = 2;
  c.tuning.split_kv_tokens = 128;
  c.tuning.prefill_q_block = 3;
  c.tuning.prefill_kv_block = 60;
  check_against_reference(c, 2);
  c.dtype = rpa::KvDType::kBF16;
  c.hkv = 2;
  c.d = 256;
  check_against_reference(c, 1);
}

// A sequence's output is bitwise identical alone, inside a batch, and on 1 or 2 threads.
TEST(KernelSmoke, BatchInvariant) {
  Case c = mixed_case();
  c.dtype = rpa::KvDType::kBF16;
  c.tuning.split_kv_tokens = 64;
  std::mt19937_64 rng(test_seed());
  Batch all(c, rng);
  std::vector<float> out_all(all.q.size());
  {
    kdr::ThreadPool pool(2);
    rpa::KvCache cache = all.make_cache();
    Batch copy = all;
    rpa::KvCache cc = copy.make_cache();
    rpa::run(rpa::make_plan(copy.ragged(), copy.shape(), copy.params(), 2, c.tuning), copy.q.data(),
             copy.k.data(), copy.v.data(), cc, out_all.data(), &pool);
    (void)cache;
  }
  for (int i : {0, 2, 3, 7}) {
    // The same sequence alone, in its own batch, on one thread (same pages and pool).
    Batch one = all;
    one.c.q_lens = {c.q_lens[i]};
    one.c.kv_lens = {c.kv_lens[i]};
    one.c.decode_end = i < c.decode_end ? 1 : 0;
    one.c.prefill_end = i < c.prefill_end ? 1 : 0;
    one.cu = {0, c.q_lens[i]};
    one.kv = {c.kv_lens[i]};
    one.tokens = c.q_lens[i];
    one.pages.assign(all.pages.begin() + i * all.pps, all.pages.begin() + (i + 1) * all.pps);
    const size_t qrow = static_cast<size_t>(c.hq) * c.d, krow = static_cast<size_t>(c.hkv) * c.d;
    one.q.assign(all.q.begin() + all.cu[i] * qrow, all.q.begin() + all.cu[i + 1] * qrow);
    one.k.assign(all.k.begin() + all.cu[i] * krow, all.k.begin() + all.cu[i + 1] * krow);
    one.v.assign(all.v.begin() + all.cu[i] * krow, all.v.begin() + all.cu[i + 1] * krow);
    std::vector<float> out(one.q.size());
    rpa::KvCache cache = one.make_cache();
    rpa::run(rpa::make_plan(one.ragged(), one.shape(), one.params(), 1, c.tuning), one.q.data(),
             one.k.data(), one.v.data(), cache, out.data(), nullptr);
    ASSERT_EQ(
        0, std::memcmp(out.data(), out_all.data() + all.cu[i] * qrow, out.size() * sizeof(float)))
        << "sequence " << i << " differs alone vs in the batch";
  }
}

// New tokens are attended with exactly the value the cache holds after the write.
TEST(KernelSmoke, NewTokensRequantizeExactlyAsTheCache) {
  std::mt19937_64 rng(test_seed());
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (auto dt : {rpa::KvDType::kF32, rpa::KvDType::kBF16, rpa::KvDType::kF16, rpa::KvDType::kInt8,
                  rpa::KvDType::kFp8E4M3}) {
    const int d = 136;
    std::vector<uint8_t> pool(d * 4);
    float row_scale = 0.0f;
    rpa::KvCache one;
    one.shape = {1, 1, 1, d, dt};
    one.k = one.v = pool.data();
    one.k_row_scales = one.v_row_scales = &row_scale;
    one.k_scale = 0.37f;
    one.v_scale = 2.5f;
    std::vector<float> x(d), stored(d), ours(d);
    for (int trial = 0; trial < 50; ++trial) {
      for (auto& e : x) e = trial == 0 ? 0.0f : nd(rng) * (trial % 7 == 0 ? 1e-30f : 1.0f);
      if (trial == 1) x[3] = 1e30f;
      if (trial == 2) x[5] = 70000.0f;
      for (bool is_v : {false, true}) {
        rpa::store_row(one, is_v, 0, 0, 0, x.data());
        rpa::load_row(one, is_v, 0, 0, 0, stored.data());
        rpa::requantize_row_simd(one, is_v, x.data(), ours.data());
        ASSERT_EQ(0, std::memcmp(stored.data(), ours.data(), d * sizeof(float)))
            << rpa::to_string(dt) << " trial " << trial;
      }
    }
  }
}

// fp8 codes through the kernels' SIMD conversion (via the f16 bits of the value times 2^-8):
// every one of the 256 codes, in every position of a vector, at several tensor scales, is
// bit-for-bit kdr::fp8e4m3_to_f32(code) * scale, the NaN codes included.
TEST(KernelSmoke, Fp8ConversionIsExactForEveryCode) {
  std::vector<uint8_t> codes(256 + 8);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(i * 37 + 11);
  for (size_t i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
  std::vector<float> got(codes.size());
  for (float scale : {1.0f, 0.37f, 2.5f, 3e-5f, 1e4f, 1e-38f}) {
    for (size_t start : {size_t{0}, size_t{8}}) {
      const size_t n = codes.size() - start;
      rpa::fp8_row_to_f32(codes.data() + start, n, scale, got.data());
      for (size_t i = 0; i < n; ++i) {
        const uint8_t c = codes[start + i];
        const float want = kdr::fp8e4m3_to_f32(c) * scale;
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(got[i])) << "code " << int(c) << " scale " << scale;
        } else {
          uint32_t gb, wb;
          std::memcpy(&gb, &got[i], 4);
          std::memcpy(&wb, &want, 4);
          EXPECT_EQ(gb, wb) << "code " << int(c) << " scale " << scale << ": got " << got[i]
                            << ", want " << want;
        }
      }
    }
  }
}

// The softmax's exp of non-positive logits: within 3 ulp of exp in double wherever the
// result is a normal float, exactly 1 at 0, exactly 0 at -inf and below the float range.
TEST(KernelSmoke, ExpNonPositiveMatchesExp) {
  std::mt19937_64 rng(test_seed() ^ 0xe4);
  std::uniform_real_distribution<float> wide(-100.0f, 0.0f), near0(-1e-3f, 0.0f);
  std::vector<float> x = {0.0f,   -0.0f,    -1e-30f, -1e-7f,   -0.3465f, -0.3467f,
                          -1.0f,  -0.6931f, -87.0f,  -87.33f,  -87.5f,   -88.0f,
                          -88.5f, -100.0f,  -1e30f,  -FLT_MAX, -INFINITY};
  for (int i = 0; i < 200000; ++i) x.push_back(i % 4 == 0 ? near0(rng) : wide(rng));
  std::vector<float> got(x.size());
  rpa::exp_non_positive(x.data(), x.size(), got.data());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    if (x[i] == 0.0f) {
      EXPECT_EQ(got[i], 1.0f) << "x = " << x[i];
    } else if (x[i] <= -88.0f) {
      EXPECT_EQ(got[i], 0.0f) << "x = " << x[i];
    } else if (want >= FLT_MIN) {
      const double rel = std::fabs(got[i] - want) / want;
      worst = std::max(worst, rel);
      EXPECT_LE(rel, 3 * FLT_EPSILON) << "x = " << x[i] << " got " << got[i] << " want " << want;
    } else {  // subnormal range: absolute error below the smallest normal
      EXPECT_LE(std::fabs(got[i] - want), FLT_MIN) << "x = " << x[i];
    }
  }
  // A NaN logit (from a NaN in q or k) must reach the output, not turn into a weight of 0.
  const float nan_in = std::numeric_limits<float>::quiet_NaN();
  float nan_out = 0.0f;
  rpa::exp_non_positive(&nan_in, 1, &nan_out);
  EXPECT_TRUE(std::isnan(nan_out));
  std::vector<float> nans(16, nan_in), nan_outs(16);
  rpa::exp_non_positive(nans.data(), nans.size(), nan_outs.data());
  for (float e : nan_outs) EXPECT_TRUE(std::isnan(e));
  std::printf("exp_non_positive: worst relative error %.3g (%.2f ulp of 1)\n", worst,
              worst / FLT_EPSILON);
}

TEST(KernelSmoke, RunRejectsMismatchedCache) {
  Case c = mixed_case();
  std::mt19937_64 rng(test_seed());
  Batch b(c, rng);
  const rpa::Plan plan = rpa::make_plan(b.ragged(), b.shape(), b.params(), 1);
  rpa::KvCache cache = b.make_cache();
  cache.shape.page_size = 8;
  std::vector<float> out(b.q.size());
  EXPECT_THROW(rpa::run(plan, b.q.data(), b.k.data(), b.v.data(), cache, out.data(), nullptr),
               rpa::Error);
  rpa::Plan empty;
  EXPECT_THROW(rpa::run(empty, b.q.data(), b.k.data(), b.v.data(), cache, out.data(), nullptr),
               rpa::Error);
}

}  // namespace
