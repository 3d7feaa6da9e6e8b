// plan_on_host: the GPU work split of one step, computed once on the host.
//
// Decodes: one item per (sequence, KV head, split) serving every query head of the group, so
// each K/V row is loaded once for the group. Long decodes are split at the multiples of
// split_kv_tokens, a fixed position grid that depends on nothing else in the batch (batch
// invariance); the merge combines the pieces in split order (determinism).
// Prefill and mixed: tiles of rows (token x query head) at fixed multiples of the tile size
// within the sequence, each over the causal/window range its rows can see.
#include <algorithm>
#include <numeric>

#include "rpa_cuda/host_plan.h"

namespace rpa::cuda::detail {

bool uses_tensor_cores(KvDType dtype) { return dtype == KvDType::kBF16 || dtype == KvDType::kF16; }

namespace {

int64_t item_cost(const GpuItem& w) {
  return static_cast<int64_t>(w.kv_end - w.kv_begin) * (w.row_end - w.row_begin);
}

// Largest first, so the last wave of CTAs is made of short ones. The order changes which SM
// runs an item, never what it computes.
void largest_first(std::vector<GpuItem>& items) {
  std::stable_sort(items.begin(), items.end(),
                   [](const GpuItem& a, const GpuItem& b) { return item_cost(a) > item_cost(b); });
}

}  // namespace

HostPlan plan_on_host(const RaggedBatch& batch, const CacheShape& shape,
                      const AttentionParams& params, const Tuning& tuning, bool tensor_cores,
                      bool fused_write) {
  validate(batch, shape, params);
  if (tuning.split_kv_tokens < 0) throw Error("rpa: Tuning::split_kv_tokens must be >= 0");
  HostPlan p;
  p.shape = shape;
  p.params = params;
  if (params.sinks) {
    p.sinks.assign(params.sinks, params.sinks + params.num_q_heads);
    p.params.sinks = p.sinks.data();
  }
  p.group = params.num_q_heads / shape.num_kv_heads;
  p.num_seqs = batch.num_seqs;
  p.num_tokens = batch.num_tokens;
  p.pages_per_seq = batch.pages_per_seq;
  p.split_kv_tokens = tuning.split_kv_tokens > 0 ? tuning.split_kv_tokens : kDefaultSplitKvTokens;
  const int32_t n = batch.num_seqs;
  p.cu_q_lens.assign(batch.cu_q_lens, batch.cu_q_lens + n + 1);
  if (n > 0) {
    p.kv_lens.assign(batch.kv_lens, batch.kv_lens + n);
    p.page_indices.assign(batch.page_indices,
                          batch.page_indices + static_cast<size_t>(n) * batch.pages_per_seq);
  }
  p.token_seq.resize(static_cast<size_t>(batch.num_tokens));
  for (int32_t i = 0; i < n; ++i)
    std::fill(p.token_seq.begin() + p.cu_q_lens[i], p.token_seq.begin() + p.cu_q_lens[i + 1], i);

  const int32_t hkv = shape.num_kv_heads, g = p.group, window = params.sliding_window;
  const bool mma = tensor_cores && uses_tensor_cores(shape.dtype);
  const int32_t step = p.split_kv_tokens;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t q_len = p.cu_q_lens[i + 1] - p.cu_q_lens[i];
    const int32_t kv_len = p.kv_lens[i];
    const int32_t first_new = kv_len - q_len;
    if (i < batch.distribution[0]) {  // decode: q_len 1
      const int32_t lo = window > 0 ? std::max(0, kv_len - window) : 0;
      const bool split = kv_len - lo > step;
      const int32_t pieces = split ? (kv_len - 1) / step - lo / step + 1 : 1;
      for (int32_t h = 0; h < hkv; ++h) {
        const int32_t first = p.num_partials;
        if (split) {
          p.splits.push_back({i, h, first, pieces});
          p.num_partials += pieces;
        }
        int32_t begin = lo;
        for (int32_t s = 0; s < pieces; ++s) {
          const int32_t end = split ? std::min(kv_len, (begin / step + 1) * step) : kv_len;
          // The last piece holds position kv_len - 1, the new token.
          const int32_t flags = fused_write && end == kv_len ? kWritesNewRow : 0;
          p.simt_items.push_back({i, h, 0, g, begin, end, split ? first + s : -1, flags});
          begin = end;
        }
      }
      continue;
    }
    const int32_t rows = q_len * g;
    const int32_t tile = mma ? kMmaRows : kSimtRows;
    for (int32_t r0 = 0; r0 < rows; r0 += tile) {
      const int32_t r1 = std::min(rows, r0 + tile);
      const int32_t j0 = r0 / g, j1 = (r1 - 1) / g;  // first and last token of the tile
      const int32_t lo = window > 0 ? std::max(0, first_new + j0 - window + 1) : 0;
      const int32_t hi = params.causal ? first_new + j1 + 1 : kv_len;  // exclusive
      for (int32_t h = 0; h < hkv; ++h) {
        GpuItem w{i, h, r0, r1, lo, hi, -1, 0};
        (mma ? p.mma_items : p.simt_items).push_back(w);
      }
    }
  }
  // Decodes come first in the batch, so their tokens are [0, cu_q_lens[decode_end]).
  if (fused_write) p.first_written_token = p.cu_q_lens[batch.distribution[0]];
  largest_first(p.simt_items);
  largest_first(p.mma_items);
  return p;
}

}  // namespace rpa::cuda::detail
