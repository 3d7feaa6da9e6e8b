// GET /metrics: the engine's counters and latency histograms, and the server's responses by
// HTTP status, in Prometheus' text exposition format (version 0.0.4).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "engine/engine.h"

namespace kdr::server {

// Responses sent, by HTTP status code.
using StatusCounts = std::map<int, uint64_t>;

// The whole /metrics page: kdr_* metrics, then the vllm:* names that routers and autoscalers
// read, labelled model_name="<model_name>". Histograms become cumulative _bucket{le="..."}
// lines ending with le="+Inf", then _sum and _count.
std::string format_metrics(const engine::EngineStats& stats, const StatusCounts& http_responses,
                           const std::string& model_name);

// A number as Prometheus reads it: the shortest text that parses back to the same double.
std::string prometheus_number(double x);

}  // namespace kdr::server
