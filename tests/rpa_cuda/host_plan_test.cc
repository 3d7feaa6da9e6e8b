// The GPU work split (src/rpa_cuda/plan.cc), checked on the host: every output row is
// computed by exactly one item or merged from split pieces that tile its visible range,
// splits sit on the fixed position grid, a sequence's items do not depend on the rest of the
// batch, and the kernel follows the cache dtype.
#include "rpa_cuda/host_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "../base/seed.h"
#include "cases.h"

namespace rpa_test {
namespace {

using rpa::cuda::detail::GpuItem;
using rpa::cuda::detail::HostPlan;
using rpa::cuda::detail::plan_on_host;

struct StepSetup {
  Batch batch;
  rpa::CacheShape shape;
  rpa::AttentionParams params;
};

StepSetup random_setup(Rng& rng, rpa::KvDType dtype, int32_t hq, int32_t hkv, int32_t window,
                       bool causal) {
  BatchSpec spec;
  spec.num_seqs = 9;
  spec.page_size = 16;
  spec.max_cached = 3000;
  spec.prefill_chunk = 37;
  spec.max_mixed_q = 90;
  StepSetup s;
  s.batch = random_batch(spec, rng);
  s.shape = {s.batch.num_pages, hkv, 16, 128, dtype};
  s.params.num_q_heads = hq;
  s.params.sm_scale = 0.1f;
  s.params.sliding_window = window;
  s.params.causal = causal;
  return s;
}

std::vector<GpuItem> all_items(const HostPlan& p) {
  std::vector<GpuItem> items = p.simt_items;
  items.insert(items.end(), p.mma_items.begin(), p.mma_items.end());
  return items;
}

TEST(RpaCudaHostPlan, EveryRowIsCoveredOnceOverItsVisibleRange) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  for (auto dtype : {rpa::KvDType::kBF16, rpa::KvDType::kF32}) {
    for (auto [hq, hkv] : {std::pair{32, 8}, {12, 2}, {5, 1}, {3, 3}}) {
      for (int32_t window : {0, 5, 700}) {
        for (bool causal : {true, false}) {
          SCOPED_TRACE(std::string(rpa::to_string(dtype)) + " hq " + std::to_string(hq) + " hkv " +
                       std::to_string(hkv) + " window " + std::to_string(window) +
                       (causal ? " causal" : " full"));
          const StepSetup s = random_setup(rng, dtype, hq, hkv, window, causal);
          const HostPlan p = plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{});
          const int32_t g = hq / hkv;
          ASSERT_EQ(p.group, g);
          // (seq, head, row) -> covered KV positions, summed over items.
          std::map<std::tuple<int, int, int>, int64_t> covered;
          std::vector<int> partial_uses(p.num_partials, 0);
          for (const GpuItem& it : all_items(p)) {
            ASSERT_LT(it.row_begin, it.row_end);
            ASSERT_LE(it.kv_end, s.batch.kv_lens[it.seq]);
            if (it.partial >= 0) ++partial_uses.at(it.partial);
            const int32_t q_len = s.batch.q_len(it.seq);
            const int32_t kv_len = s.batch.kv_lens[it.seq];
            for (int32_t r = it.row_begin; r < it.row_end; ++r) {
              const int32_t pos = kv_len - q_len + r / g;
              const int32_t lo = window > 0 ? std::max(0, pos - window + 1) : 0;
              const int32_t hi = causal ? pos + 1 : kv_len;
              // An unsplit item must contain the row's whole visible range.
              if (it.partial < 0) {
                EXPECT_LE(it.kv_begin, lo);
                EXPECT_GE(it.kv_end, hi);
              }
              covered[{it.seq, it.kv_head, r}] +=
                  std::max(0, std::min(hi, it.kv_end) - std::max(lo, it.kv_begin));
            }
          }
          for (int u : partial_uses) EXPECT_EQ(u, 1);
          for (int32_t i = 0; i < s.batch.num_seqs(); ++i) {
            const int32_t q_len = s.batch.q_len(i);
            const int32_t kv_len = s.batch.kv_lens[i];
            for (int32_t h = 0; h < hkv; ++h) {
              for (int32_t r = 0; r < q_len * g; ++r) {
                const int32_t pos = kv_len - q_len + r / g;
                const int32_t lo = window > 0 ? std::max(0, pos - window + 1) : 0;
                const int32_t hi = causal ? pos + 1 : kv_len;
                EXPECT_EQ((covered[{i, h, r}]), hi - lo)
                    << "seq " << i << " head " << h << " row " << r;
              }
            }
          }
        }
      }
    }
  }
}

