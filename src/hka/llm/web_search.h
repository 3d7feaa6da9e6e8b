// Web search for the research agent, off unless a provider is configured. The pipeline sees a
// function from a query to results; `kdr research --web-search-url URL` makes one for a
// SearxNG instance (GET URL?q=QUERY&format=json), and tests pass their own.
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace kdr::hka {

class WebSearchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct WebResult {
  std::string title;
  std::string url;
  std::string snippet;  // the provider's text for the hit: the passage facts come from
};

// Throws WebSearchError when the provider cannot answer.
using WebSearchFn = std::function<std::vector<WebResult>(const std::string& query)>;

// The results of a SearxNG JSON answer ({"results": [{"title", "url", "content"}, ...]}), at
// most `max_results`. Throws WebSearchError naming what is wrong with the body.
std::vector<WebResult> parse_searxng_results(const std::string& body, size_t max_results);

// A provider for the SearxNG instance at `url` (its /search endpoint), over libcurl with a
// timeout.
WebSearchFn make_searxng_search(const std::string& url, double timeout_s = 20.0,
                                size_t max_results = 5);

}  // namespace kdr::hka
