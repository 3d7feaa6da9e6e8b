#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>
#include <span>
#include <thread>
#include <unordered_set>

#include "base/thread_pool.h"
#include "engine/block_pool.h"
#include "engine/json_grammar.h"
#include "engine/step_budget.h"
#include "model/forward.h"
#include "model/tokenizer.h"

namespace kdr::engine {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Prometheus-style latency buckets, seconds.
std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2, 0.3,
          0.5,   0.75,   1.0,   2.5,  5.0,   7.5,  10.0,  20.0, 40.0, 80.0};
}

Histogram make_histogram() {
  Histogram h;
  h.bounds = latency_bounds();
  h.counts.assign(h.bounds.size() + 1, 0);
  return h;
}

// The longest suffix of `text` that is a proper prefix of one of `stops`: text that may
// still turn out to start a stop string, so it is held back from the client.
size_t held_suffix(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const std::string& s : stops)
    for (size_t k = std::min(text.size(), s.size() - 1); k > held; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        held = k;
        break;
      }
  return held;
}

}  // namespace

void Histogram::observe(double seconds) {
  const size_t i =
      static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), seconds) - bounds.begin());
  ++counts[i];
  sum += seconds;
  ++count;
}

std::string KvBudget::summary() const {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "KV cache: %d blocks, %lld tokens (%.1f MiB, %lld bytes per token); max model "
                "length %d; max concurrency at full length %.2f",
                blocks, static_cast<long long>(tokens),
                static_cast<double>(tokens) * static_cast<double>(bytes_per_token) / (1 << 20),
                static_cast<long long>(bytes_per_token), max_model_len,
                max_concurrency_at_full_length);
  return buf;
}

bool RequestStream::next(Output& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return false;
  out = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void RequestStream::push(const Output& out) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(out);
  }
  cv_.notify_all();
}

// The samples of one request that have not finished yet (request-level stats are taken when
// the last one ends).
struct SampleGroup {
  int32_t open = 1;
};

// One sequence as the scheduler sees it: a request, or one sample of a request with n > 1.
struct Seq {
  uint64_t id = 0;
  int32_t index = 0;     // the sample
  int32_t unforked = 0;  // samples still to fork off this one when its prompt is prefilled
  std::shared_ptr<SampleGroup> group;
  Request req;
  OutputCallback on_output;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t num_prompt = 0;
  int32_t num_computed = 0;            // tokens whose K/V are in the cache
  std::vector<int32_t> blocks;         // page ids, in order
  std::vector<uint64_t> block_hashes;  // of the full blocks registered so far
  int32_t cached_tokens = -1;          // prefix-cache hit on first admission (-1: not yet)
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<JsonMatcher> matcher;
  std::unique_ptr<model::StreamingDetokenizer> detok;
  std::string held;  // text withheld because it may start a stop string
  // Request::prompt_logprobs: the scores of prompt tokens 1.. computed so far.
  std::vector<float> prompt_lp;
  std::vector<std::vector<TopLogprob>> prompt_top;
  Clock::time_point arrival, last_token;
  bool got_first_token = false;
  bool scheduled = false;  // in the step being planned
  int32_t pending() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
  int32_t generated() const { return static_cast<int32_t>(tokens.size()) - num_prompt; }
};

struct Engine::Impl {
  const LoadedModel& lm;
  ThreadPool& pool;
  EngineOptions opt;
  KvBudget budget;
  std::unique_ptr<model::KvCacheSet> cache;
  std::unique_ptr<BlockPool> blocks;
  std::unique_ptr<model::Forward> forward;
  int32_t vocab = 0;

  // Shared with submitters (guarded by mu).
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<Seq>> incoming;
  std::unordered_set<uint64_t> cancels;
  bool stopping = false;
  uint64_t next_id = 1;
  mutable std::mutex stats_mu;
  EngineStats stats;

  // Owned by the stepping thread.
  std::deque<std::unique_ptr<Seq>> waiting;
  std::vector<std::unique_ptr<Seq>> running;  // admission order
  std::thread loop;
  std::atomic<bool> started{false};

  std::unique_ptr<StepBudget> step_budget;

  // Step scratch.
  struct Item {
    Seq* s;
    int32_t n;  // tokens computed this step
  };
  std::vector<Item> items;
  std::vector<Seq*> sampled;        // items whose last token's logits are sampled
  std::vector<size_t> sample_rows;  // their rows of `logits`
  struct Scored {
    Seq* s;
    int32_t pos;  // the prompt position whose logits score token pos + 1
    size_t row;
  };
  std::vector<Scored> scored;  // Request::prompt_logprobs rows
  int32_t tokens_sampled = 0;
  model::StepBatch batch;
  std::vector<float> logits;
  // One sequence's next token, drawn from its logits row (a forked sample's: a copy).
  struct Draw {
    Seq* s;
    float* row;
    int32_t token = -1;
    std::string error;  // the sampler refused the row
  };
  std::vector<Draw> draws;
  std::vector<float> fork_rows;  // the prompt's logits, once per sample forked this step

  Impl(const LoadedModel& m, ThreadPool& p, const EngineOptions& o) : lm(m), pool(p), opt(o) {}

