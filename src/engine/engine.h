// The serving engine: many requests at once on one model, in the style of vLLM v1.
//
// Every step the scheduler serves the decoding requests first (one token each), then gives
// prompts chunks in arrival order (partly prefilled ones before waiting ones) sized so that
// the step stays within a time target measured on this machine (engine/step_budget.h):
// streams keep flowing while long prompts are prefilled. The step's sequences are sorted decode |
// prefill | mixed and run as one ragged batch through model::Forward (rpa underneath). KV lives in
// a pool of fixed-size blocks sized from a memory budget; full blocks are shared between requests
// with the same prefix (hash chain, reference counts, LRU eviction of free blocks). When blocks run
// out the most recently admitted request is preempted: its blocks are freed and it is
// recomputed later, so no request is lost.
//
// Parallel samples (Request::n > 1): the prompt is prefilled once, as one sequence; when its
// last token's logits are out, the request forks into n sequences (sample indices 0..n-1).
// The prompt's full blocks are shared by reference count, the partly filled last block is
// copied for each extra sample, and every sample draws its first token from the same logits
// with its own seed, grammar matcher, stop strings and logprobs. From then on each sample is
// an ordinary sequence: it can be preempted (recomputed from the prompt and its own tokens,
// the prompt blocks found again by the prefix cache) and is cancelled with its request. A
// sample that finds no free block or no free seat (max_num_seqs) at the fork waits, with its
// first token, like a preempted sequence.
//
// Threading: start() runs the step loop on a background thread. submit() and cancel() may be
// called from any thread; a request's callback runs on the engine thread (keep it short), or
// use submit_stream() and pull outputs from the caller's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "engine/sampler.h"
#include "rpa/rpa.h"

namespace kdr {
class ThreadPool;
}