TEST(RpaCudaHostPlan, DecodeSplitsSitOnTheFixedGridAndMergeInOrder) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  const std::vector<int32_t> q_lens = {1, 1, 1, 1};
  const std::vector<int32_t> kv_lens = {5000, 512, 513, 131072};
  const int32_t dist[3] = {4, 4, 4};
  const Batch b = layout_batch(q_lens, kv_lens, dist, 256, rng);
  const rpa::CacheShape shape{b.num_pages, 8, 256, 128, rpa::KvDType::kBF16};
  rpa::AttentionParams params;
  params.num_q_heads = 32;
  const HostPlan p = plan_on_host(b.view(), shape, params, rpa::Tuning{});
  EXPECT_EQ(p.split_kv_tokens, 512);
  ASSERT_EQ(p.splits.size(), 3u * 8);  // 512 fits one piece; the others split
  for (const auto& sp : p.splits) {
    std::vector<const GpuItem*> pieces;
    for (const GpuItem& it : p.simt_items)
      if (it.partial >= sp.first_partial && it.partial < sp.first_partial + sp.num_splits) {
        EXPECT_EQ(it.seq, sp.seq);
        EXPECT_EQ(it.kv_head, sp.kv_head);
        pieces.push_back(&it);
      }
    ASSERT_EQ(static_cast<int32_t>(pieces.size()), sp.num_splits);
    std::sort(pieces.begin(), pieces.end(),
              [](const GpuItem* a, const GpuItem* b) { return a->partial < b->partial; });
    int32_t expect_begin = 0;
    for (const GpuItem* it : pieces) {
      EXPECT_EQ(it->kv_begin, expect_begin);
      EXPECT_TRUE(it->kv_end == kv_lens[sp.seq] || it->kv_end % 512 == 0);
      EXPECT_EQ(it->row_begin, 0);
      EXPECT_EQ(it->row_end, 4);  // the whole group of 4 query heads
      expect_begin = it->kv_end;
    }
    EXPECT_EQ(expect_begin, kv_lens[sp.seq]);
  }
  EXPECT_TRUE(p.mma_items.empty());
}

// The items of a sequence, with the sequence index and partial numbering taken out.
std::vector<std::vector<int32_t>> items_of(const HostPlan& p, int32_t seq) {
  std::vector<std::vector<int32_t>> out;
  for (const GpuItem& it : all_items(p))
    if (it.seq == seq)
      out.push_back(
          {it.kv_head, it.row_begin, it.row_end, it.kv_begin, it.kv_end, it.partial >= 0 ? 1 : 0});
  std::sort(out.begin(), out.end());
  return out;
}

TEST(RpaCudaHostPlan, ASequenceIsSplitTheSameAloneAndInABatch) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  for (auto dtype : {rpa::KvDType::kF16, rpa::KvDType::kInt8}) {
    const StepSetup s = random_setup(rng, dtype, 12, 2, 0, true);
    const HostPlan whole = plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{});
    for (int32_t i = 0; i < s.batch.num_seqs(); ++i) {
      // Sequence i alone, in the range it had in the batch.
      Batch alone;
      alone.cu_q_lens = {0, s.batch.q_len(i)};
      alone.kv_lens = {s.batch.kv_lens[i]};
      alone.pages_per_seq = s.batch.pages_per_seq;
      alone.page_indices.assign(s.batch.page_indices.begin() + i * s.batch.pages_per_seq,
                                s.batch.page_indices.begin() + (i + 1) * s.batch.pages_per_seq);
      const bool decode = i < s.batch.distribution[0];
      const bool prefill = !decode && i < s.batch.distribution[1];
      alone.distribution[0] = decode ? 1 : 0;
      alone.distribution[1] = decode || prefill ? 1 : 0;
      alone.distribution[2] = 1;
      alone.num_pages = s.batch.num_pages;
      const HostPlan one = plan_on_host(alone.view(), s.shape, s.params, rpa::Tuning{});
      EXPECT_EQ(items_of(one, 0), items_of(whole, i)) << "sequence " << i;
    }
  }
}

