// Every contract violation is rejected by validate(), make_plan() and reference() with an
// rpa::Error whose message names the sequence and the value, and nothing is written to the
// cache. run() rejects a cache or pointers that do not fit its plan, again writing nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "rpa/rpa.h"
#include "rpa_test_util.h"

namespace rpa_test {
namespace {

constexpr int32_t kHq = 4, kHkv = 2, kD = 16, kPage = 4;

// A valid batch (decode, prefill chunk, mixed) that each test breaks in one place.
class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const uint64_t seed = test_seed();
    rng_.seed(seed);
    const int32_t dist[3] = {1, 2, 3};
    batch_ = layout_batch({1, 4, 3}, {10, 20, 7}, dist, kPage, rng_);
    cache_ = make_cache(rpa::KvDType::kF32, kHkv, kD, batch_, kPage, rng_);
    x_ = random_tokens(batch_.num_tokens(), kHq, kHkv, kD, rng_);
    params_.num_q_heads = kHq;
    params_.sm_scale = 0.25f;
  }

  // Expects validate, make_plan and reference all to throw rpa::Error containing every
  // needle, and the cache to be left as it was.
  void expect_rejected(const rpa::RaggedBatch& b, const rpa::CacheShape& shape,
                       const rpa::AttentionParams& p, const std::vector<std::string>& needles) {
    auto check = [&](const char* who, const std::function<void()>& call) {
      SCOPED_TRACE(who);
      try {
        call();
        ADD_FAILURE() << who << " accepted the batch";
      } catch (const rpa::Error& e) {
        for (const std::string& n : needles)
          EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
              << "message \"" << e.what() << "\" lacks \"" << n << "\"";
      }
    };
    check("validate", [&] { rpa::validate(b, shape, p); });
    check("make_plan", [&] { rpa::make_plan(b, shape, p, 2); });
    const Cache before = cache_;
    std::vector<float> out(x_.q.size() + 4096, 0.0f);  // room for a lying num_tokens
    check("reference", [&] {
      rpa::KvCache view = cache_.view();
      view.shape = shape;
      rpa::reference(b, p, x_.q.data(), x_.k.data(), x_.v.data(), view, out.data());
    });
    EXPECT_TRUE(caches_equal(cache_, before));
  }
  void expect_rejected(const rpa::RaggedBatch& b, const std::vector<std::string>& needles) {
    expect_rejected(b, cache_.shape, params_, needles);
  }

  Rng rng_;
  Batch batch_;
  Cache cache_;
  NewTokens x_;
  rpa::AttentionParams params_;
};

TEST_F(ValidationTest, TheUnbrokenBatchIsAccepted) {
  EXPECT_NO_THROW(rpa::validate(batch_.view(), cache_.shape, params_));
}

TEST_F(ValidationTest, ZeroQueryLengthNamesTheSequence) {
  Batch b = batch_;
  b.cu_q_lens = {0, 1, 5, 5};  // sequence 2 gets no new tokens
  expect_rejected(b.view(), {"sequence 2", "q_len must be > 0, got 0"});
}

TEST_F(ValidationTest, QueryLongerThanKvNamesBothLengths) {
  Batch b = batch_;
  b.kv_lens[1] = 3;
  expect_rejected(b.view(), {"sequence 1", "kv_len 3 < q_len 4"});
}

TEST_F(ValidationTest, PageIndexPastThePoolNamesTheEntry) {
  Batch b = batch_;
  b.page_indices[1 * b.pages_per_seq + 2] = cache_.shape.num_pages;
  expect_rejected(b.view(),
                  {"sequence 1", "page_indices[1][2] = " + std::to_string(cache_.shape.num_pages),
                   "outside the pool"});
}

TEST_F(ValidationTest, NegativePageIndexNamesTheEntry) {
  Batch b = batch_;
  b.page_indices[2 * b.pages_per_seq + 0] = -1;
  expect_rejected(b.view(), {"sequence 2", "page_indices[2][0] = -1"});
}

TEST_F(ValidationTest, UnneededPageTableEntriesAreNotChecked) {
  // Sequence 2 (kv_len 7) needs 2 pages of 4; the rest of its row is ignored.
  Batch b = batch_;
  ASSERT_GT(b.pages_per_seq, 2);
  b.page_indices[2 * b.pages_per_seq + 2] = 1 << 30;
  EXPECT_NO_THROW(rpa::validate(b.view(), cache_.shape, params_));
}

TEST_F(ValidationTest, TooFewPagesPerSequenceIsNamed) {
  Batch b = batch_;
  b.kv_lens[1] = 4 * b.pages_per_seq + 1;
  expect_rejected(b.view(), {"sequence 1", "needs " + std::to_string(b.pages_per_seq + 1) +
                                               " pages but pages_per_seq is " +
                                               std::to_string(b.pages_per_seq)});
}

