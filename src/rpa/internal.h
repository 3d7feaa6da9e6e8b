// Private to src/rpa: what a Plan holds, shared by plan.cc and the CPU kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rpa/rpa.h"

namespace rpa {

// Which specialised kernel runs a work item (the three ranges of RaggedBatch::distribution).
enum class PathKind : int8_t { kDecode = 0, kPrefill = 1, kMixed = 2 };

// Which work items a kernel family runs: the bf16 kernels (bf16_attention.h) may take the
// decodes, or every item, and leave the rest to the f32 kernels.
enum class ItemSet : int8_t { kNone = 0, kAll, kDecode, kNotDecode };
inline bool runs(ItemSet set, PathKind kind) {
  switch (set) {
    case ItemSet::kNone:
      return false;
    case ItemSet::kAll:
      return true;
    case ItemSet::kDecode:
      return kind == PathKind::kDecode;
    case ItemSet::kNotDecode:
      return kind != PathKind::kDecode;
  }
  return false;
}

// Most KV heads one decode work item covers.
constexpr int32_t kMaxHeadsPerItem = 16;

// One independent unit of work: the query rows of new tokens [q_begin, q_end) of a sequence
// (times the Hq/Hkv query heads of each of KV heads [kv_head, kv_head + num_heads)), attending
// over KV positions [kv_begin, kv_end). All positions are absolute (0 = first token of the
// sequence). Only decode items cover more than one KV head.
struct WorkItem {
  int32_t seq = 0;
  int32_t kv_head = 0;
  int32_t num_heads = 1;
  int32_t q_begin = 0;  // index of the first new token within the sequence's new tokens
  int32_t q_end = 0;
  int32_t kv_begin = 0;  // absolute KV positions read by this item
  int32_t kv_end = 0;
  int32_t partial = -1;        // >= 0: split-KV partial slot of the first head; the merge
                               // finalises the output
  int32_t partial_stride = 0;  // head kv_head + j writes slot partial + j * partial_stride
  PathKind path = PathKind::kMixed;
};

// A decode sequence whose KV range was split; its partials are merged in split order.
struct SplitGroup {
  int32_t seq = 0;
  int32_t kv_head = 0;
  int32_t first_partial = 0;  // partial slots [first_partial, first_partial + num_splits)
  int32_t num_splits = 0;
};

// Row r of a split decode's merge: the largest logit m, the sum l and O (acc[0, n)) over the
// splits' partial slots ([split][group][stride] floats from `first`: m, l, O), in split order
// (fixed, so batch invariant). Always inlined: each kernel family compiles it with its own
// target flags.
[[gnu::always_inline]] inline void merge_split_row(const float* first, size_t stride, int32_t group,
                                                   int32_t num_splits, int32_t r, float* acc,
                                                   size_t n, float& m_out, float& l_out) {
  float m = -INFINITY;
  for (int32_t s = 0; s < num_splits; ++s)
    m = std::fmax(m, first[(static_cast<size_t>(s) * group + r) * stride]);
  float l = 0.0f;
  std::fill(acc, acc + n, 0.0f);
  if (m != -INFINITY) {
    for (int32_t s = 0; s < num_splits; ++s) {
      const float* slot = first + (static_cast<size_t>(s) * group + r) * stride;
      if (slot[0] == -INFINITY) continue;
      const float f = std::exp(slot[0] - m);
      l += slot[1] * f;
      for (size_t x = 0; x < n; ++x) acc[x] += slot[2 + x] * f;
    }
  }
  m_out = m;
  l_out = l;
}

// Tuning with every 0 replaced by its default (see docs/rpa.md for the sweep).
struct ResolvedTuning {
  int32_t prefill_q_block = 0;
  int32_t prefill_kv_block = 0;
  int32_t decode_kv_block = 0;
  int32_t split_kv_tokens = 0;
  int32_t decode_heads_per_item = 0;
};
ResolvedTuning resolve_tuning(const Tuning& tuning, int32_t num_kv_heads);

// x[0..D) -> the f32 values the cache would hold after store_row then load_row (bit-exact),
// without touching the pools: how work items see the new tokens of this step.
void requantize_row(const KvCache& cache, bool is_v, const float* x, float* out);
// The same through the SIMD path the kernels use (exported for tests).
void requantize_row_simd(const KvCache& cache, bool is_v, const float* x, float* out);

// out[i] = exp(x[i]) for x[i] <= 0 or -inf, as the kernels' softmax computes it (exported for
// tests).
void exp_non_positive(const float* x, size_t n, float* out);

// out[i] = kdr::fp8e4m3_to_f32(codes[i]) * scale through the kernels' SIMD conversion (via f16
// bits, Fp8ToF16Bits in attention-inl.h), bit-exact; n a multiple of 8 (exported for tests).
void fp8_row_to_f32(const uint8_t* codes, size_t n, float scale, float* out);

struct Plan::Impl {
  CacheShape shape;
  AttentionParams params;  // params.sinks points into `sinks` below (or is null)
  std::vector<float> sinks;
  ResolvedTuning tuning;
  int32_t num_seqs = 0;
  int32_t num_tokens = 0;
  int32_t pages_per_seq = 0;
  int32_t group = 1;  // Hq / Hkv
  std::vector<int32_t> cu_q_lens;
  std::vector<int32_t> kv_lens;
  std::vector<int32_t> page_indices;  // [num_seqs][pages_per_seq]
  std::vector<WorkItem> items;        // largest first
  std::vector<SplitGroup> splits;
  int32_t num_partials = 0;
  int32_t max_kv_block = 0;
  int32_t max_q_len = 0;  // the longest sequence's new tokens
};

// What one work item reads and writes (the driver owns the memory): the f32 kernels
// (cpu_attention.cc) extend it, the bf16 kernels (bf16_attention.h) take it as it is.
struct ItemArgs {
  const Plan::Impl* plan;
  const float* q;
  const float* k;
  const float* v;
  KvCache* cache;
  float* out;
  float* partials;        // [num_partials][group][partial_stride]: m, l, O
  size_t partial_stride;  // 2 + head_dim rounded up to the kernels' vector length
};

}  // namespace rpa
