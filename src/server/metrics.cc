#include "server/metrics.h"

#include <charconv>
#include <cmath>

namespace kdr::server {

std::string prometheus_number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "+Inf" : "-Inf";
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), x);
  return std::string(buf, r.ptr);
}

namespace {

// A label value as the exposition format wants it: backslash, quote and newline escaped.
std::string label_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Page {
 public:
  // `labels`: inner label text without braces ("" or `model_name="x"`).
  void metric(const std::string& name, const char* type, const char* help, double value,
              const std::string& labels = "") {
    header(name, type, help);
    line(name, braces(labels), value);
  }

  void histogram(const std::string& name, const char* help, const engine::Histogram& h,
                 const std::string& labels = "") {
    header(name, "histogram", help);
    const std::string bucket = name + "_bucket";
    const std::string pre = labels.empty() ? "" : labels + ",";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += i < h.counts.size() ? h.counts[i] : 0;
      line(bucket, "{" + pre + "le=\"" + prometheus_number(h.bounds[i]) + "\"}",
           static_cast<double>(cumulative));
    }
    line(bucket, "{" + pre + "le=\"+Inf\"}", static_cast<double>(h.count));
    line(name + "_sum", braces(labels), h.sum);
    line(name + "_count", braces(labels), static_cast<double>(h.count));
  }

  void header(const std::string& name, const char* type, const char* help) {
    text_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }

  void line(const std::string& name, const std::string& labels, double value) {
    text_ += name + labels + " " + prometheus_number(value) + "\n";
  }

  std::string take() { return std::move(text_); }

 private:
  static std::string braces(const std::string& labels) {
    return labels.empty() ? "" : "{" + labels + "}";
  }
  std::string text_;
};

}  // namespace

std::string format_metrics(const engine::EngineStats& s, const StatusCounts& http_responses,
                           const std::string& model_name) {
  Page p;
  const double kv_usage =
      s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0.0;
  p.metric("kdr_requests_running", "gauge", "Requests in the running batch.", s.running);
  p.metric("kdr_requests_waiting", "gauge", "Requests queued for admission.", s.waiting);
  p.metric("kdr_kv_blocks_total", "gauge", "KV cache blocks in the pool.", s.kv_blocks_total);
  p.metric("kdr_kv_blocks_used", "gauge", "KV cache blocks held by requests.", s.kv_blocks_used);
  p.metric("kdr_kv_blocks_cached", "gauge",
           "Free KV cache blocks that keep a reusable prefix (evictable).", s.kv_blocks_cached);
  p.metric("kdr_kv_blocks_shared", "gauge",
           "KV cache blocks held by more than one sequence (shared prefixes and the prompt "
           "blocks of parallel samples).",
           s.kv_blocks_shared);
  p.metric("kdr_kv_usage_ratio", "gauge", "Fraction of KV cache blocks held by requests.",
           kv_usage);
  p.metric("kdr_prefix_cache_query_tokens_total", "counter",
           "Prompt tokens looked up in the prefix cache.",
           static_cast<double>(s.prefix_query_tokens));
  p.metric("kdr_prefix_cache_hit_tokens_total", "counter",
           "Prompt tokens found in the prefix cache.", static_cast<double>(s.prefix_hit_tokens));
  p.metric("kdr_preemptions_total", "counter",
           "Requests preempted (KV blocks freed, recomputed later).",
           static_cast<double>(s.preemptions));
  p.metric("kdr_prompt_tokens_total", "counter",
           "Prompt tokens computed (prefix-cache hits excluded).",
           static_cast<double>(s.prompt_tokens));
  p.metric("kdr_generation_tokens_total", "counter", "Tokens generated.",
           static_cast<double>(s.generation_tokens));
  p.metric("kdr_samples_forked_total", "counter",
           "Extra samples (n > 1) forked off a prompt prefilled once.",
           static_cast<double>(s.samples_forked));
  p.metric("kdr_requests_finished_total", "counter", "Requests ended, cancellations included.",
           static_cast<double>(s.requests_finished));
  p.metric("kdr_requests_cancelled_total", "counter",
           "Requests cancelled (client gone or server stopping).",
           static_cast<double>(s.requests_cancelled));
  p.metric("kdr_steps_total", "counter", "Engine steps run.", static_cast<double>(s.steps));
  p.histogram("kdr_time_to_first_token_seconds", "Time from arrival to the first token.",
              s.time_to_first_token);
  p.histogram("kdr_inter_token_latency_seconds", "Time between consecutive tokens.",
              s.inter_token_latency);
  p.histogram("kdr_e2e_request_latency_seconds", "Time from arrival to the last token.",
              s.e2e_latency);
  p.histogram("kdr_step_seconds",
              "Wall time of an engine step (scheduling, forward pass, sampling, outputs).",
              s.step_time);
  p.header("kdr_step_cost_seconds", "gauge",
           "The step cost model: seconds per step (base), per token, per sampled row, per "
           "1000 attention pairs.");
  const char* terms[4] = {"base", "token", "row", "kilo_attention_pair"};
  for (int i = 0; i < 4; ++i)
    p.line("kdr_step_cost_seconds", std::string("{term=\"") + terms[i] + "\"}", s.step_cost[i]);
  p.header("kdr_http_responses_total", "counter", "HTTP responses by status code.");
  for (const auto& [code, n] : http_responses)
    p.line("kdr_http_responses_total", "{code=\"" + std::to_string(code) + "\"}",
           static_cast<double>(n));

  // The names vLLM exports, which routers and autoscalers read (vllm-router, sglang-router,
  // KEDA and HPA examples), labelled with the served model as vLLM does.
  const std::string model = "model_name=\"" + label_value(model_name) + "\"";
  p.metric("vllm:num_requests_running", "gauge", "Requests in the running batch.", s.running,
           model);
  p.metric("vllm:num_requests_waiting", "gauge", "Requests waiting to be scheduled.", s.waiting,
           model);
  p.metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage: 1 means 100 percent.", kv_usage,
           model);
  p.metric("vllm:prompt_tokens_total", "counter", "Prompt tokens processed.",
           static_cast<double>(s.prompt_tokens), model);
  p.metric("vllm:generation_tokens_total", "counter", "Generation tokens processed.",
           static_cast<double>(s.generation_tokens), model);
  p.metric("vllm:num_preemptions_total", "counter", "Cumulative number of preemptions.",
           static_cast<double>(s.preemptions), model);
  p.metric("vllm:prefix_cache_queries_total", "counter", "Prefix cache queries, in tokens.",
           static_cast<double>(s.prefix_query_tokens), model);
  p.metric("vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in tokens.",
           static_cast<double>(s.prefix_hit_tokens), model);
  p.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
              s.time_to_first_token, model);
  p.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
              s.inter_token_latency, model);
  p.histogram("vllm:e2e_request_latency_seconds",
              "Histogram of end to end request latency in seconds.", s.e2e_latency, model);
  return p.take();
}

}  // namespace kdr::server