TEST_F(ValidationTest, DecreasingCuQLensNamesTheSequenceAndValues) {
  Batch b = batch_;
  b.cu_q_lens = {0, 1, 0, 8};
  expect_rejected(b.view(), {"cu_q_lens decreases at sequence 1: 1 then 0"});
}

TEST_F(ValidationTest, CuQLensNotStartingAtZeroIsNamed) {
  Batch b = batch_;
  b.cu_q_lens[0] = 1;
  expect_rejected(b.view(), {"cu_q_lens[0] must be 0, got 1"});
}

TEST_F(ValidationTest, CuQLensNotMatchingTheTokenCountIsNamed) {
  rpa::RaggedBatch v = batch_.view();
  v.num_tokens = batch_.num_tokens() + 2;
  expect_rejected(v, {"cu_q_lens[num_seqs] = 8", "num_tokens 10"});
  v.num_tokens = batch_.num_tokens() - 1;
  expect_rejected(v, {"exceeds num_tokens 7"});
}

TEST_F(ValidationTest, MultiTokenSequenceInTheDecodeRangeIsNamed) {
  Batch b = batch_;
  b.distribution[0] = 2;  // sequence 1 (q_len 4) would be a decode
  expect_rejected(b.view(), {"sequence 1", "decode range [0, 2)", "q_len is 4"});
}

TEST_F(ValidationTest, InconsistentDistributionIsNamed) {
  Batch b = batch_;
  b.distribution[2] = 2;  // must equal num_seqs
  expect_rejected(b.view(), {"distribution (1, 2, 2)", "num_seqs = 3"});
  b = batch_;
  b.distribution[0] = 3;
  b.distribution[1] = 2;  // decode_end > prefill_end
  expect_rejected(b.view(), {"distribution (3, 2, 3)"});
}

TEST_F(ValidationTest, QueryHeadsNotAMultipleOfKvHeadsAreNamed) {
  rpa::AttentionParams p = params_;
  p.num_q_heads = 5;
  expect_rejected(batch_.view(), cache_.shape, p, {"num_q_heads 5", "num_kv_heads 2"});
  p.num_q_heads = 0;
  expect_rejected(batch_.view(), cache_.shape, p, {"num_q_heads 0"});
}

TEST_F(ValidationTest, UnsupportedHeadDimIsNamed) {
  rpa::CacheShape s = cache_.shape;
  for (int32_t d : {0, 12, 264}) {
    s.head_dim = d;
    expect_rejected(batch_.view(), s, params_, {"head_dim", "got " + std::to_string(d)});
  }
}

TEST_F(ValidationTest, UnsupportedPageSizeIsNamed) {
  rpa::CacheShape s = cache_.shape;
  for (int32_t ps : {0, -4, 257}) {
    s.page_size = ps;
    expect_rejected(batch_.view(), s, params_, {"page_size", "got " + std::to_string(ps)});
  }
}

TEST_F(ValidationTest, BadCacheShapeAndDtypeAreNamed) {
  rpa::CacheShape s = cache_.shape;
  s.num_pages = 0;
  expect_rejected(batch_.view(), s, params_, {"num_pages", "got 0"});
  s = cache_.shape;
  s.num_kv_heads = -1;
  expect_rejected(batch_.view(), s, params_, {"num_kv_heads", "got -1"});
  s = cache_.shape;
  s.dtype = static_cast<rpa::KvDType>(9);
  expect_rejected(batch_.view(), s, params_, {"kv dtype 9"});
}

TEST_F(ValidationTest, BadOptionsAreNamed) {
  rpa::AttentionParams p = params_;
  p.sliding_window = -3;
  expect_rejected(batch_.view(), cache_.shape, p, {"sliding_window", "got -3"});
  p = params_;
  p.soft_cap = -1.0f;
  expect_rejected(batch_.view(), cache_.shape, p, {"soft_cap"});
  p = params_;
  p.sm_scale = std::numeric_limits<float>::infinity();
  expect_rejected(batch_.view(), cache_.shape, p, {"sm_scale"});
  const std::vector<float> sinks = {0.0f, 1.0f, std::nanf(""), 0.0f};
  p = params_;
  p.sinks = sinks.data();
  expect_rejected(batch_.view(), cache_.shape, p, {"query head 2", "NaN"});
}

TEST_F(ValidationTest, NullMetadataPointersAreNamed) {
  rpa::RaggedBatch v = batch_.view();
  v.cu_q_lens = nullptr;
  expect_rejected(v, {"cu_q_lens is null"});
  v = batch_.view();
  v.kv_lens = nullptr;
  expect_rejected(v, {"kv_lens or page_indices is null"});
  v = batch_.view();
  v.page_indices = nullptr;
  expect_rejected(v, {"kv_lens or page_indices is null"});
}