namespace kdr::engine {

class JsonGrammar;

struct EngineOptions {
  int64_t kv_memory_bytes = int64_t{512} << 20;  // --kv-memory: the KV pool's size
  int32_t page_size = 16;                        // tokens per KV block
  rpa::KvDType kv_dtype = kDefaultKvDType;
  int32_t max_num_seqs = 32;         // running requests at most
  int32_t max_batched_tokens = 256;  // token cap of one step (--max-batched-tokens)
  // Time target of a step that carries decodes (--itl-target-ms); 0: automatic, from the
  // decodes' own measured cost (engine/step_budget.h). Prefill chunks are sized to it.
  double itl_target_ms = 0.0;
  int32_t min_prefill_chunk = 16;  // the oldest prompt's least progress per step
  // With the automatic target: while the prompts present need more compute than this to
  // prefill, steps take the whole token cap (--prefill-backlog-ms; 0: never).
  double prefill_backlog_ms = 2000.0;
  bool calibrate = true;      // measure the step cost model at construction
  int32_t max_waiting = 256;  // queued requests beyond which submit() refuses
  int32_t max_model_len = 0;  // prompt + output limit; 0: the model's context length
  bool prefix_caching = true;
};

// A configuration that cannot work (the KV budget holds less than one full-length request,
// ...). The message names the option to change.
class EngineConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A request the engine refuses (empty prompt, prompt + max_tokens beyond the context, ids
// out of range). The message states the numbers.
class RequestError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The waiting queue is full (EngineOptions::max_waiting): try again later.
class QueueFullError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Most samples one request may ask for (Request::n).
inline constexpr int32_t kMaxSamples = 128;

struct Request {
  std::vector<int32_t> prompt;
  int32_t max_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings; the text ends before the first match
  bool ignore_eos = false;
  // -1: no log-probabilities; 0: the chosen token's; n > 0: also the n most likely tokens.
  int32_t logprobs = -1;
  // Constrained decoding (response_format json_object / json_schema), or null.
  std::shared_ptr<const JsonGrammar> grammar;
  // Samples to draw from the one prompt, 1..kMaxSamples. Sample i uses seeds[i], or
  // sampling.seed + i when `seeds` is empty.
  int32_t n = 1;
  std::vector<uint64_t> seeds;
  // Scores the prompt (vLLM's prompt_logprobs): -1 no; 0: each prompt token's log-probability
  // under the model given the tokens before it (temperature 1, no penalties), for tokens 1..end;
  // k > 0: also the k most likely tokens at each of those positions. Such a request bypasses
  // the prefix cache (every position is computed). `kdr perplexity` runs on this.
  int32_t prompt_logprobs = -1;
};

struct TopLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

// What one sample of a request produced since its previous Output. The last Output of every
// sample has finished == true, whatever happened (including cancellation and errors); a
// request is over when all n of its samples have finished.
struct Output {
  uint64_t request_id = 0;
  int32_t index = 0;            // the sample, 0..n-1
  std::vector<int32_t> tokens;  // new tokens (stop-string tokens included)
  std::string text;             // new text: whole UTF-8 characters, stop strings cut off
  std::vector<float> logprobs;  // per new token, when Request::logprobs >= 0
  std::vector<std::vector<TopLogprob>> top_logprobs;  // per new token, when logprobs > 0
  bool finished = false;
  std::string finish_reason;  // when finished: "stop", "length", "cancelled" or "error"
  std::string error;          // finish_reason == "error": what went wrong
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;  // generated so far, by this sample
  int32_t cached_tokens = 0;      // prompt tokens served from the prefix cache
  // With Request::prompt_logprobs >= 0, in sample 0's first Output: entry i is about prompt
  // token i + 1.
  std::vector<float> prompt_logprobs;
  std::vector<std::vector<TopLogprob>> prompt_top_logprobs;  // when prompt_logprobs > 0
};

using OutputCallback = std::function<void(const Output&)>;

// Outputs of one request, queued for a consumer thread.
class RequestStream {
 public:
  uint64_t id() const { return id_; }
  // Waits up to `timeout` for the next Output; false on timeout.
  bool next(Output& out, std::chrono::milliseconds timeout);

 private:
  friend class Engine;
  void push(const Output& out);
  uint64_t id_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Output> queue_;
};

// Counts and latency histograms, for /metrics and tests.
struct Histogram {
  std::vector<double> bounds;    // upper bounds in seconds, ascending (+Inf implied)
  std::vector<uint64_t> counts;  // per bucket, bounds.size() + 1 (last: above every bound)
  double sum = 0.0;
  uint64_t count = 0;
  void observe(double seconds);
};

struct EngineStats {
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t kv_blocks_total = 0;
  int32_t kv_blocks_used = 0;       // held by at least one request
  int32_t kv_blocks_cached = 0;     // free, but keeping a reusable prefix (evictable)
  int32_t kv_blocks_shared = 0;     // held by more than one sequence (shared prompt blocks)
  int64_t prefix_query_tokens = 0;  // prompt tokens looked up in the prefix cache
  int64_t prefix_hit_tokens = 0;    // of which found
  int64_t preemptions = 0;
  int64_t prompt_tokens = 0;  // computed (prefix hits excluded)
  int64_t generation_tokens = 0;
  int64_t samples_forked = 0;     // extra samples (n > 1) forked off a prefilled prompt
  int64_t requests_finished = 0;  // every end, cancellations included (once per request)
  int64_t requests_cancelled = 0;
  int64_t steps = 0;
  Histogram time_to_first_token;
  Histogram inter_token_latency;
  Histogram e2e_latency;
  Histogram step_time;  // wall time of each step (schedule, forward, sampling, outputs)
  // The step cost model (engine/step_budget.h): seconds = c0 + c_token * tokens +
  // c_row * logit_rows + c_attn * attention pairs.
  double step_cost[4] = {0, 0, 0, 0};
};

// What the KV budget buys, logged at start-up.
struct KvBudget {
  int64_t bytes_per_token = 0;
  int32_t blocks = 0;
  int64_t tokens = 0;
  int32_t max_model_len = 0;
  double max_concurrency_at_full_length = 0.0;
  std::string summary() const;  // one line for the log
};

class Engine {
 public:
  // Throws EngineConfigError when the options cannot work.
  Engine(const LoadedModel& model, ThreadPool& pool, const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs the step loop on a background thread until stop() or destruction.
  void start();
  // Finishes the loop after the current step; requests still open end as "cancelled".
  void stop();

  // Queues a request; `on_output` receives its Outputs in order. Throws RequestError or
  // QueueFullError (nothing is queued then). Returns the request's id.
  uint64_t submit(Request request, OutputCallback on_output);
  std::shared_ptr<RequestStream> submit_stream(Request request);
  // Cancels at the next step boundary: the blocks of every sample are freed and each
  // sample's last Output says "cancelled". Unknown or finished ids are ignored.
  void cancel(uint64_t request_id);

  // Without start(): runs one step on the caller's thread. False when there was nothing to do.
  bool step();
  // Without start(): steps until no request is left.
  void run_until_idle();

  EngineStats stats() const;
  const KvBudget& kv_budget() const;
  int32_t max_model_len() const;
  const LoadedModel& model() const;
  const EngineOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kdr::engine
