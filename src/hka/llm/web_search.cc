#include "hka/llm/web_search.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

namespace kdr::hka {

std::vector<WebResult> parse_searxng_results(const std::string& body, size_t max_results) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw WebSearchError(std::string("web search: the answer is not JSON: ") + e.what());
  }
  if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_array()) {
    throw WebSearchError("web search: the answer has no \"results\" array");
  }
  std::vector<WebResult> out;
  for (const nlohmann::json& r : doc["results"]) {
    if (out.size() == max_results) break;
    if (!r.is_object()) continue;
    auto text = [&](const char* key) {
      return r.contains(key) && r[key].is_string() ? r[key].get<std::string>() : std::string();
    };
    WebResult w{text("title"), text("url"), text("content")};
    if (w.url.empty() || w.snippet.empty()) continue;  // nothing to cite or to read
    out.push_back(std::move(w));
  }
  return out;
}

namespace {

size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

}  // namespace

WebSearchFn make_searxng_search(const std::string& url, double timeout_s, size_t max_results) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  return [url, timeout_s, max_results](const std::string& query) {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) throw WebSearchError("web search: cannot start libcurl");
    std::unique_ptr<char, decltype(&curl_free)> q(
        curl_easy_escape(curl.get(), query.data(), static_cast<int>(query.size())), curl_free);
    const std::string full = url + (url.find('?') == std::string::npos ? "?" : "&") +
                             "format=json&q=" + (q ? q.get() : "");
    std::string body;
    curl_easy_setopt(curl.get(), CURLOPT_URL, full.c_str());
    curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_s * 1000));
    curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl.get(), CURLOPT_MAXFILESIZE, 8L << 20);
    const CURLcode rc = curl_easy_perform(curl.get());
    if (rc != CURLE_OK) {
      throw WebSearchError("web search " + url + ": " + curl_easy_strerror(rc));
    }
    long status = 0;
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
      throw WebSearchError("web search " + url + ": HTTP " + std::to_string(status));
    }
    return parse_searxng_results(body, max_results);
  };
}

}  // namespace kdr::hka