  void configure();
  void take_incoming();
  void finish(Seq& s, const std::string& reason, Output out, const std::string& error = "");
  void free_blocks(Seq& s);
  void preempt(Seq& s);
  bool admit_prefix(Seq& s);
  bool grow(Seq& s, int32_t num_tokens);
  std::vector<std::unique_ptr<Seq>> fork(Seq& parent, int32_t seats);
  bool emit_draw(const Draw& d, Clock::time_point now);
  void calibrate();
  bool step();
  bool schedule();
  int32_t build_batch();
  void process_outputs();
  void emit_token(Seq& s, int32_t token, Output& out, bool& done, std::string& reason,
                  std::string& error);
  void publish_stats();
  void end_all();
};

void Engine::Impl::configure() {
  const model::ModelConfig& c = lm.model->config();
  vocab = c.vocab_size;
  if (opt.page_size < 1 || opt.page_size > 256)
    throw EngineConfigError("--page-size must be in [1, 256], got " +
                            std::to_string(opt.page_size));
  if (opt.max_num_seqs < 1)
    throw EngineConfigError("--max-num-seqs must be at least 1, got " +
                            std::to_string(opt.max_num_seqs));
  if (opt.max_batched_tokens < 1)
    throw EngineConfigError("--max-batched-tokens must be at least 1, got " +
                            std::to_string(opt.max_batched_tokens));
  if (opt.max_waiting < 0) throw EngineConfigError("--max-queue must not be negative");
  budget.bytes_per_token =
      static_cast<int64_t>(model::KvCacheSet::bytes_per_token(c, opt.kv_dtype));
  const int64_t block_bytes = budget.bytes_per_token * opt.page_size;
  const int64_t nblocks = opt.kv_memory_bytes / block_bytes;
  if (nblocks < 2)
    throw EngineConfigError("--kv-memory " + std::to_string(opt.kv_memory_bytes) + " bytes holds " +
                            std::to_string(nblocks) + " KV blocks of " +
                            std::to_string(block_bytes) + " bytes; raise --kv-memory");
  if (nblocks > std::numeric_limits<int32_t>::max() / 2)
    throw EngineConfigError("--kv-memory is too large");
  budget.blocks = static_cast<int32_t>(nblocks);
  budget.tokens = nblocks * opt.page_size;
  // The longest request must fit in the pool on its own, or it could never run.
  if (opt.max_model_len > 0) {
    if (opt.max_model_len > c.context_length)
      throw EngineConfigError("--max-model-len " + std::to_string(opt.max_model_len) +
                              " exceeds the model's context length " +
                              std::to_string(c.context_length));
    if (opt.max_model_len > budget.tokens)
      throw EngineConfigError("--max-model-len " + std::to_string(opt.max_model_len) +
                              " needs more KV than --kv-memory holds (" +
                              std::to_string(budget.tokens) +
                              " tokens): raise --kv-memory or lower --max-model-len");
    budget.max_model_len = opt.max_model_len;
  } else {
    budget.max_model_len = static_cast<int32_t>(std::min<int64_t>(c.context_length, budget.tokens));
  }
  budget.max_concurrency_at_full_length =
      static_cast<double>(budget.tokens) / static_cast<double>(budget.max_model_len);
  cache = std::make_unique<model::KvCacheSet>(c, budget.blocks, opt.page_size, opt.kv_dtype);
  blocks = std::make_unique<BlockPool>(budget.blocks, opt.page_size, opt.prefix_caching);
  forward = std::make_unique<model::Forward>(*lm.model, pool);
  stats.time_to_first_token = make_histogram();
  stats.inter_token_latency = make_histogram();
  stats.e2e_latency = make_histogram();
  stats.step_time = make_histogram();
  stats.kv_blocks_total = budget.blocks;
  if (!(opt.itl_target_ms >= 0.0) || !std::isfinite(opt.itl_target_ms))
    throw EngineConfigError("--itl-target-ms must be a non-negative number of milliseconds");
  if (!(opt.prefill_backlog_ms >= 0.0) || !std::isfinite(opt.prefill_backlog_ms))
    throw EngineConfigError("--prefill-backlog-ms must be a non-negative number of milliseconds");
  if (opt.min_prefill_chunk < 1)
    throw EngineConfigError("--min-prefill-chunk must be at least 1, got " +
                            std::to_string(opt.min_prefill_chunk));
  StepBudgetOptions bo;
  bo.max_step_tokens = opt.max_batched_tokens;
  bo.itl_target_s = opt.itl_target_ms * 1e-3;
  bo.min_prefill_chunk = opt.min_prefill_chunk;
  bo.prefill_backlog_s = opt.prefill_backlog_ms * 1e-3;
  step_budget = std::make_unique<StepBudget>(bo);
  if (opt.calibrate) calibrate();
  const auto& coef = step_budget->cost().coefficients();
  std::copy(coef.begin(), coef.end(), stats.step_cost);
}

