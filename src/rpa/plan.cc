// make_plan: splits one step's ragged batch into independent work items, once per step.
//
// A work item's shape depends only on its own sequence (q tiles at fixed multiples of the
// q block, split-KV points at fixed multiples of split_kv_tokens), never on the rest of the
// batch or on the thread count: this is what makes the results batch invariant.
#include <algorithm>
#include <numeric>

#include "rpa/internal.h"
#include "rpa/variants.h"

namespace rpa {

// Defaults chosen by the block-size sweeps in docs/rpa.md (2 threads, AVX2, Llama-3-8B
// shapes): 64 q tokens x 4 heads = 256 query rows keep Q and O in L2 (256 KiB); a
// 64-position K/V block (2 x 32 KiB f32) halves the per-row softmax work per FMA of 32.
constexpr int32_t kDefaultPrefillQBlock = 64;
constexpr int32_t kDefaultPrefillKvBlock = 64;
// Decode blocks: 64 positions for an item over one KV head; 32 for an item over several,
// which reads the same 32 positions of each head in turn (two pages of each).
constexpr int32_t kDefaultDecodeKvBlock = 64;
constexpr int32_t kDefaultMultiHeadDecodeKvBlock = 32;
// A decode over one KV head per item is split at multiples of 256 positions per KV head of
// the model (2048 for Llama-3-8B's 8, as the decode sweep chose; 256 for Gemma-3-270M's
// single KV head, whose lone decode would otherwise be one work item on one thread: +11%
// generation tokens/s there). Items over several KV heads are split at multiples of 512
// (a 513-position decode still gives two threads work). The split depends on the model's
// shape and the tuning only, never on the batch or the threads, so results stay invariant.
constexpr int32_t kSplitKvTokensPerKvHead = 256;
constexpr int32_t kMaxDefaultSplitKvTokens = 2048;
constexpr int32_t kMultiHeadSplitKvTokens = 512;

ResolvedTuning resolve_tuning(const Tuning& t, int32_t num_kv_heads) {
  if (t.prefill_q_block < 0 || t.prefill_kv_block < 0 || t.split_kv_tokens < 0 ||
      t.decode_kv_block < 0 || t.decode_heads_per_item < 0)
    throw Error("rpa: Tuning block sizes must be >= 0 (0 = default)");
  const int32_t hkv = std::max(num_kv_heads, 1);
  ResolvedTuning r;
  r.prefill_q_block = t.prefill_q_block > 0 ? t.prefill_q_block : kDefaultPrefillQBlock;
  r.prefill_kv_block = t.prefill_kv_block > 0 ? t.prefill_kv_block : kDefaultPrefillKvBlock;
  r.decode_heads_per_item = std::min(
      {t.decode_heads_per_item > 0 ? t.decode_heads_per_item : hkv, hkv, kMaxHeadsPerItem});
  const bool multi_head = r.decode_heads_per_item > 1;
  r.decode_kv_block = t.decode_kv_block > 0 ? t.decode_kv_block
                      : multi_head          ? kDefaultMultiHeadDecodeKvBlock
                                            : kDefaultDecodeKvBlock;
  r.split_kv_tokens = t.split_kv_tokens > 0 ? t.split_kv_tokens
                      : multi_head
                          ? kMultiHeadSplitKvTokens
                          : std::min(kSplitKvTokensPerKvHead * hkv, kMaxDefaultSplitKvTokens);
  // Tiles live in per-thread scratch; keep them to a size that stays in L1/L2.
  r.prefill_q_block = std::min(r.prefill_q_block, 1024);
  r.prefill_kv_block = std::min(r.prefill_kv_block, 1024);
  r.decode_kv_block = std::min(r.decode_kv_block, 1024);
  return r;
}

Plan::Plan() = default;
Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

namespace {
const Plan::Impl& checked(const std::unique_ptr<Plan::Impl>& impl) {
  if (!impl) throw Error("rpa: Plan is empty (use make_plan)");
  return *impl;
}
}  // namespace

int32_t Plan::num_seqs() const { return checked(impl_).num_seqs; }
int32_t Plan::num_tokens() const { return checked(impl_).num_tokens; }
int32_t Plan::num_work_items() const { return static_cast<int32_t>(checked(impl_).items.size()); }
int32_t Plan::num_kv_splits() const { return checked(impl_).num_partials; }
const CacheShape& Plan::shape() const { return checked(impl_).shape; }
const AttentionParams& Plan::params() const { return checked(impl_).params; }

Plan make_plan(const RaggedBatch& batch, const CacheShape& shape, const AttentionParams& params,
               int num_threads, const Tuning& tuning) {
  validate(batch, shape, params);
  (void)num_threads;  // the split must not depend on it (batch invariance)

  auto impl = std::make_unique<Plan::Impl>();
  Plan::Impl& p = *impl;
  p.shape = shape;
  p.params = params;
  if (params.sinks) {
    p.sinks.assign(params.sinks, params.sinks + params.num_q_heads);
    p.params.sinks = p.sinks.data();
  }
  p.tuning = resolve_tuning(tuning, shape.num_kv_heads);
  p.num_seqs = batch.num_seqs;
  p.num_tokens = batch.num_tokens;
  p.pages_per_seq = batch.pages_per_seq;
  p.group = params.num_q_heads / shape.num_kv_heads;
  const int32_t n = batch.num_seqs;
  p.cu_q_lens.assign(batch.cu_q_lens, batch.cu_q_lens + n + 1);
  if (n > 0) {
    p.kv_lens.assign(batch.kv_lens, batch.kv_lens + n);
    p.page_indices.assign(batch.page_indices,
                          batch.page_indices + static_cast<size_t>(n) * batch.pages_per_seq);
  }

  const int32_t hkv = shape.num_kv_heads;
  const ResolvedTuning& t = p.tuning;
  std::vector<int64_t> cost;
  p.items.reserve(static_cast<size_t>(n) * hkv);
  cost.reserve(static_cast<size_t>(n) * hkv);

  for (int32_t i = 0; i < n; ++i) {
    const int32_t q_len = p.cu_q_lens[i + 1] - p.cu_q_lens[i];
    const int32_t kv_len = p.kv_lens[i];
    const int32_t first_new = kv_len - q_len;  // absolute position of new token 0
    const PathKind path = i < batch.distribution[0]   ? PathKind::kDecode
                          : i < batch.distribution[1] ? PathKind::kPrefill
                                                      : PathKind::kMixed;
    const KeyMask mask = KeyMask::of(params, kv_len);
    if (path == PathKind::kDecode) {
      const int32_t lo = std::max(0, mask.range(kv_len - 1).lo);
      // Split points are the multiples of split_kv_tokens inside (lo, kv_len).
      const int32_t step = t.split_kv_tokens;
      const bool split = kv_len - lo > step;
      int32_t num_pieces = 1;
      if (split) num_pieces = (kv_len - 1) / step - lo / step + 1;
      // Items cover heads_per_item KV heads; head h's partials are the num_pieces slots
      // from base + h * num_pieces, so item piece s of first head h0 starts at
      // base + h0 * num_pieces + s with a stride of num_pieces per head.
      const int32_t heads_per_item = t.decode_heads_per_item;
      const int32_t base = p.num_partials;
      if (split) {
        for (int32_t h = 0; h < hkv; ++h)
          p.splits.push_back({i, h, base + h * num_pieces, num_pieces});
        p.num_partials += hkv * num_pieces;
      }
      for (int32_t h0 = 0; h0 < hkv; h0 += heads_per_item) {
        const int32_t heads = std::min(heads_per_item, hkv - h0);
        int32_t begin = lo;
        for (int32_t s = 0; s < num_pieces; ++s) {
          const int32_t end = split ? std::min(kv_len, (begin / step + 1) * step) : kv_len;
          WorkItem w;
          w.seq = i;
          w.kv_head = h0;
          w.num_heads = heads;
          w.q_begin = 0;
          w.q_end = 1;
          w.kv_begin = begin;
          w.kv_end = end;
          w.partial = split ? base + h0 * num_pieces + s : -1;
          w.partial_stride = split ? num_pieces : 0;
          w.path = path;
          p.items.push_back(w);
          cost.push_back(static_cast<int64_t>(end - begin) * p.group * heads);
          begin = end;
        }
      }
      continue;
    }
    const int32_t qb = t.prefill_q_block;
    for (int32_t q0 = 0; q0 < q_len; q0 += qb) {
      const int32_t q1 = std::min(q_len, q0 + qb);
      const int32_t lo = std::max(0, mask.range(first_new + q0).lo);
      const int32_t hi = mask.range(first_new + q1 - 1).hi + 1;  // exclusive
      for (int32_t h = 0; h < hkv; ++h) {
        WorkItem w;
        w.seq = i;
        w.kv_head = h;
        w.q_begin = q0;
        w.q_end = q1;
        w.kv_begin = lo;
        w.kv_end = hi;
        w.path = path;
        p.items.push_back(w);
        cost.push_back(static_cast<int64_t>(hi - lo) * (q1 - q0) * p.group);
      }
    }
  }

  // Largest first so that the dynamic claiming of the thread pool balances the tail. The
  // order changes only who computes an item, never what it computes.
  std::vector<int32_t> order(p.items.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return cost[a] > cost[b]; });
  std::vector<WorkItem> sorted;
  sorted.reserve(order.size());
  for (int32_t idx : order) sorted.push_back(p.items[idx]);
  p.items = std::move(sorted);
  p.max_kv_block = std::max(t.prefill_kv_block, t.decode_kv_block);
  for (int32_t i = 0; i < p.num_seqs; ++i)
    p.max_q_len = std::max(p.max_q_len, p.cu_q_lens[i + 1] - p.cu_q_lens[i]);

  Plan plan;
  plan.impl_ = std::move(impl);
  return plan;
}

}  // namespace rpa
