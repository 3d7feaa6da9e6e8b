// The unstructured-knowledge analyst: passages from the documents (FTS5) or the web, and the
// facts the extract model takes from them, each cited to its passage.
#include "hka/pipeline/run.h"
#include "hka/text.h"

namespace kdr::hka {

std::string Run::search_documents(Subtask& subtask, const std::string& query) {
  if (!docs_) return "no documents were given";
  const std::vector<ChunkHit> hits = docs_->search(query, 5);
  trace({{"type", "tool"},
         {"tool", "search_documents"},
         {"input", query},
         {"hits", [&] {
            json ids = json::array();
            for (const ChunkHit& h : hits) ids.push_back(h.chunk.id);
            return ids;
          }()}});
  std::vector<Passage> passages;
  for (const ChunkHit& h : hits) {
    passages.push_back(
        {"chunk:" + std::to_string(h.chunk.id), h.chunk.title,
         h.chunk.source_path + (h.chunk.location.empty() ? "" : ", " + h.chunk.location),
         h.chunk.text});
  }
  return extract_facts(subtask, query, passages, "D");
}

std::string Run::search_web(Subtask& subtask, const std::string& query) {
  std::vector<WebResult> results;
  try {
    results = o_.web_search(query);
  } catch (const WebSearchError& e) {
    trace({{"type", "tool"},
           {"tool", "web_search"},
           {"input", query},
           {"ok", false},
           {"error", e.what()}});
    return std::string("web search failed: ") + e.what();
  }
  json urls = json::array();
  for (const WebResult& r : results) urls.push_back(r.url);
  trace({{"type", "tool"}, {"tool", "web_search"}, {"input", query}, {"ok", true}, {"hits", urls}});
  std::vector<Passage> passages;
  for (const WebResult& r : results) {
    passages.push_back({"url:" + r.url, r.title.empty() ? r.url : r.title, r.url, r.snippet});
  }
  return extract_facts(subtask, query, passages, "W");
}

std::string Run::extract_facts(Subtask& subtask, const std::string& query,
                               const std::vector<Passage>& hits, const std::string& key_prefix) {
  if (hits.empty()) return "no passage matches";
  std::string passages;
  for (size_t i = 0; i < hits.size(); ++i) {
    passages += "[P" + std::to_string(i + 1) + "] " + hits[i].title + " (" + hits[i].location +
                ")\n" + text::truncate(hits[i].text, 1500) + "\n\n";
  }
  const ojson schema = prompts::extract_schema(hits.size());
  std::optional<json> answer =
      ask_json("extract",
               {{"system", prompts::system_prompt(prompts::kExtract, schema), {}},
                {"user", "Query: " + query + "\n\nPassages:\n<data>\n" + passages + "</data>", {}}},
               schema);
  if (!answer || (*answer)["facts"].empty()) return "no relevant fact in the passages found";
  std::string summary;
  for (const json& f : (*answer)["facts"]) {
    const size_t p = f["passage"].get<size_t>();
    if (p < 1 || p > hits.size()) continue;
    const Passage& hit = hits[p - 1];
    auto [it, inserted] = passage_keys_.try_emplace(hit.id, "");
    if (inserted) {
      it->second = key_prefix + std::to_string(++passage_counts_[key_prefix]);
      ReportSource source;
      source.key = it->second;
      source.kind = "document";
      source.title = hit.title;
      source.location = hit.location;
      source.text = hit.text;
      draft_.sources.push_back(source);
    }
    Finding finding;
    finding.text = tidy_prose(f["fact"].get<std::string>(), 300) + " [" + it->second + "]";
    summary += finding.text + " ";
    subtask.findings.push_back(finding);
  }
  return summary.empty() ? "no relevant fact in the passages found" : summary;
}

}  // namespace kdr::hka