TEST(RpaCudaHostPlan, SixteenBitCachesRunPrefillOnTensorCores) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  for (auto dtype : {rpa::KvDType::kF32, rpa::KvDType::kBF16, rpa::KvDType::kF16,
                     rpa::KvDType::kInt8, rpa::KvDType::kFp8E4M3}) {
    const StepSetup s = random_setup(rng, dtype, 32, 8, 0, true);
    const HostPlan p = plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{});
    const bool tc = dtype == rpa::KvDType::kBF16 || dtype == rpa::KvDType::kF16;
    const int32_t prefill_seqs = s.batch.num_seqs() - s.batch.distribution[0];
    EXPECT_EQ(!p.mma_items.empty(), tc && prefill_seqs > 0) << rpa::to_string(dtype);
    for (const GpuItem& it : p.mma_items) {
      EXPECT_GE(it.seq, s.batch.distribution[0]);
      EXPECT_LE(it.row_end - it.row_begin, rpa::cuda::detail::kMmaRows);
      EXPECT_EQ(it.row_begin % rpa::cuda::detail::kMmaRows, 0);
    }
    // Without tensor cores (RPA_CUDA_TENSOR_CORES=0) every item goes to the CUDA-core kernel.
    const HostPlan simt = plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{}, false);
    EXPECT_TRUE(simt.mma_items.empty());
    EXPECT_EQ(simt.simt_items.size() >= p.simt_items.size(), true);
  }
}

TEST(RpaCudaHostPlan, EachDecodeHeadWritesItsNewRowInExactlyTheItemThatReadsIt) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  for (int32_t window : {0, 5}) {
    const StepSetup s = random_setup(rng, rpa::KvDType::kBF16, 12, 2, window, true);
    const HostPlan p = plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{});
    const int32_t decode_end = s.batch.distribution[0];
    EXPECT_EQ(p.first_written_token, s.batch.cu_q_lens[decode_end]);
    std::map<std::pair<int, int>, int> writers;
    for (const GpuItem& it : all_items(p)) {
      if (!(it.flags & rpa::cuda::detail::kWritesNewRow)) continue;
      ASSERT_LT(it.seq, decode_end);                  // only decodes fuse the write
      EXPECT_EQ(it.kv_end, s.batch.kv_lens[it.seq]);  // its range holds the new token
      EXPECT_LT(it.kv_begin, it.kv_end);
      ++writers[{it.seq, it.kv_head}];
    }
    EXPECT_EQ(static_cast<int32_t>(writers.size()), decode_end * 2);
    for (const auto& [key, count] : writers) EXPECT_EQ(count, 1);
    // Unfused: the write kernel stores every row, no item writes.
    const HostPlan off =
        plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{}, true, false);
    EXPECT_EQ(off.first_written_token, 0);
    for (const GpuItem& it : all_items(off)) EXPECT_EQ(it.flags, 0);
  }
}

TEST(RpaCudaHostPlan, MetadataIsCopiedAndTokensMapToTheirSequence) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  const StepSetup s = random_setup(rng, rpa::KvDType::kBF16, 8, 2, 0, true);
  std::vector<float> sinks = {1, 2, 3, 4, 5, 6, 7, 8};
  rpa::AttentionParams params = s.params;
  params.sinks = sinks.data();
  const HostPlan p = plan_on_host(s.batch.view(), s.shape, params, rpa::Tuning{});
  sinks.assign(8, 0.0f);  // the plan keeps its own copy
  ASSERT_NE(p.params.sinks, nullptr);
  EXPECT_EQ(p.params.sinks[7], 8.0f);
  EXPECT_EQ(p.cu_q_lens, s.batch.cu_q_lens);
  EXPECT_EQ(p.kv_lens, s.batch.kv_lens);
  ASSERT_EQ(static_cast<int32_t>(p.token_seq.size()), s.batch.num_tokens());
  for (int32_t i = 0; i < s.batch.num_seqs(); ++i)
    for (int32_t t = s.batch.cu_q_lens[i]; t < s.batch.cu_q_lens[i + 1]; ++t)
      EXPECT_EQ(p.token_seq[t], i);
}

TEST(RpaCudaHostPlan, ContractViolationsAreRejectedBeforeAnyUpload) {
  const uint64_t seed = kdr_test::test_seed();
  Rng rng(seed);
  StepSetup s = random_setup(rng, rpa::KvDType::kBF16, 8, 2, 0, true);
  s.batch.page_indices[0] = s.batch.num_pages;  // outside the pool
  EXPECT_THROW(plan_on_host(s.batch.view(), s.shape, s.params, rpa::Tuning{}), rpa::Error);
  StepSetup t = random_setup(rng, rpa::KvDType::kBF16, 8, 2, 0, true);
  rpa::Tuning bad;
  bad.split_kv_tokens = -1;
  EXPECT_THROW(plan_on_host(t.batch.view(), t.shape, t.params, bad), rpa::Error);
}

}  // namespace
}  // namespace rpa_test
