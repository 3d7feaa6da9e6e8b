// One research run's state, shared by the pipeline's stage files (private to pipeline/):
//   run.cc         infrastructure (model calls, budget, trace), ingest, outputs
//   planner.cc     the question's parts and the plan
//   analyst.cc     data facts per part (candidates, the model's choice); SQL by the coder
//   documents.cc   document and web search with fact extraction
//   supervisor.cc  the tool registry and the per-part tool loop
//   writer.cc      sections, abstract, introduction and conclusion from the facts
#pragma once
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hka/analysis/candidates.h"
#include "hka/analysis/question.h"
#include "hka/chart/chart.h"
#include "hka/knowledge/doc_store.h"
#include "hka/knowledge/table_store.h"
#include "hka/pipeline/prompts.h"
#include "hka/pipeline/research.h"
#include "hka/report/report.h"

namespace kdr::hka {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// Thrown inside the run when the token budget cannot pay for the next call.
struct BudgetExhausted {};

// A finding from a tool (a query result's insight, a document fact), with its citation key
// in the text.
struct Finding {
  std::string text;
  std::string figure_key;  // "F2" when the finding has a figure
  std::string table_key;   // "R2" when it has a result table
};

struct Subtask {
  std::string part;  // the words of the question this subtask answers
  std::string title;
  std::string goal;
  analysis::QuestionProfile profile;
  std::vector<std::string> tables;         // retrieved for this part
  std::vector<analysis::Fact> candidates;  // ranked
  std::vector<std::string> chosen;         // ids of the facts the section states
  std::vector<Finding> findings;           // from tools
  std::vector<std::string> history;        // tool calls and what they returned
};

// A passage the extract model may take facts from; `id` identifies it across calls.
struct Passage {
  std::string id, title, location, text;
};

class Run {
 public:
  Run(const ResearchOptions& options, LlmBackend& llm, const ProgressFn& progress)
      : o_(options), llm_(llm), progress_(progress), start_(Clock::now()) {}

  ResearchResult run();

 private:
  // --- infrastructure (run.cc) ---
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  void emit(const std::string& phase, const std::string& detail);
  void trace(json event);
  LlmReply call(const std::string& role, const std::vector<ChatMessage>& messages,
                const std::optional<ojson>& schema, int32_t max_tokens);
  // A JSON answer valid under `schema`, with one repair round; nullopt when the model gives
  // none, or when the backend fails on this call (a prompt it cannot fit, an endpoint error
  // after its retries): the step is skipped and noted, the run goes on.
  std::optional<json> ask_json(const std::string& role, std::vector<ChatMessage> messages,
                               const ojson& schema);
  void ingest();
  void write_outputs(ResearchResult& r);

  // --- plan (planner.cc) ---
  void plan();

  // --- facts and tables (analyst.cc) ---
  void find_facts(Subtask& subtask);
  void choose_facts(Subtask& subtask);
  std::string analyze_tables(Subtask& subtask, const std::string& question);
  // The parts of analyze_tables: the tables (retrieval, the model's rerank), the coder's
  // query (repairs, the guided fallback), the evidence kept.
  struct Query {
    std::optional<QueryResult> result;
    std::optional<ChartSpec> spec;
    std::optional<RenderedChart> chart;
    std::string sql;
    std::string last_problem;
    bool figure_rejected = false;
  };
  std::vector<std::string> pick_tables(Subtask& subtask, const std::string& question);
  Query write_query(Subtask& subtask, const std::string& question,
                    std::vector<std::string>& chosen);
  Finding keep_query(const std::string& question, const std::vector<std::string>& chosen,
                     const Query& q, ReportSource& source);
  std::string table_titles(const std::vector<std::string>& names) const;
  std::string table_context(const std::vector<std::string>& names,
                            const std::string& question) const;
  std::optional<json> guided_query(const std::string& table, const std::string& question,
                                   const std::string& goal, const std::string& context);
  const analysis::Fact* fact(const std::string& id) const;
  // The citation key of a fact ("A3"), given on first use.
  std::string cite_fact(const std::string& id);

  // --- documents (documents.cc) ---
  std::string search_documents(Subtask& subtask, const std::string& query);
  std::string search_web(Subtask& subtask, const std::string& query);
  std::string extract_facts(Subtask& subtask, const std::string& query,
                            const std::vector<Passage>& passages, const std::string& key_prefix);

  // --- tools (supervisor.cc) ---
  struct Tool {
    std::string name;
    std::string description;  // what its input is and what it does, for the supervisor
    std::function<std::string(Run&, Subtask&, const std::string&)> run;
  };
  std::vector<Tool> tools() const;
  void supervise(Subtask& subtask);

  // --- writing (writer.cc) ---
  void write_report();
  std::string section_text(Subtask& subtask);
  void add_section_figure(Subtask& subtask, ReportSection& section);
  void add_key_figures(Subtask& subtask, ReportSection& section);

  const ResearchOptions& o_;
  LlmBackend& llm_;
  const ProgressFn& progress_;
  Clock::time_point start_;
  fs::path db_path_;
  std::optional<TableStore> tables_;
  std::optional<DocStore> docs_;
  std::optional<analysis::FactFinder> finder_;
  std::ofstream trace_;
  analysis::QuestionProfile question_;

  std::vector<Subtask> subtasks_;
  int32_t current_subtask_ = 0;
  int64_t tokens_used_ = 0;
  int32_t tool_calls_ = 0;
  int32_t llm_calls_ = 0;
  int32_t llm_answers_ = 0;       // calls that returned an answer
  double tokens_per_byte_ = 0.5;  // prompt tokens per byte, the largest seen (for the budget)
  bool budget_exhausted_ = false;

  ReportDraft draft_;
  std::vector<analysis::Fact> facts_;                // every candidate, once (by id)
  std::map<std::string, std::string> fact_keys_;     // fact id -> "A3"
  std::map<std::string, std::string> passage_keys_;  // passage id -> citation key "D3", "W1"
  std::map<std::string, int32_t> passage_counts_;    // key prefix -> keys given
  int32_t queries_ = 0;
  int32_t charts_ = 0;
  std::set<std::string> charted_;  // facts already drawn
  // Each analysis kept, by its query (whitespace normalized), with the finding it gave.
  std::map<std::string, Finding> analyses_;
};

}  // namespace kdr::hka
