// An independent generation loop for the engine's tests: one sequence, its own paged KV
// cache, chunked prefill and a decode step per token straight on model::Forward and a
// Sampler, without the engine's scheduler, block pool, batching or output handling. The
// engine (and engine::generate, which is a request on it) must produce what this produces.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "base/thread_pool.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "model/forward.h"

namespace kdr::engine {

struct ReferenceOptions {
  int32_t max_tokens = 16;
  SamplingParams sampling;
  bool ignore_eos = true;
  int32_t prefill_chunk = 512;
  int32_t page_size = 16;
  rpa::KvDType kv_dtype = kDefaultKvDType;
};

// The tokens generated after `prompt` (a stop token included, then the end).
inline std::vector<int32_t> reference_generate(const LoadedModel& lm, ThreadPool& pool,
                                               const std::vector<int32_t>& prompt,
                                               const ReferenceOptions& o) {
  const model::ModelConfig& c = lm.model->config();
  const int64_t total = static_cast<int64_t>(prompt.size()) + o.max_tokens;
  const int32_t pages = static_cast<int32_t>((total + o.page_size - 1) / o.page_size);
  model::KvCacheSet cache(c, pages, o.page_size, o.kv_dtype);
  model::Forward fwd(*lm.model, pool);
  Sampler sampler(o.sampling);
  model::StepBatch step;
  step.pages_per_seq = pages;
  for (int32_t i = 0; i < pages; ++i) step.page_indices.push_back(i);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  auto run = [&](const int32_t* toks, int32_t n, int32_t kv_len) {
    step.tokens.assign(toks, toks + n);
    step.cu_q_lens = {0, n};
    step.kv_lens = {kv_len};
    step.distribution[0] = n == 1 ? 1 : 0;
    step.distribution[1] = step.distribution[2] = 1;
    step.logit_rows = {n - 1};
    fwd.run(step, cache, logits.data());
  };
  int32_t kv_len = 0;
  for (size_t off = 0; off < prompt.size(); off += static_cast<size_t>(o.prefill_chunk)) {
    const int32_t n = static_cast<int32_t>(std::min<size_t>(o.prefill_chunk, prompt.size() - off));
    kv_len += n;
    run(prompt.data() + off, n, kv_len);
  }
  std::vector<int32_t> history = prompt, out;
  for (int32_t i = 0; i < o.max_tokens; ++i) {
    const int32_t next = sampler.sample(logits, history);
    history.push_back(next);
    out.push_back(next);
    if ((!o.ignore_eos && lm.is_stop(next)) || i + 1 == o.max_tokens) break;
    ++kv_len;
    run(&next, 1, kv_len);
  }
  return out;
}

}  // namespace kdr::engine
