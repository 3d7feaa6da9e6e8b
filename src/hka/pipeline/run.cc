// The research run: model calls under the token budget, the trace, ingestion, the order of
// the stages and the files written. See research.h for the pipeline and run.h for the files.
#include "hka/pipeline/run.h"

#include <algorithm>
#include <cmath>

#include "hka/analysis/fact_text.h"
#include "hka/text.h"

namespace kdr::hka {

namespace {

// Trace events keep bounded excerpts: a model answer or SQL can be arbitrarily long.
constexpr size_t kTraceText = 2000;

void bound_strings(json& j) {
  if (j.is_string()) {
    std::string& s = j.get_ref<std::string&>();
    if (s.size() > kTraceText) s = text::truncate(s, kTraceText);
  } else if (j.is_array() || j.is_object()) {
    size_t n = 0;
    for (auto& v : j) {
      bound_strings(v);
      ++n;
    }
    if (j.is_array() && n > 200) {
      json head = json::array();
      for (size_t i = 0; i < 200; ++i) head.push_back(j[i]);
      head.push_back("[" + std::to_string(n - 200) + " more]");
      j = head;
    }
  }
}

}  // namespace

void Run::emit(const std::string& phase, const std::string& detail) {
  if (!progress_) return;
  ProgressEvent e;
  e.phase = phase;
  e.detail = detail;
  e.subtask = current_subtask_;
  e.subtasks = static_cast<int32_t>(subtasks_.size());
  e.tokens_used = tokens_used_;
  e.tool_calls = tool_calls_;
  e.elapsed_s = elapsed();
  progress_(e);
}

void Run::trace(json event) {
  bound_strings(event);
  event["t"] = std::round(elapsed() * 1000.0) / 1000.0;
  trace_ << event.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  trace_.flush();
}

LlmReply Run::call(const std::string& role, const std::vector<ChatMessage>& messages,
                   const std::optional<ojson>& schema, int32_t max_tokens) {
  if (o_.max_tokens_total > 0) {
    int64_t prompt_bytes = 0;
    for (const ChatMessage& m : messages) prompt_bytes += static_cast<int64_t>(m.content.size());
    if (schema) prompt_bytes += static_cast<int64_t>(schema->dump().size());
    // Prompt tokens from bytes: digits and non-ASCII text take a token every byte or two, so
    // the ratio starts at one token per two bytes and grows to the largest seen.
    const int64_t estimate =
        static_cast<int64_t>(static_cast<double>(prompt_bytes) * tokens_per_byte_) + 16;
    const int64_t left = o_.max_tokens_total - tokens_used_;
    // A call needs room for its prompt and a useful answer; otherwise the budget is spent.
    if (left < estimate + 32) {
      budget_exhausted_ = true;
      trace({{"type", "budget"},
             {"role", role},
             {"tokens_used", tokens_used_},
             {"max_tokens_total", o_.max_tokens_total},
             {"needed_at_least", estimate + 32}});
      throw BudgetExhausted{};
    }
    max_tokens = static_cast<int32_t>(std::min<int64_t>(max_tokens, left - estimate));
  }
  LlmCall c;
  c.role = role;
  c.messages = messages;
  c.json_schema = schema;
  c.max_tokens = max_tokens;
  c.temperature = o_.temperature;
  c.seed = o_.seed + static_cast<uint64_t>(llm_calls_);
  ++llm_calls_;
  try {
    LlmReply r = llm_.complete(c);
    ++llm_answers_;
    int64_t sent_bytes = 0;
    for (const ChatMessage& m : messages) sent_bytes += static_cast<int64_t>(m.content.size());
    if (schema) sent_bytes += static_cast<int64_t>(schema->dump().size());
    if (sent_bytes > 0) {
      tokens_per_byte_ = std::max(tokens_per_byte_, 1.1 * static_cast<double>(r.prompt_tokens) /
                                                        static_cast<double>(sent_bytes));
    }
    tokens_used_ += r.prompt_tokens + r.completion_tokens;
    trace({{"type", "llm"},
           {"role", role},
           {"model", r.model},
           {"prompt_tokens", r.prompt_tokens},
           {"completion_tokens", r.completion_tokens},
           {"latency_s", std::round(r.latency_s * 1000.0) / 1000.0},
           {"attempts", r.attempts},
           {"finish_reason", r.finish_reason},
           {"ok", true}});
    return r;
  } catch (const LlmError& e) {
    trace({{"type", "llm"}, {"role", role}, {"ok", false}, {"error", e.what()}});
    throw;
  }
}

std::optional<json> Run::ask_json(const std::string& role, std::vector<ChatMessage> messages,
                                  const ojson& schema) {
  if (o_.facts_only) return std::nullopt;
  const int32_t max_tokens = prompts::schema_token_bound(schema);
  for (int attempt = 0; attempt < 2; ++attempt) {
    LlmReply r;
    try {
      r = call(role, messages, schema, max_tokens);
    } catch (const LlmError& e) {
      // One failed step (a prompt too long for the model, an endpoint that keeps failing)
      // does not end the run: the step is skipped and the report says so.
      const std::string note = "A model call (" + role + ") failed and its step was skipped: " +
                               text::truncate(e.what(), 300);
      if (std::find(draft_.notes.begin(), draft_.notes.end(), note) == draft_.notes.end())
        draft_.notes.push_back(note);
      return std::nullopt;
    }
    std::string error;
    std::optional<json> value = parse_tolerant_json(r.text, &error);
    std::string problem = value ? schema_violation(*value, schema) : "not JSON (" + error + ")";
    if (problem.empty()) return value;
    trace({{"type", "invalid_answer"},
           {"role", role},
           {"problem", problem},
           {"answer", text::truncate(r.text, 400)}});
    messages.push_back({"assistant", text::truncate(r.text, 2000), {}});
    messages.push_back({"user",
                        "That answer is not valid: " + problem +
                            ". Answer again with only the JSON value, valid under the schema.",
                        {}});
  }
  return std::nullopt;
}

void Run::ingest() {
  emit("ingest", o_.tables_dir.string());
  const fs::path workspace = o_.workspace.empty() ? o_.out_dir / ".kdr" : o_.workspace;
  std::error_code ec;
  fs::create_directories(workspace, ec);
  if (ec)
    throw ResearchError("cannot create the workspace " + workspace.string() + ": " + ec.message());
  db_path_ = workspace / "knowledge.db";
  std::error_code fs_error;
  if (!fs::is_directory(o_.tables_dir, fs_error)) {
    throw ResearchError("--tables " + o_.tables_dir.string() + " is not a folder" +
                        (fs_error ? " (" + fs_error.message() + ")" : ""));
  }
  tables_.emplace(TableStore::open(db_path_));
  tables_->set_embedder(o_.embedder);
  // A catalogue.json beside the tables is the catalogue unless one was named.
  std::optional<fs::path> catalogue = o_.catalogue;
  if (!catalogue && fs::is_regular_file(o_.tables_dir / "catalogue.json", fs_error)) {
    catalogue = o_.tables_dir / "catalogue.json";
  }
  const TableIngestReport tr = tables_->ingest_dir(o_.tables_dir, catalogue);
  trace({{"type", "ingest"},
         {"kind", "tables"},
         {"embedding_model", o_.embedder ? o_.embedder.model : ""},
         {"embedded", tr.embedded},
         {"added", tr.added},
         {"replaced", tr.replaced},
         {"unchanged", tr.unchanged},
         {"removed", tr.removed},
         {"failed", tr.failed},
         {"converted", tr.converted}});
  for (const std::string& f : tr.failed) draft_.notes.push_back("A table did not load: " + f);
  for (const std::string& c : tr.converted)
    draft_.notes.push_back("A table was not UTF-8: " + c + ".");
  if (tables_->tables().empty()) {
    std::string why;
    for (const std::string& f : tr.failed) why += "\n  " + f;
    throw ResearchError("no table could be loaded from " + o_.tables_dir.string() +
                        (why.empty() ? " (no .csv, .tsv or .json file)" : ":" + why));
  }
  finder_.emplace(db_path_);
  if (o_.docs_dir) {
    if (!fs::is_directory(*o_.docs_dir, fs_error)) {
      throw ResearchError("--docs " + o_.docs_dir->string() + " is not a folder");
    }
    docs_.emplace(DocStore::open(db_path_.string()));
    docs_->set_embedder(o_.embedder);
    const DocIngestReport dr = docs_->ingest_dir(*o_.docs_dir);
    json failed = json::array();
    for (const auto& f : dr.failed) {
      failed.push_back(f.path + ": " + f.message);
      draft_.notes.push_back("A document did not load: " + f.path + ": " + f.message);
    }
    trace({{"type", "ingest"},
           {"kind", "documents"},
           {"embedded", dr.embedded},
           {"added", dr.added},
           {"updated", dr.updated},
           {"unchanged", dr.unchanged},
           {"removed", dr.removed},
           {"failed", failed},
           {"converted", dr.converted},
           {"chunks", docs_->chunk_count()}});
    for (const std::string& c : dr.converted)
      draft_.notes.push_back("A document was not UTF-8: " + c + ".");
  }
}

void Run::write_outputs(ResearchResult& r) {
  // Every fact the run computed (the cited ones with their keys) and the sources, so that
  // `kdr research verify OUT` can check an edited report again.
  draft_.facts = facts_;
  for (analysis::Fact& f : draft_.facts) {
    if (const auto it = fact_keys_.find(f.id); it != fact_keys_.end()) f.key = it->second;
  }
  json facts = json::array();
  std::string sql;
  for (const analysis::Fact& f : draft_.facts) {
    facts.push_back(analysis::to_json(f));
    if (f.key.empty()) continue;
    sql += "-- " + f.key + " (" + f.id + ", " + f.type + "): " + text::one_line(f.text) + "\n";
    if (!f.formula.empty()) sql += "-- " + f.formula + "\n";
    sql += f.sql + ";\n\n";
  }
  std::ofstream(o_.out_dir / "analysis" / "facts.json", std::ios::binary)
      << facts.dump(1, ' ', false, json::error_handler_t::replace) << "\n";
  std::ofstream(o_.out_dir / "analysis" / "facts.sql", std::ios::binary) << sql;
  json sources = json::array();
  for (const ReportSource& s : draft_.sources) sources.push_back(to_json(s));
  // How each table was read: layout, grain, column roles, measures and their units.
  std::ofstream(o_.out_dir / "analysis" / "tables.json", std::ios::binary)
      << finder_->profiles().dump(1, ' ', false, json::error_handler_t::replace) << "\n";
  std::ofstream(o_.out_dir / "analysis" / "sources.json", std::ios::binary)
      << sources.dump(1, ' ', false, json::error_handler_t::replace) << "\n";

  emit("verify", "citations and numbers");
  const FinalReport report = finalize_report(draft_);
  r.report_md = o_.out_dir / "report.md";
  r.report_html = o_.out_dir / "report.html";
  r.verification_json = o_.out_dir / "verification.json";
  r.trace_jsonl = o_.out_dir / "trace.jsonl";
  std::ofstream(r.report_md, std::ios::binary) << report.markdown;
  std::ofstream(r.report_html, std::ios::binary) << report.html;
  json verification = report.verification;
  verification["run"] = {{"backend", llm_.describe()},
                         {"llm_calls", llm_calls_},
                         {"tool_calls", tool_calls_},
                         {"tokens_used", tokens_used_},
                         {"budget_exhausted", budget_exhausted_}};
  std::ofstream(r.verification_json, std::ios::binary)
      << verification.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  r.subtasks = static_cast<int32_t>(subtasks_.size());
  r.figures = static_cast<int32_t>(draft_.figures.size());
  r.tables = static_cast<int32_t>(draft_.tables.size());
  r.tool_calls = tool_calls_;
  r.llm_calls = llm_calls_;
  r.tokens_used = tokens_used_;
  r.budget_exhausted = budget_exhausted_;
  r.numbers_checked = static_cast<int32_t>(report.numbers.size());
  r.unverified_numbers = report.unverified_numbers;
  r.unresolved_citations = report.unresolved_citations;
  r.facts = static_cast<int32_t>(fact_keys_.size());
}

ResearchResult Run::run() {
  if (o_.question.empty()) throw ResearchError("the question is empty");
  std::error_code ec;
  fs::create_directories(o_.out_dir / "figures", ec);
  fs::create_directories(o_.out_dir / "analysis", ec);
  if (ec) throw ResearchError("cannot create " + o_.out_dir.string() + ": " + ec.message());
  // Files of an earlier run into the same folder would be mistaken for this run's.
  for (const char* sub : {"figures", "analysis"}) {
    for (fs::directory_iterator it(o_.out_dir / sub, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::error_code type_error;
      if ((name.rfind("fig", 0) == 0 || name.rfind("q", 0) == 0 || name.rfind("fact", 0) == 0 ||
           name == "sources.json" || name == "tables.json") &&
          it->is_regular_file(type_error)) {
        std::error_code ignored;
        fs::remove(it->path(), ignored);
      }
    }
    ec.clear();
  }
  trace_.open(o_.out_dir / "trace.jsonl", std::ios::binary | std::ios::trunc);
  if (!trace_) throw ResearchError("cannot write " + (o_.out_dir / "trace.jsonl").string());
  trace({{"type", "start"},
         {"question", o_.question},
         {"backend", llm_.describe()},
         {"seed", o_.seed},
         {"temperature", o_.temperature},
         {"max_tokens_total", o_.max_tokens_total},
         {"max_tool_calls", o_.max_tool_calls}});

  ingest();
  question_ = analysis::profile_question(o_.question);
  try {
    plan();
    for (size_t i = 0; i < subtasks_.size(); ++i) {
      current_subtask_ = static_cast<int32_t>(i + 1);
      emit("subtask", subtasks_[i].title);
      trace({{"type", "subtask"}, {"index", i + 1}, {"title", subtasks_[i].title}});
      find_facts(subtasks_[i]);
      choose_facts(subtasks_[i]);
      supervise(subtasks_[i]);
    }
  } catch (const BudgetExhausted&) {
    std::string missing;
    for (size_t i = 0; i < subtasks_.size(); ++i) {
      if (subtasks_[i].chosen.empty() && subtasks_[i].findings.empty())
        missing += (missing.empty() ? "" : ", ") + std::to_string(i + 1);
    }
    draft_.notes.push_back("Stopped early: the token budget of " +
                           std::to_string(o_.max_tokens_total) + " tokens was used up (" +
                           std::to_string(tokens_used_) + " used)." +
                           (missing.empty() ? "" : " Parts without findings: " + missing + "."));
  }
  if (subtasks_.empty()) {
    Subtask s;
    s.part = o_.question;
    s.title = text::shorten(o_.question, 100);
    s.goal = o_.question;
    s.profile = question_;
    subtasks_.push_back(std::move(s));
  }
  // Parts the budget stopped before their facts were found still get them: finding facts
  // costs no model call.
  for (Subtask& s : subtasks_) {
    if (s.candidates.empty()) {
      find_facts(s);
      try {
        choose_facts(s);  // the best-ranked facts are chosen before the model is asked
      } catch (const BudgetExhausted&) {
      }
    }
  }
  current_subtask_ = 0;
  // Every fact a section will state is checked once more: its SQL, run read-only on the stored
  // table, must give its values. One that does not is left out, and the report says so.
  for (Subtask& s : subtasks_) {
    std::erase_if(s.chosen, [&](const std::string& id) {
      const analysis::Fact* f = fact(id);
      if (!f) return true;
      const analysis::FactSqlCheck check = analysis::check_fact_sql(db_path_, *f);
      trace({{"type", "fact_sql_check"},
             {"fact", id},
             {"compared", check.compared},
             {"ok", check.ok()},
             {"problem", check.error.empty()
                             ? (check.mismatches.empty() ? "" : check.mismatches.front())
                             : check.error}});
      if (!check.ok())
        draft_.notes.push_back("A data fact was left out because its SQL did not reproduce it: " +
                               f->text);
      return !check.ok();
    });
  }
  write_report();

  ResearchResult r;
  write_outputs(r);
  trace({{"type", "done"},
         {"facts", r.facts},
         {"figures", r.figures},
         {"tables", r.tables},
         {"tokens_used", tokens_used_},
         {"unverified_numbers", r.unverified_numbers},
         {"unresolved_citations", r.unresolved_citations}});
  emit("done", r.report_html.string());
  return r;
}

ResearchResult run_research(const ResearchOptions& options, LlmBackend& llm,
                            const ProgressFn& progress) {
  Run run(options, llm, progress);
  return run.run();
}

}  // namespace kdr::hka
