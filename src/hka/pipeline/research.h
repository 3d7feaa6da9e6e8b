// The research pipeline (HKA with verification): a question, tables and documents in; a
// report with computed figures and tables, every citation and number checked, out.
//
//   ingest      tables (TableStore) and documents (DocStore) into OUT/.kdr/knowledge.db,
//               once; changed sources are re-ingested
//   plan        the planner model splits the question into at most max_subtasks broad
//               subtasks, each with an analytic goal
//   supervise   per subtask, a supervisor model picks tools under a global tool-call budget:
//               analyze_tables(question), search_documents(query), web_search(query) when
//               a provider is configured, complete
//   analyze     tables: retrieval over titles, descriptions, columns and values (BM25, fused
//               with embedding similarity when an embedding model is given) ->
//               rerank by the model (may keep several tables) -> the coder writes SQLite SQL
//               and a chart spec -> read-only execution with repair rounds fed the error ->
//               figure checks (deterministic; vision when the backend takes images) ->
//               SVG + PNG -> an insight from the result
//               documents: search, then facts extracted with their passage
//   write       one section per subtask from its findings, then title, abstract,
//               introduction and conclusion; finalize_report() resolves citations and checks
//               numbers
//   outputs     report.md, report.html, figures/, analysis/ (SQL + CSV), trace.jsonl,
//               verification.json
//
// Every model answer is JSON under a schema (constrained decoding on our engine), parsed
// tolerantly with one repair round for endpoints that ignore the schema. Table and document
// text reach prompts only as quoted data; the model's SQL runs read-only (sql_guard.h).
// A token budget (max_tokens_total) is checked before every call; when it runs out the
// analysis stops and the report is assembled from what was found, saying so.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "hka/knowledge/retrieval.h"
#include "hka/knowledge/sql_guard.h"
#include "hka/llm/llm.h"
#include "hka/llm/web_search.h"

namespace kdr::hka {

class ResearchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ResearchOptions {
  std::string question;
  std::filesystem::path tables_dir;  // required
  // KDR-Bench style catalogue JSON; default: tables_dir/catalogue.json when it exists
  std::optional<std::filesystem::path> catalogue;
  std::optional<std::filesystem::path> docs_dir;
  std::filesystem::path out_dir = "kdr-report";
  std::filesystem::path workspace;  // empty: out_dir / ".kdr"
  int32_t max_subtasks = 4;
  int32_t max_tool_calls = 12;        // over the whole run (HKA uses 30)
  int32_t max_steps_per_subtask = 4;  // supervisor decisions per subtask
  int32_t max_repair_rounds = 5;      // SQL / chart repairs per analysis
  int32_t rerank_candidates = 6;      // tables retrieved before the rerank
  int32_t max_tables_per_analysis = 3;
  int64_t max_tokens_total = 0;  // prompt + completion over every call; 0: no limit
  uint64_t seed = 0;
  double temperature = 0.0;
  Limits sql_limits;
  int32_t max_result_rows_in_report = 15;
  // The web_search tool is offered only when set (kdr research --web-search-url); off by
  // default, so a run needs no network.
  WebSearchFn web_search;
  // Retrieval of tables and passages: BM25 fused with this embedder's similarity (vectors
  // kept in the workspace); empty: BM25 alone.
  TextEmbedder embedder;
  // No language model at all: the plan is the question's parts, each part states its
  // best-ranked data facts, and nothing is written by a model (deterministic, seconds).
  bool facts_only = false;
};

// What happened, for the caller's progress display.
struct ProgressEvent {
  std::string phase;    // "ingest", "plan", "subtask", "tool", "write", "verify", "done"
  std::string detail;   // e.g. the subtask title or the tool and its input
  int32_t subtask = 0;  // 1-based; 0 outside subtasks
  int32_t subtasks = 0;
  int64_t tokens_used = 0;
  int32_t tool_calls = 0;
  double elapsed_s = 0.0;
};
using ProgressFn = std::function<void(const ProgressEvent&)>;

struct ResearchResult {
  std::filesystem::path report_md;
  std::filesystem::path report_html;
  std::filesystem::path verification_json;
  std::filesystem::path trace_jsonl;
  int32_t subtasks = 0;
  int32_t figures = 0;
  int32_t tables = 0;
  int32_t tool_calls = 0;
  int32_t llm_calls = 0;
  int64_t tokens_used = 0;
  bool budget_exhausted = false;
  int32_t numbers_checked = 0;
  int32_t unverified_numbers = 0;
  int32_t unresolved_citations = 0;
  int32_t facts = 0;  // data facts cited in the report
};

// Runs the whole pipeline. Throws ResearchError for unusable inputs (no tables loaded, an
// unreadable folder) and LlmError when the backend fails beyond its retries; a model that
// answers badly never throws (its answer is repaired or the step is skipped and noted).
ResearchResult run_research(const ResearchOptions& options, LlmBackend& llm,
                            const ProgressFn& progress = nullptr);

// The parts of a question, each a section of the report: its sentences, cut again where a
// new clause asks something else (", and how fast ...", ", which ..."); a part that asks
// nothing on its own joins its neighbour.
std::vector<std::string> question_parts(const std::string& question);

// Model prose as the report takes it (small models loop): sentences that repeat an earlier
// one word for word are dropped; a text that starts looping on a few characters (a unit of
// 1-32 characters with a letter or digit, repeated back to back over max(24, 6 x its length)
// characters: "1000000...", "the the the ...") ends at the last full sentence before the
// loop; a text within 4 characters of max_length (cut by its schema) ends at its last full
// sentence.
std::string tidy_prose(const std::string& text, size_t max_length);

// Whether model text reads as prose: at least 3 words and a sentence end. Where a model
// fills an abstract, a conclusion or a section with something else (a heading, "Wheat
// yields, 2019-2021"), the report uses the findings or a plain statement instead.
bool reads_as_prose(const std::string& text);

// A sentence the code writes about a query result when the model gives no usable insight:
// the highest and lowest values of its last numeric column, each with the row's label (its
// first other column), in the cells' own text so that the numbers verify; "The query
// returned N rows." when there is no such column or fewer than 2 rows.
std::string describe_result(const QueryResult& result);

}  // namespace kdr::hka
