// The oracle: the contract of rpa.h written as directly as possible. Writes every new row,
// then for each query token gathers its visible positions from the pages and runs a plain
// softmax in double precision.
#include <algorithm>
#include <cmath>
#include <vector>

#include "rpa/rpa.h"

namespace rpa {

void reference(const RaggedBatch& b, const AttentionParams& p, const float* q, const float* k,
               const float* v, KvCache& cache, float* out) {
  const CacheShape& s = cache.shape;
  validate(b, s, p);
  if (b.num_tokens > 0 && (!q || !k || !v || !out || !cache.k || !cache.v))
    throw Error("rpa: null q, k, v, out or cache pool");
  if (s.dtype == KvDType::kInt8 && (!cache.k_row_scales || !cache.v_row_scales))
    throw Error("rpa: int8 cache needs k_row_scales and v_row_scales");

  const int hkv = s.num_kv_heads, hq = p.num_q_heads, d = s.head_dim, ps = s.page_size;
  const int group = hq / hkv;
  auto page_of = [&](int i, int64_t pos) {
    return b.page_indices[static_cast<int64_t>(i) * b.pages_per_seq + pos / ps];
  };

  // 1. Write the new tokens into their pages.
  for (int i = 0; i < b.num_seqs; ++i) {
    const int q_len = b.cu_q_lens[i + 1] - b.cu_q_lens[i];
    const int64_t start = static_cast<int64_t>(b.kv_lens[i]) - q_len;
    for (int j = 0; j < q_len; ++j) {
      const int64_t pos = start + j;
      const int64_t tok = b.cu_q_lens[i] + j;
      for (int h = 0; h < hkv; ++h) {
        store_row(cache, false, page_of(i, pos), h, static_cast<int32_t>(pos % ps),
                  k + (tok * hkv + h) * d);
        store_row(cache, true, page_of(i, pos), h, static_cast<int32_t>(pos % ps),
                  v + (tok * hkv + h) * d);
      }
    }
  }

  // 2. Attend, reading everything (new tokens included) back from the pages.
  std::vector<float> krow(d), vrow(d);
  std::vector<double> scores, acc(d);
  for (int i = 0; i < b.num_seqs; ++i) {
    const int q_len = b.cu_q_lens[i + 1] - b.cu_q_lens[i];
    const int64_t kv_len = b.kv_lens[i];
    for (int j = 0; j < q_len; ++j) {
      const int64_t pos = kv_len - q_len + j;
      const int64_t tok = b.cu_q_lens[i] + j;
      const int64_t hi = p.causal ? pos : kv_len - 1;
      const int64_t lo =
          p.sliding_window > 0 ? std::max<int64_t>(0, pos - p.sliding_window + 1) : 0;
      for (int h = 0; h < hq; ++h) {
        const int kvh = h / group;
        const float* qv = q + (tok * hq + h) * d;
        scores.assign(static_cast<size_t>(std::max<int64_t>(0, hi - lo + 1)), 0.0);
        double m = -INFINITY;
        for (int64_t t = lo; t <= hi; ++t) {
          load_row(cache, false, page_of(i, t), kvh, static_cast<int32_t>(t % ps), krow.data());
          double dot = 0.0;
          for (int x = 0; x < d; ++x) dot += static_cast<double>(qv[x]) * krow[x];
          double sc = dot * p.sm_scale;
          if (p.soft_cap > 0.0f) sc = p.soft_cap * std::tanh(sc / p.soft_cap);
          scores[t - lo] = sc;
          m = std::max(m, sc);
        }
        if (p.sinks) m = std::max(m, static_cast<double>(p.sinks[h]));
        double denom = p.sinks ? std::exp(static_cast<double>(p.sinks[h]) - m) : 0.0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t t = lo; t <= hi; ++t) {
          const double w = std::exp(scores[t - lo] - m);
          denom += w;
          load_row(cache, true, page_of(i, t), kvh, static_cast<int32_t>(t % ps), vrow.data());
          for (int x = 0; x < d; ++x) acc[x] += w * vrow[x];
        }
        float* o = out + (tok * hq + h) * d;
        for (int x = 0; x < d; ++x) o[x] = denom > 0.0 ? static_cast<float>(acc[x] / denom) : 0.0f;
      }
    }
  }
}

}  // namespace rpa