// Measures the step cost model on synthetic steps (decodes, prefills, a mix) before any
// request arrives, on blocks borrowed from the pool and given back: their contents are
// never read by a request (a block's slots are written before they are attended to).
void Engine::Impl::calibrate() {
  const int32_t ps = opt.page_size;
  struct Part {
    int32_t q, kv;
  };
  auto run = [&](const std::vector<Part>& parts, bool observe) {
    model::StepBatch b;
    b.cu_q_lens.assign(1, 0);
    int32_t pages = 1;
    for (const Part& p : parts) pages = std::max(pages, (p.kv + ps - 1) / ps);
    int32_t need = 0;
    for (const Part& p : parts) need += (p.kv + ps - 1) / ps;
    int32_t tokens = 0;
    for (const Part& p : parts) tokens += p.q;
    if (need > blocks->num_free() || tokens > opt.max_batched_tokens) return;
    std::vector<int32_t> borrowed;
    StepShape shape;
    for (const Part& p : parts) {
      for (int32_t i = 0; i < p.q; ++i) b.tokens.push_back((i * 7919 + p.kv) % vocab);
      b.cu_q_lens.push_back(static_cast<int32_t>(b.tokens.size()));
      b.kv_lens.push_back(p.kv);
      const size_t first = borrowed.size();
      for (int32_t k = 0; k < (p.kv + ps - 1) / ps; ++k) borrowed.push_back(blocks->allocate());
      for (int32_t k = 0; k < pages; ++k)
        b.page_indices.push_back(
            borrowed[first + std::min<size_t>(k, borrowed.size() - first - 1)]);
      b.logit_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
      if (p.q == 1) ++b.distribution[0];
      if (p.q == 1 || p.q == p.kv) ++b.distribution[1];
      shape.add(p.q, p.kv, true);
    }
    b.pages_per_seq = pages;
    b.distribution[2] = static_cast<int32_t>(parts.size());
    std::vector<float> out(b.logit_rows.size() * static_cast<size_t>(vocab));
    const auto t0 = Clock::now();
    forward->run(b, *cache, out.data());
    const double dt = seconds_between(t0, Clock::now());
    for (int32_t id : borrowed) blocks->release(id);
    if (observe) step_budget->cost().calibrate(shape, dt);
  };
  const std::vector<Part> d4(4, Part{1, 64}), d16(16, Part{1, 64});
  std::vector<Part> mixed(8, Part{1, 64});
  mixed.push_back({32, 32});
  run({{16, 16}}, false);  // first touch of the weights, not measured
  run({{48, 48}}, true);
  run({{64, 64}, {64, 64}}, true);
  run(d4, true);
  run(d16, true);
  run(mixed, true);
  run({{32, 96}}, true);
}

Engine::Engine(const LoadedModel& model, ThreadPool& pool, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(model, pool, options)) {
  impl_->configure();
}

Engine::~Engine() { stop(); }

const KvBudget& Engine::kv_budget() const { return impl_->budget; }
int32_t Engine::max_model_len() const { return impl_->budget.max_model_len; }
const LoadedModel& Engine::model() const { return impl_->lm; }
const EngineOptions& Engine::options() const { return impl_->opt; }

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  return impl_->stats;
}

uint64_t Engine::submit(Request r, OutputCallback on_output) {
  Impl& m = *impl_;
  const int32_t n = static_cast<int32_t>(r.prompt.size());
  if (n == 0) throw RequestError("the prompt is empty");
  if (r.max_tokens < 1)
    throw RequestError("max_tokens must be at least 1, got " + std::to_string(r.max_tokens));
  if (static_cast<int64_t>(n) + r.max_tokens > m.budget.max_model_len)
    throw RequestError("this model's maximum context length is " +
                       std::to_string(m.budget.max_model_len) + " tokens; the prompt has " +
                       std::to_string(n) + " tokens and max_tokens is " +
                       std::to_string(r.max_tokens) + " (" +
                       std::to_string(static_cast<int64_t>(n) + r.max_tokens) + " in total)");
  for (int32_t id : r.prompt)
    if (id < 0 || id >= m.vocab)
      throw RequestError("prompt token id " + std::to_string(id) + " is out of range [0, " +
                         std::to_string(m.vocab) + ")");
  if (r.logprobs > 20)
    throw RequestError("logprobs must be at most 20, got " + std::to_string(r.logprobs));
  if (r.prompt_logprobs > 20)
    throw RequestError("prompt_logprobs must be at most 20, got " +
                       std::to_string(r.prompt_logprobs));
  for (const std::string& s : r.stop)
    if (s.empty()) throw RequestError("stop strings must not be empty");
  if (r.n < 1 || r.n > kMaxSamples)
    throw RequestError("n must be in [1, " + std::to_string(kMaxSamples) + "], got " +
                       std::to_string(r.n));
  if (!r.seeds.empty() && static_cast<int32_t>(r.seeds.size()) != r.n)
    throw RequestError("seeds must hold one seed per sample: n is " + std::to_string(r.n) +
                       ", got " + std::to_string(r.seeds.size()) + " seeds");
  if (!r.seeds.empty()) r.sampling.seed = r.seeds[0];
  try {
    r.sampling.validate();
  } catch (const std::invalid_argument& e) {
    throw RequestError(e.what());
  }

  auto s = std::make_unique<Seq>();
  s->tokens = r.prompt;
  s->num_prompt = n;
  s->unforked = r.n - 1;
  s->group = std::make_shared<SampleGroup>();
  s->group->open = r.n;
  s->sampler = std::make_unique<Sampler>(r.sampling);
  if (r.grammar) s->matcher = std::make_unique<JsonMatcher>(r.grammar);
  s->detok = std::make_unique<model::StreamingDetokenizer>(*m.lm.tokenizer);
  s->req = std::move(r);
  s->on_output = std::move(on_output);
  s->arrival = Clock::now();
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    if (m.stopping) throw QueueFullError("the engine is shutting down");
    int32_t queued;
    {
      std::lock_guard<std::mutex> slock(m.stats_mu);
      queued = m.stats.waiting;
    }
    queued += static_cast<int32_t>(m.incoming.size());
    if (queued >= m.opt.max_waiting)
      throw QueueFullError("the request queue is full (" + std::to_string(queued) +
                           " waiting, --max-queue " + std::to_string(m.opt.max_waiting) +
                           "); try again later");
    id = s->id = m.next_id++;
    m.incoming.push_back(std::move(s));
  }
  m.cv.notify_all();
  return id;
}

