// The reference is the oracle of every other rpa test, so it is itself checked here against
// an independent restatement of the contract that never touches pages: each sequence's K/V
// are kept contiguous, the expected pool is laid out by hand ([page][head][slot][dim]), and
// attention is a direct double-precision softmax.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "base/dtype.h"
#include "rpa/rpa.h"
#include "rpa_test_util.h"

namespace rpa_test {
namespace {

struct Options {
  bool causal;
  int32_t window;
  float soft_cap;
  bool sinks;
  int32_t hq, hkv;
};

class ReferenceTest : public ::testing::TestWithParam<Options> {};

TEST_P(ReferenceTest, MatchesContiguousAttentionAndLaysOutPagesByHand) {
  const Options o = GetParam();
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const int32_t d = 16, ps = 4;

  // Decode, prefill chunk, and a mixed sequence whose cached prefix ends mid-page.
  const std::vector<int32_t> q_lens = {1, 5, 3, 7};
  const std::vector<int32_t> kv_lens = {9, 5, 14, 19};
  const int32_t dist[3] = {1, 2, 4};
  const Batch b = layout_batch(q_lens, kv_lens, dist, ps, rng);
  const int32_t n = b.num_seqs(), t_total = b.num_tokens();

  // Full per-sequence K/V ([pos][head][dim]); the tail [kv_len - q_len, kv_len) is "new".
  std::vector<std::vector<float>> seq_k(n), seq_v(n);
  for (int i = 0; i < n; ++i) {
    seq_k[i] = random_floats(static_cast<size_t>(kv_lens[i]) * o.hkv * d, rng);
    seq_v[i] = random_floats(static_cast<size_t>(kv_lens[i]) * o.hkv * d, rng);
  }
  const std::vector<float> q = random_floats(static_cast<size_t>(t_total) * o.hq * d, rng);
  std::vector<float> k(static_cast<size_t>(t_total) * o.hkv * d), v(k.size());
  std::vector<float> sinks = random_floats(o.hq, rng, -2.0f, 2.0f);

  // Expected pools: every slot NaN except the rows of positions [0, kv_len).
  const size_t pool = static_cast<size_t>(b.num_pages) * o.hkv * ps * d;
  std::vector<float> want_k(pool, std::numeric_limits<float>::quiet_NaN()), want_v = want_k;
  std::vector<float> k_pool = want_k, v_pool = want_k;  // what the reference starts from
  for (int i = 0; i < n; ++i) {
    const int32_t start = kv_lens[i] - q_lens[i];
    for (int32_t pos = 0; pos < kv_lens[i]; ++pos) {
      const int32_t page = b.page_indices[static_cast<size_t>(i) * b.pages_per_seq + pos / ps];
      for (int32_t h = 0; h < o.hkv; ++h) {
        const size_t dst = ((static_cast<size_t>(page) * o.hkv + h) * ps + pos % ps) * d;
        const size_t src = (static_cast<size_t>(pos) * o.hkv + h) * d;
        std::copy_n(&seq_k[i][src], d, &want_k[dst]);
        std::copy_n(&seq_v[i][src], d, &want_v[dst]);
        if (pos < start) {
          std::copy_n(&seq_k[i][src], d, &k_pool[dst]);
          std::copy_n(&seq_v[i][src], d, &v_pool[dst]);
        } else {
          const size_t tok = b.cu_q_lens[i] + (pos - start);
          std::copy_n(&seq_k[i][src], d, &k[(tok * o.hkv + h) * d]);
          std::copy_n(&seq_v[i][src], d, &v[(tok * o.hkv + h) * d]);
        }
      }
    }
  }

  // Independent attention over the contiguous sequences.
  const float sm_scale = 0.7f;
  std::vector<float> want_out(static_cast<size_t>(t_total) * o.hq * d);
  for (int i = 0; i < n; ++i) {
    for (int32_t j = 0; j < q_lens[i]; ++j) {
      const int32_t pos = kv_lens[i] - q_lens[i] + j;
      const size_t tok = b.cu_q_lens[i] + j;
      for (int32_t h = 0; h < o.hq; ++h) {
        const int32_t kvh = h / (o.hq / o.hkv);
        std::vector<double> logits;
        std::vector<int32_t> visible;
        for (int32_t t = 0; t < kv_lens[i]; ++t) {
          if (o.causal && t > pos) continue;
          if (o.window > 0 && t <= pos - o.window) continue;
          double s = 0;
          for (int x = 0; x < d; ++x)
            s += double{q[(tok * o.hq + h) * d + x]} *
                 seq_k[i][(static_cast<size_t>(t) * o.hkv + kvh) * d + x];
          s *= sm_scale;
          if (o.soft_cap > 0) s = o.soft_cap * std::tanh(s / o.soft_cap);
          logits.push_back(s);
          visible.push_back(t);
        }
        double mx = *std::max_element(logits.begin(), logits.end());
        if (o.sinks) mx = std::max(mx, double{sinks[h]});
        double denom = o.sinks ? std::exp(sinks[h] - mx) : 0.0;
        for (double& l : logits) denom += (l = std::exp(l - mx));
        for (int x = 0; x < d; ++x) {
          double acc = 0;
          for (size_t u = 0; u < visible.size(); ++u)
            acc += logits[u] * seq_v[i][(static_cast<size_t>(visible[u]) * o.hkv + kvh) * d + x];
          want_out[(tok * o.hq + h) * d + x] = static_cast<float>(acc / denom);
        }
      }
    }
  }

  rpa::KvCache cache;
  cache.shape = {b.num_pages, o.hkv, ps, d, rpa::KvDType::kF32};
  cache.k = k_pool.data();
  cache.v = v_pool.data();
  rpa::AttentionParams p;
  p.num_q_heads = o.hq;
  p.sm_scale = sm_scale;
  p.causal = o.causal;
  p.sliding_window = o.window;
  p.soft_cap = o.soft_cap;
  p.sinks = o.sinks ? sinks.data() : nullptr;
  std::vector<float> out(want_out.size());
  rpa::reference(b.view(), p, q.data(), k.data(), v.data(), cache, out.data());

  // Both sides accumulate in double and round once to f32: allow a couple of f32 ulps.
  EXPECT_TRUE(outputs_close(out, want_out, o.hq, d, 1e-6, 1e-6));
  EXPECT_EQ(0, std::memcmp(k_pool.data(), want_k.data(), pool * sizeof(float))) << "K pool";
  EXPECT_EQ(0, std::memcmp(v_pool.data(), want_v.data(), pool * sizeof(float))) << "V pool";
}

INSTANTIATE_TEST_SUITE_P(
    Options, ReferenceTest,
    ::testing::Values(Options{true, 0, 0.0f, false, 4, 2}, Options{false, 0, 0.0f, false, 3, 3},
                      Options{true, 3, 0.0f, false, 2, 1}, Options{false, 4, 0.0f, false, 4, 1},
                      Options{true, 0, 0.5f, false, 4, 2}, Options{true, 5, 0.8f, true, 6, 2},
                      Options{false, 0, 0.0f, true, 2, 2}));

// store_row/load_row must encode exactly like base/dtype.h, since the kernels rely on that.
TEST(CacheIo, StoreRowEncodesWithTheBaseConversionsAndLoadRowDecodes) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("KDR_SEED=" + std::to_string(seed));
  Rng rng(seed);
  const int32_t d = 24, hkv = 2, ps = 3, pages = 2;
  const int32_t page = 1, head = 1, slot = 2;
  const size_t row = ((static_cast<size_t>(page) * hkv + head) * ps + slot) * d;
  const std::vector<float> x = random_floats(d, rng, -3.0f, 3.0f);
  for (rpa::KvDType dt : {rpa::KvDType::kF32, rpa::KvDType::kBF16, rpa::KvDType::kF16,
                          rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3}) {
    SCOPED_TRACE(rpa::to_string(dt));
    rpa::CacheShape s{pages, hkv, ps, d, dt};
    std::vector<uint8_t> kp(s.pool_elements() * rpa::element_size(dt)), vp(kp.size());
    std::vector<float> ks(s.scale_elements()), vs(ks.size());
    rpa::KvCache c;
    c.shape = s;
    c.k = kp.data();
    c.v = vp.data();
    c.k_row_scales = ks.data();
    c.v_row_scales = vs.data();
    c.v_scale = 0.03f;
    rpa::store_row(c, true, page, head, slot, x.data());
    std::vector<float> back(d);
    rpa::load_row(c, true, page, head, slot, back.data());
    for (int i = 0; i < d; ++i) {
      float want = 0;
      switch (dt) {
        case rpa::KvDType::kF32:
          want = x[i];
          break;
        case rpa::KvDType::kBF16: {
          uint16_t e;
          std::memcpy(&e, &vp[(row + i) * 2], 2);
          ASSERT_EQ(e, kdr::f32_to_bf16(x[i]));
          want = kdr::bf16_to_f32(e);
          break;
        }
        case rpa::KvDType::kF16: {
          uint16_t e;
          std::memcpy(&e, &vp[(row + i) * 2], 2);
          ASSERT_EQ(e, kdr::f32_to_f16(x[i]));
          want = kdr::f16_to_f32(e);
          break;
        }
        case rpa::KvDType::kInt8: {
          std::vector<int8_t> qv(d);
          const float scale = kdr::quantize_row_int8(x.data(), d, qv.data());
          ASSERT_EQ(vs[row / d], scale);
          ASSERT_EQ(static_cast<int8_t>(vp[row + i]), qv[i]);
          want = qv[i] * scale;
          break;
        }
        case rpa::KvDType::kFp8E4M3:
          ASSERT_EQ(vp[row + i], kdr::f32_to_fp8e4m3(x[i] / 0.03f));
          want = kdr::fp8e4m3_to_f32(vp[row + i]) * 0.03f;
          break;
      }
      ASSERT_EQ(back[i], want) << "dim " << i;
      // The quantization error is bounded by the format's resolution at this magnitude.
      ASSERT_NEAR(back[i], x[i], std::fabs(x[i]) * 0.07 + 0.03) << "dim " << i;
    }
    // Nothing else was touched: K pool untouched and only one V row written.
    EXPECT_TRUE(std::all_of(kp.begin(), kp.end(), [](uint8_t e) { return e == 0; }));
  }
}

}  // namespace
}  // namespace rpa_test
