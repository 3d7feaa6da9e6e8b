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

class Page {
 public:
  void metric(const char* name, const char* type, const char* help, double value) {
    header(name, type, help);
    line(name, "", value);
  }

  void histogram(const char* name, const char* help, const engine::Histogram& h) {
    header(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += i < h.counts.size() ? h.counts[i] : 0;
      line(bucket, "{le=\"" + prometheus_number(h.bounds[i]) + "\"}",
           static_cast<double>(cumulative));
    }
    line(bucket, "{le=\"+Inf\"}", static_cast<double>(h.count));
    line(std::string(name) + "_sum", "", h.sum);
    line(std::string(name) + "_count", "", static_cast<double>(h.count));
  }

  void header(const char* name, const char* type, const char* help) {
    text_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }

  void line(const std::string& name, const std::string& labels, double value) {
    text_ += name + labels + " " + prometheus_number(value) + "\n";
  }

  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

}  // namespace

std::string format_metrics(const engine::EngineStats& s, const StatusCounts& http_responses) {
  Page p;
  p.metric("kdr_requests_running", "gauge", "Requests in the running batch.", s.running);
  p.metric("kdr_requests_waiting", "gauge", "Requests queued for admission.", s.waiting);
  p.metric("kdr_kv_blocks_total", "gauge", "KV cache blocks in the pool.", s.kv_blocks_total);
  p.metric("kdr_kv_blocks_used", "gauge", "KV cache blocks held by requests.", s.kv_blocks_used);
  p.metric("kdr_kv_blocks_cached", "gauge",
           "Free KV cache blocks that keep a reusable prefix (evictable).", s.kv_blocks_cached);
  p.metric("kdr_kv_usage_ratio", "gauge", "Fraction of KV cache blocks held by requests.",
           s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0.0);
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
  p.metric("kdr_requests_finished_total", "counter", "Requests ended, cancellations included.",
           static_cast<double>(s.requests_finished));
  p.metric("kdr_requests_cancelled_total", "counter",
           "Requests cancelled (client gone or server stopping).",
           static_cast<double>(s.requests_cancelled));
  p.histogram("kdr_time_to_first_token_seconds", "Time from arrival to the first token.",
              s.time_to_first_token);
  p.histogram("kdr_inter_token_latency_seconds", "Time between consecutive tokens.",
              s.inter_token_latency);
  p.histogram("kdr_e2e_request_latency_seconds", "Time from arrival to the last token.",
              s.e2e_latency);
  p.header("kdr_http_responses_total", "counter", "HTTP responses by status code.");
  for (const auto& [code, n] : http_responses)
    p.line("kdr_http_responses_total", "{code=\"" + std::to_string(code) + "\"}",
           static_cast<double>(n));
  return p.take();
}

}  // namespace kdr::server