std::shared_ptr<RequestStream> Engine::submit_stream(Request request) {
  auto stream = std::make_shared<RequestStream>();
  // The stream is created before the id is known; the engine only pushes to it.
  stream->id_ = submit(std::move(request), [stream](const Output& o) { stream->push(o); });
  return stream;
}

void Engine::cancel(uint64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->cancels.insert(request_id);
  }
  impl_->cv.notify_all();
}

void Engine::Impl::free_blocks(Seq& s) {
  // Last blocks first: they go to the back of the free list behind the prefix blocks, so the
  // prefix (the part other requests can share) is evicted last.
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) blocks->release(*it);
  s.blocks.clear();
  s.block_hashes.clear();
  s.num_computed = 0;
}

void Engine::Impl::finish(Seq& s, const std::string& reason, Output out, const std::string& error) {
  free_blocks(s);
  out.request_id = s.id;
  out.index = s.index;
  out.finished = true;
  out.finish_reason = reason;
  out.error = error;
  out.prompt_tokens = s.num_prompt;
  out.completion_tokens = s.generated();
  out.cached_tokens = std::max(0, s.cached_tokens);
  // Samples never forked off (the request ended before its prompt was done) end with it.
  std::vector<Output> unforked;
  for (int32_t i = 1; i <= s.unforked; ++i) {
    Output o = out;
    o.index = s.index + i;
    o.tokens.clear();
    o.text.clear();
    o.logprobs.clear();
    o.top_logprobs.clear();
    o.completion_tokens = 0;
    unforked.push_back(std::move(o));
  }
  s.group->open -= 1 + s.unforked;
  s.unforked = 0;
  if (s.group->open == 0) {
    std::lock_guard<std::mutex> lock(stats_mu);
    ++stats.requests_finished;
    if (reason == "cancelled") ++stats.requests_cancelled;
    stats.e2e_latency.observe(seconds_between(s.arrival, Clock::now()));
  }
  if (s.on_output) {
    s.on_output(out);
    for (const Output& o : unforked) s.on_output(o);
  }
}

void Engine::Impl::preempt(Seq& s) {
  // Recompute later: the generated tokens stay part of the sequence, so the request resumes
  // exactly where it was (its sampler state is kept too).
  free_blocks(s);
  std::lock_guard<std::mutex> lock(stats_mu);
  ++stats.preemptions;
  std::fprintf(stderr,
               "engine: KV blocks exhausted, preempted request %llu sample %d (%zu tokens) "
               "for recompute; preemptions so far: %lld\n",
               static_cast<unsigned long long>(s.id), s.index, s.tokens.size(),
               static_cast<long long>(stats.preemptions));
}

void Engine::Impl::take_incoming() {
  std::unordered_set<uint64_t> cancel_now;
  {
    std::lock_guard<std::mutex> lock(mu);
    while (!incoming.empty()) {
      waiting.push_back(std::move(incoming.front()));
      incoming.pop_front();
    }
    cancel_now.swap(cancels);
  }
  if (cancel_now.empty()) return;
  auto drop = [&](auto& list) {
    for (auto it = list.begin(); it != list.end();) {
      if (cancel_now.count((*it)->id)) {
        finish(**it, "cancelled", Output{});
        it = list.erase(it);
      } else {
        ++it;
      }
    }
  };
  drop(waiting);
  drop(running);
}

// Takes the longest cached prefix of full blocks. The last prompt token is always computed,
// since its logits are needed.
bool Engine::Impl::admit_prefix(Seq& s) {
  const int32_t ps = opt.page_size;
  const int32_t max_blocks = (static_cast<int32_t>(s.tokens.size()) - 1) / ps;
  uint64_t parent = 0;
  for (int32_t b = 0; b < max_blocks; ++b) {
    std::span<const int32_t> toks(s.tokens.data() + static_cast<size_t>(b) * ps, ps);
    const uint64_t h = BlockPool::hash_block(parent, toks);
    const int32_t id = blocks->acquire_cached(h, parent, toks);
    if (id < 0) break;
    s.blocks.push_back(id);
    s.block_hashes.push_back(h);
    parent = h;
  }
  s.num_computed = static_cast<int32_t>(s.blocks.size()) * ps;
  return !s.blocks.empty();
}