TEST_F(ValidationTest, AWrittenPageMappedTwiceIsNamed) {
  // Sequence 1's last page receives new tokens; mapping it into sequence 2 too would let one
  // sequence read rows the other is writing.
  Batch b = batch_;
  const int32_t written = b.page_indices[1 * b.pages_per_seq + 4];  // kv 20: positions 16..19
  b.page_indices[2 * b.pages_per_seq + 0] = written;
  expect_rejected(b.view(), {"page " + std::to_string(written), "mapped elsewhere"});
}

TEST_F(ValidationTest, NegativeTuningIsRejected) {
  rpa::Tuning t;
  t.split_kv_tokens = -1;
  EXPECT_THROW(rpa::make_plan(batch_.view(), cache_.shape, params_, 2, t), rpa::Error);
  t = {};
  t.decode_heads_per_item = -2;
  EXPECT_THROW(rpa::make_plan(batch_.view(), cache_.shape, params_, 2, t), rpa::Error);
}

// run() checks what only it sees: the cache and the data pointers.
class RunValidationTest : public ValidationTest {
 protected:
  // Expects run to throw an Error containing needle and to leave the cache untouched.
  void expect_run_rejected(const rpa::Plan& plan, rpa::KvCache view, const float* q, const float* k,
                           const float* v, float* out, const std::string& needle) {
    const Cache before = cache_;
    kdr::ThreadPool pool(2);
    try {
      rpa::run(plan, q, k, v, view, out, &pool);
      ADD_FAILURE() << "run accepted it";
    } catch (const rpa::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
          << "message \"" << e.what() << "\" lacks \"" << needle << "\"";
    }
    EXPECT_TRUE(caches_equal(cache_, before));
  }
};

TEST_F(RunValidationTest, CacheShapeDifferentFromThePlansIsNamed) {
  const rpa::Plan plan = rpa::make_plan(batch_.view(), cache_.shape, params_, 2);
  std::vector<float> out(x_.q.size());
  rpa::KvCache view = cache_.view();
  view.shape.num_pages -= 1;
  expect_run_rejected(plan, view, x_.q.data(), x_.k.data(), x_.v.data(), out.data(),
                      "differs from the plan's");
  view = cache_.view();
  view.shape.dtype = rpa::KvDType::kBF16;
  expect_run_rejected(plan, view, x_.q.data(), x_.k.data(), x_.v.data(), out.data(), "bf16");
}

TEST_F(RunValidationTest, NullPointersAreRejected) {
  const rpa::Plan plan = rpa::make_plan(batch_.view(), cache_.shape, params_, 2);
  std::vector<float> out(x_.q.size());
  const rpa::KvCache view = cache_.view();
  expect_run_rejected(plan, view, nullptr, x_.k.data(), x_.v.data(), out.data(), "non-null");
  expect_run_rejected(plan, view, x_.q.data(), nullptr, x_.v.data(), out.data(), "non-null");
  expect_run_rejected(plan, view, x_.q.data(), x_.k.data(), x_.v.data(), nullptr, "non-null");
  rpa::KvCache no_pool = view;
  no_pool.v = nullptr;
  expect_run_rejected(plan, no_pool, x_.q.data(), x_.k.data(), x_.v.data(), out.data(), "null");
}

TEST_F(RunValidationTest, QuantizedCachesNeedTheirScales) {
  Cache int8 = make_cache(rpa::KvDType::kInt8, kHkv, kD, batch_, kPage, rng_);
  const rpa::Plan plan = rpa::make_plan(batch_.view(), int8.shape, params_, 2);
  std::vector<float> out(x_.q.size());
  rpa::KvCache view = int8.view();
  view.k_row_scales = nullptr;
  const Cache before = int8;
  EXPECT_THROW(rpa::run(plan, x_.q.data(), x_.k.data(), x_.v.data(), view, out.data(), nullptr),
               rpa::Error);
  EXPECT_TRUE(caches_equal(int8, before));

  Cache fp8 = make_cache(rpa::KvDType::kFp8E4M3, kHkv, kD, batch_, kPage, rng_);
  const rpa::Plan fp8_plan = rpa::make_plan(batch_.view(), fp8.shape, params_, 2);
  view = fp8.view();
  view.v_scale = 0.0f;
  const Cache fp8_before = fp8;
  try {
    rpa::run(fp8_plan, x_.q.data(), x_.k.data(), x_.v.data(), view, out.data(), nullptr);
    ADD_FAILURE() << "run accepted v_scale 0";
  } catch (const rpa::Error& e) {
    EXPECT_NE(std::string(e.what()).find("scale"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(caches_equal(fp8, fp8_before));
}

TEST_F(RunValidationTest, AnEmptyPlanIsRejected) {
  const rpa::Plan empty;
  std::vector<float> out(x_.q.size());
  expect_run_rejected(empty, cache_.view(), x_.q.data(), x_.k.data(), x_.v.data(), out.data(),
                      "Plan is empty");
}

}  // namespace
}  // namespace rpa_test