// Makes room for `num_tokens` more tokens; false (nothing allocated) when the pool is short.
bool Engine::Impl::grow(Seq& s, int32_t num_tokens) {
  const int32_t ps = opt.page_size;
  const int32_t need =
      (s.num_computed + num_tokens + ps - 1) / ps - static_cast<int32_t>(s.blocks.size());
  if (need <= 0) return true;
  if (need > blocks->num_free()) return false;
  for (int32_t i = 0; i < need; ++i) s.blocks.push_back(blocks->allocate());
  return true;
}

// The extra samples of `parent`, whose prompt was just prefilled: each shares the prompt's
// full blocks and gets its own copy of the partly filled last one. Up to `seats` of them
// start running; the others (and all of them when the pool has no block for the copy) wait
// with no blocks, to be recomputed, and find the prompt blocks in the prefix cache.
std::vector<std::unique_ptr<Seq>> Engine::Impl::fork(Seq& parent, int32_t seats) {
  const int32_t ps = opt.page_size;
  const int32_t full = parent.num_prompt / ps, tail = parent.num_prompt % ps;
  std::vector<std::unique_ptr<Seq>> children;
  for (int32_t i = 1; i <= parent.unforked; ++i) {
    auto c = std::make_unique<Seq>();
    c->id = parent.id;
    c->index = parent.index + i;
    c->group = parent.group;
    c->req = parent.req;
    c->req.prompt_logprobs = -1;  // sample 0 carries the prompt's scores
    c->req.sampling.seed =
        parent.req.seeds.empty() ? parent.req.sampling.seed + c->index : parent.req.seeds[c->index];
    c->on_output = parent.on_output;
    c->tokens = parent.tokens;
    c->num_prompt = parent.num_prompt;
    c->cached_tokens = parent.cached_tokens;
    c->sampler = std::make_unique<Sampler>(c->req.sampling);
    if (c->req.grammar) c->matcher = std::make_unique<JsonMatcher>(c->req.grammar);
    c->detok = std::make_unique<model::StreamingDetokenizer>(*lm.tokenizer);
    c->arrival = parent.arrival;
    if (seats > 0 && (tail == 0 || blocks->num_free() > 0)) {
      --seats;
      for (int32_t b = 0; b < full; ++b) {
        blocks->share(parent.blocks[b]);
        c->blocks.push_back(parent.blocks[b]);
      }
      c->block_hashes.assign(parent.block_hashes.begin(), parent.block_hashes.begin() + full);
      if (tail > 0) {
        const int32_t copy = blocks->allocate();
        cache->copy_page(parent.blocks[full], copy, tail);
        c->blocks.push_back(copy);
      }
      c->num_computed = parent.num_prompt;
    }
    children.push_back(std::move(c));
  }
  {
    std::lock_guard<std::mutex> lock(stats_mu);
    stats.samples_forked += parent.unforked;
  }
  parent.unforked = 0;
  return children;
}

void Engine::Impl::emit_token(Seq& s, int32_t token, Output& out, bool& done, std::string& reason,
                              std::string& error) {
  const Request& r = s.req;
  s.tokens.push_back(token);
  out.tokens.push_back(token);
  if (r.logprobs >= 0) {
    out.logprobs.push_back(s.sampler->logprob(token));
    std::vector<TopLogprob> top;
    if (r.logprobs > 0)
      for (const auto& [t, lp] : s.sampler->top_logprobs(r.logprobs)) top.push_back({t, lp});
    out.top_logprobs.push_back(std::move(top));
  }
  bool grammar_done = false;
  if (s.matcher) {
    // The mask only lets through tokens the grammar accepts; a refusal means every token was
    // masked (the model has nothing left to say that fits), which we report, not hide.
    if (!s.matcher->accept(token)) {
      done = true;
      reason = "error";
      error = "constrained decoding reached a state no token can continue";
      return;
    }
    grammar_done = s.matcher->complete();
  }
  if (!r.ignore_eos && lm.is_stop(token)) {
    done = true;
    reason = "stop";
  } else {
    std::string text = s.held + s.detok->push(token);
    s.held.clear();
    size_t cut = std::string::npos;
    for (const std::string& stop : r.stop) cut = std::min(cut, text.find(stop));
    if (cut != std::string::npos) {
      out.text += text.substr(0, cut);
      done = true;
      reason = "stop";
      return;
    }
    const size_t keep = held_suffix(text, r.stop);
    out.text += text.substr(0, text.size() - keep);
    s.held = text.substr(text.size() - keep);
    if (grammar_done) {
      done = true;
      reason = "stop";
    }
  }
  if (!done && (s.generated() >= r.max_tokens ||
                static_cast<int32_t>(s.tokens.size()) >= budget.max_model_len)) {
    done = true;
    reason = "length";
  }
  if (done) {
    // Text held back as a possible stop-string start turned out to be part of the answer.
    out.text += s.held + s.detok->finish();
    s.held.clear();
  }
}

bool Engine::Impl::step() {
  take_incoming();
  if (running.empty() && waiting.empty()) {
    publish_stats();  // a cancellation may have just emptied the engine
    return false;
  }
  const auto t0 = Clock::now();
  if (!schedule()) {
    // Nothing fits even alone: cannot happen, as submit() bounds a request by max_model_len,
    // which the pool holds; guard against a livelock anyway.
    for (auto& s : waiting) finish(*s, "error", Output{}, "the request does not fit the KV pool");
    waiting.clear();
    publish_stats();
    return true;
  }
  const int32_t prompt_tokens = build_batch();
  logits.resize(batch.logit_rows.size() * static_cast<size_t>(vocab));
  try {
    forward->run(batch, *cache, logits.data());
  } catch (const std::exception& e) {
    // A failure inside the model is not the requests' fault, but they cannot go on.
    const std::string what = e.what();
    for (auto& s : running) finish(*s, "error", Output{}, what);
    running.clear();
    publish_stats();
    return true;
  }
  process_outputs();
  const double seconds = seconds_between(t0, Clock::now());
  step_budget->observe(seconds);
  {
    std::lock_guard<std::mutex> lock(stats_mu);
    ++stats.steps;
    stats.prompt_tokens += prompt_tokens;
    stats.generation_tokens += tokens_sampled;
    stats.step_time.observe(seconds);
    const auto& c = step_budget->cost().coefficients();
    std::copy(c.begin(), c.end(), stats.step_cost);
  }
  publish_stats();
  return true;
}

// 1. Which sequences run this step and how many tokens each computes (engine/step_budget.h
// has the policy): decodes first in admission order, preempting the most recently admitted
// request when the pool runs dry; then running prompts' next chunks; then waiting requests.
// False when nothing could be scheduled.
bool Engine::Impl::schedule() {
  items.clear();
  StepBudget& budget = *step_budget;
  // The requests present and the prompt tokens they still need, as far as max_num_seqs
  // lets them run.
  int32_t present = 0;
  int64_t backlog = 0;
  auto count = [&](const auto& list) {
    for (size_t i = 0; i < list.size() && present < opt.max_num_seqs; ++i, ++present)
      backlog += std::max(0, list[i]->num_prompt - list[i]->num_computed);
  };
  count(running);
  count(waiting);
  budget.begin(backlog);
  for (auto& s : running) s->scheduled = false;
  bool preempted = false;
  // Frees the last running request's blocks and requeues it first; false when that was `self`.
  auto preempt_last = [&](const Seq& self) {
    std::unique_ptr<Seq> victim = std::move(running.back());
    running.pop_back();
    preempt(*victim);
    const bool was_self = victim.get() == &self;
    waiting.push_front(std::move(victim));
    preempted = true;
    return !was_self;
  };
  auto take = [&](Seq& s, int32_t n) {
    items.push_back({&s, n});
    s.scheduled = true;
  };

  for (size_t i = 0; i < running.size() && budget.tokens_left() > 0; ++i) {
    Seq& s = *running[i];
    if (s.pending() != 1) continue;
    bool fits = true;
    while (fits && !grow(s, 1)) fits = preempt_last(s);
    if (!fits) break;
    budget.decode(s.num_computed + 1);
    take(s, 1);
  }
  for (size_t i = 0; i < running.size(); ++i) {
    Seq& s = *running[i];
    if (s.scheduled || s.pending() == 1) continue;
    const int32_t n = budget.prefill_chunk(s.num_computed, s.pending());
    if (n == 0) break;
    // Room is made only from requests not in this step (never from a decode already in it).
    bool fits = true;
    while (fits && !grow(s, n))
      fits = running.back().get() != &s && !running.back()->scheduled && preempt_last(s);
    if (!fits) break;
    budget.prefill(s.num_computed, n, n == s.pending());
    take(s, n);
  }
  while (!preempted && !waiting.empty() &&
         static_cast<int32_t>(running.size()) < opt.max_num_seqs) {
    Seq& s = *waiting.front();
    bool hit = false;
    if (s.num_computed == 0 && opt.prefix_caching && s.req.prompt_logprobs < 0)
      hit = admit_prefix(s);
    const int32_t n = budget.prefill_chunk(s.num_computed, s.pending());
    if (n == 0 || !grow(s, n)) {
      if (hit) free_blocks(s);
      break;
    }
    if (s.cached_tokens < 0) {
      s.cached_tokens = s.num_computed;
      std::lock_guard<std::mutex> lock(stats_mu);
      stats.prefix_query_tokens += s.num_prompt;
      stats.prefix_hit_tokens += s.num_computed;
    }
    budget.prefill(s.num_computed, n, n == s.pending());
    take(s, n);
    running.push_back(std::move(waiting.front()));
    waiting.pop_front();
  }
  return !items.empty();
}

// 2. The batch, sorted decode | prefill | mixed as rpa wants. Returns the prompt tokens in it.
int32_t Engine::Impl::build_batch() {
  auto kind = [](const Item& it) {
    if (it.n == 1) return 0;
    return it.s->num_computed == 0 ? 1 : 2;
  };
  std::stable_sort(items.begin(), items.end(),
                   [&](const Item& a, const Item& b) { return kind(a) < kind(b); });
  model::StepBatch& b = batch;
  b.tokens.clear();
  b.cu_q_lens.assign(1, 0);
  b.kv_lens.clear();
  b.page_indices.clear();
  b.logit_rows.clear();
  b.distribution[0] = b.distribution[1] = 0;
  int32_t pages = 1;
  for (const Item& it : items)
    pages = std::max<int32_t>(pages, static_cast<int32_t>(it.s->blocks.size()));
  b.pages_per_seq = pages;
  sampled.clear();
  sample_rows.clear();
  scored.clear();
  int32_t prompt_tokens = 0;
  for (const Item& it : items) {
    Seq& s = *it.s;
    const int32_t base = static_cast<int32_t>(b.tokens.size()) - s.num_computed;
    b.tokens.insert(b.tokens.end(), s.tokens.begin() + s.num_computed,
                    s.tokens.begin() + s.num_computed + it.n);
    if (s.req.prompt_logprobs >= 0 && !s.got_first_token) {
      // Every prompt position but the last (whose logits are sampled) scores the next
      // token; positions scored before a preemption are not scored twice.
      const int32_t end = std::min(s.num_computed + it.n, s.num_prompt - 1);
      for (int32_t p = std::max(s.num_computed, static_cast<int32_t>(s.prompt_lp.size())); p < end;
           ++p) {
        scored.push_back({&s, p, b.logit_rows.size()});
        b.logit_rows.push_back(base + p);
      }
    }
    b.cu_q_lens.push_back(static_cast<int32_t>(b.tokens.size()));
    b.kv_lens.push_back(s.num_computed + it.n);
    for (int32_t p = 0; p < pages; ++p)
      b.page_indices.push_back(p < static_cast<int32_t>(s.blocks.size()) ? s.blocks[p]
                                                                         : s.blocks[0]);
    const int k = kind(it);
    if (k == 0) ++b.distribution[0];
    if (k <= 1) ++b.distribution[1];
    if (s.num_computed + it.n == static_cast<int32_t>(s.tokens.size())) {
      sample_rows.push_back(b.logit_rows.size());
      b.logit_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
      sampled.push_back(&s);
    }
    if (s.num_computed < s.num_prompt)
      prompt_tokens += std::min(s.num_prompt, s.num_computed + it.n) - s.num_computed;
  }
  b.distribution[2] = static_cast<int32_t>(items.size());
  return prompt_tokens;
}

// 3. After the forward pass: computed tokens and newly full blocks into the prefix cache,
// then sample, emit and finish.
void Engine::Impl::process_outputs() {
  const int32_t ps = opt.page_size;
  for (const Item& it : items) {
    Seq& s = *it.s;
    s.num_computed += it.n;
    const int32_t full = s.num_computed / ps;
    for (int32_t blk = static_cast<int32_t>(s.block_hashes.size()); blk < full; ++blk) {
      const uint64_t parent = blk == 0 ? 0 : s.block_hashes[blk - 1];
      std::span<const int32_t> toks(s.tokens.data() + static_cast<size_t>(blk) * ps, ps);
      const uint64_t h = BlockPool::hash_block(parent, toks);
      blocks->register_full(s.blocks[blk], h, parent, toks);
      s.block_hashes.push_back(h);
    }
  }

  for (const Scored& sc : scored) {
    std::span<const float> row(logits.data() + sc.row * static_cast<size_t>(vocab), vocab);
    const float lse = log_sum_exp(row);
    Seq& s = *sc.s;
    s.prompt_lp.push_back(row[s.tokens[sc.pos + 1]] - lse);
    if (s.req.prompt_logprobs > 0) {
      std::vector<TopLogprob> top;
      for (const auto& [t, l] : top_logits(row, s.req.prompt_logprobs)) top.push_back({t, l - lse});
      s.prompt_top.push_back(std::move(top));
    }
  }

  // Forks first: every sample of a prompt prefilled this step draws its first token from the
  // prompt's logits as they came out of the model (masking and sampling rewrite a row in
  // place, so each forked sample gets its own copy).
  size_t extra = 0;
  for (const Seq* s : sampled) extra += static_cast<size_t>(s->unforked);
  fork_rows.resize(extra * static_cast<size_t>(vocab));
  draws.clear();
  std::vector<std::unique_ptr<Seq>> forked;
  int32_t seated = 0;  // forked samples given a seat this step
  size_t next_copy = 0;
  for (size_t i = 0; i < sampled.size(); ++i) {
    Seq& s = *sampled[i];
    float* row = logits.data() + sample_rows[i] * static_cast<size_t>(vocab);
    draws.push_back({&s, row, -1, {}});
    if (s.unforked == 0) continue;
    const int32_t seats = opt.max_num_seqs - static_cast<int32_t>(running.size()) - seated;
    for (auto& c : fork(s, seats)) {
      float* copy = fork_rows.data() + next_copy++ * static_cast<size_t>(vocab);
      std::copy(row, row + vocab, copy);
      if (!c->blocks.empty()) ++seated;
      draws.push_back({c.get(), copy, -1, {}});
      forked.push_back(std::move(c));
    }
  }
  // The draws are independent (each sequence has its own row, grammar matcher and sampler),
  // so they run on the thread pool: a pass over the vocabulary each, which at n samples
  // would otherwise be n passes on this thread.
  pool.parallel_for(static_cast<int64_t>(draws.size()), [&](int64_t k, int) {
    Draw& d = draws[static_cast<size_t>(k)];
    std::span<float> row(d.row, static_cast<size_t>(vocab));
    try {
      if (d.s->matcher) d.s->matcher->mask_logits(row);
      d.token = d.s->sampler->sample(row, d.s->tokens);
    } catch (const std::exception& e) {
      d.error = e.what();
    }
  });
  // Then in order: tokens emitted, outputs sent, finished sequences ended.
  const auto now = Clock::now();
  tokens_sampled = 0;
  std::unordered_set<Seq*> ended;
  for (const Draw& d : draws)
    if (!emit_draw(d, now)) ended.insert(d.s);
  if (!ended.empty())
    running.erase(
        std::remove_if(running.begin(), running.end(),
                       [&](const std::unique_ptr<Seq>& s) { return ended.count(s.get()) > 0; }),
        running.end());
  std::vector<std::unique_ptr<Seq>> forked_waiting;
  for (auto& c : forked) {
    if (ended.count(c.get())) continue;  // finished on its first token
    if (c->blocks.empty())
      forked_waiting.push_back(std::move(c));
    else
      running.push_back(std::move(c));
  }
  // Samples with no seat wait first in line, in index order, like preempted sequences.
  waiting.insert(waiting.begin(), std::make_move_iterator(forked_waiting.begin()),
                 std::make_move_iterator(forked_waiting.end()));
  // A fork of many samples copies a row each: do not keep that much memory for later steps.
  if (fork_rows.capacity() > 8 * static_cast<size_t>(vocab)) std::vector<float>().swap(fork_rows);
}

// Emits the token `d` drew for its sequence. False when the sequence finished (its last
// Output is sent and its blocks are freed).
bool Engine::Impl::emit_draw(const Draw& d, Clock::time_point now) {
  Seq& s = *d.s;
  Output out;
  out.request_id = s.id;
  out.index = s.index;
  if (!d.error.empty()) {
    // This sequence cannot go on (NaN logits from a broken model, ...); the others can.
    finish(s, "error", std::move(out), d.error);
    return false;
  }
  const int32_t token = d.token;
  ++tokens_sampled;
  bool done = false;
  std::string reason, error;
  emit_token(s, token, out, done, reason, error);
  {
    // The time to first token is the request's (sample 0); the other samples' first
    // tokens come in the same step.
    std::lock_guard<std::mutex> lock(stats_mu);
    if (s.got_first_token)
      stats.inter_token_latency.observe(seconds_between(s.last_token, now));
    else if (s.index == 0)
      stats.time_to_first_token.observe(seconds_between(s.arrival, now));
  }
  s.got_first_token = true;
  s.last_token = now;
  out.prompt_tokens = s.num_prompt;
  out.completion_tokens = s.generated();
  out.cached_tokens = std::max(0, s.cached_tokens);
  if (s.req.prompt_logprobs >= 0 && out.completion_tokens == 1) {
    out.prompt_logprobs = std::move(s.prompt_lp);
    out.prompt_top_logprobs = std::move(s.prompt_top);
  }
  if (done) {
    finish(s, reason, std::move(out), error);
    return false;
  }
  if (s.on_output) s.on_output(out);
  return true;
}

void Engine::Impl::publish_stats() {
  std::lock_guard<std::mutex> lock(stats_mu);
  stats.running = static_cast<int32_t>(running.size());
  stats.waiting = static_cast<int32_t>(waiting.size());
  stats.kv_blocks_used = blocks->num_used();
  stats.kv_blocks_cached = blocks->num_cached_free();
  stats.kv_blocks_shared = blocks->num_shared();
}

bool Engine::step() {
  if (impl_->started) throw std::logic_error("Engine::step() while the loop runs");
  return impl_->step();
}

void Engine::run_until_idle() {
  while (step()) {
  }
}

void Engine::start() {
  Impl& m = *impl_;
  if (m.started.exchange(true)) return;
  m.loop = std::thread([&m] {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(m.mu);
        m.cv.wait(lock, [&] {
          return m.stopping || !m.incoming.empty() || !m.cancels.empty() || !m.running.empty() ||
                 !m.waiting.empty();
        });
        if (m.stopping) break;
      }
      m.step();
    }
    m.end_all();
  });
}

// Shutting down: every open request ends "cancelled".
void Engine::Impl::end_all() {
  take_incoming();
  for (auto& s : waiting) finish(*s, "cancelled", Output{});
  for (auto& s : running) finish(*s, "cancelled", Output{});
  waiting.clear();
  running.clear();
  publish_stats();
}

void Engine::stop() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.mu);
    m.stopping = true;
  }
  m.cv.notify_all();
  if (m.loop.joinable())
    m.loop.join();
  else
    m.end_all();  // never started (stepped by hand, or not at all): end what is queued here
  m.started = false;
}

}  // namespace kdr::engine
