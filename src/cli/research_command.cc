// `kdr research`: a question, tables and documents in; a verified report out (hka/research.h).
// The language model is the in-process engine on the embedded default model unless
// --llm-url or --llm-config points at an OpenAI-compatible endpoint.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "hka/analysis/candidates.h"
#include "hka/analysis/fact_text.h"
#include "hka/knowledge/table_store.h"
#include "hka/llm/embedding_backend.h"
#include "hka/llm/llm.h"
#include "hka/llm/web_search.h"
#include "hka/pipeline/research.h"

namespace kdr::cli {

namespace {

struct ResearchArgs {
  hka::ResearchOptions options;
  std::string tables;
  std::string docs;
  std::string catalogue;
  std::string out = "kdr-report";
  std::string workspace;
  std::string llm_url;
  std::string llm_model;
  std::string llm_config;
  std::string llm_key_env = "OPENAI_API_KEY";
  std::string model;
  std::string web_search_url;
  std::string embedding_model;
  int threads = 0;
  int64_t kv_memory = int64_t{512} << 20;
  int32_t max_model_len = 8192;
  bool quiet = false;
};

std::string clock_text(double seconds) {
  const int s = static_cast<int>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d", s / 60, s % 60);
  return buf;
}

// On a terminal one status line is rewritten in place; otherwise (a log, CI) one plain line
// per event.
hka::ProgressFn make_progress(bool quiet) {
  if (quiet) return nullptr;
  const bool tty = isatty(STDERR_FILENO) != 0;
  return [tty](const hka::ProgressEvent& e) {
    std::string where = e.subtask > 0 ? "subtask " + std::to_string(e.subtask) + "/" +
                                            std::to_string(e.subtasks) + " "
                                      : "";
    std::string detail = e.detail;
    if (tty && detail.size() > 70) detail = detail.substr(0, 67) + "...";
    const std::string line = "[" + clock_text(e.elapsed_s) + "] " + where + e.phase + ": " +
                             detail + " | tokens " + std::to_string(e.tokens_used) +
                             " | tool calls " + std::to_string(e.tool_calls);
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), e.phase == "done" ? "\n" : "");
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  };
}

void run_research_command(ResearchArgs a) {
  hka::ResearchOptions& o = a.options;
  o.tables_dir = a.tables;
  if (!a.docs.empty()) o.docs_dir = a.docs;
  if (!a.catalogue.empty()) o.catalogue = a.catalogue;
  o.out_dir = a.out;
  o.workspace = a.workspace;
  if (!a.web_search_url.empty()) o.web_search = hka::make_searxng_search(a.web_search_url);
  std::string retrieval_note;
  o.embedder = hka::choose_text_embedder(a.embedding_model, a.threads, retrieval_note);
  std::fprintf(stderr, "kdr research: %s\n", retrieval_note.c_str());

  std::unique_ptr<hka::LlmBackend> llm;
  if (o.facts_only) {
    llm = std::make_unique<hka::ScriptedBackend>();  // never called
  } else if (!a.llm_config.empty()) {
    hka::OpenAiConfig config = hka::load_openai_config(a.llm_config);
    if (!a.llm_url.empty()) config.base_url = a.llm_url;
    if (!a.llm_model.empty()) config.models["default"] = a.llm_model;
    llm = hka::make_openai_backend(config);
  } else if (!a.llm_url.empty()) {
    hka::OpenAiConfig config;
    config.base_url = a.llm_url;
    config.models["default"] = a.llm_model.empty() ? "default" : a.llm_model;
    if (const char* key = std::getenv(a.llm_key_env.c_str())) config.api_key = key;
    llm = hka::make_openai_backend(config);
  } else {
    hka::EngineBackendOptions engine;
    engine.model_path = a.model;
    engine.threads = a.threads;
    engine.kv_memory_bytes = a.kv_memory;
    engine.max_model_len = a.max_model_len;
    std::fprintf(stderr, "kdr research: loading the model for the in-process engine\n");
    llm = hka::make_engine_backend(engine);
  }
  if (o.facts_only) {
    std::fprintf(stderr, "kdr research: no language model (--facts-only)\n");
  } else {
    std::fprintf(stderr, "kdr research: language model %s\n", llm->describe().c_str());
  }
  if (const std::string note = llm->note(); !note.empty())
    std::fprintf(stderr, "kdr research: note: %s\n", note.c_str());

  const hka::ResearchResult r = hka::run_research(o, *llm, make_progress(a.quiet));
  std::printf("report:       %s\n", r.report_html.string().c_str());
  std::printf("markdown:     %s\n", r.report_md.string().c_str());
  std::printf("verification: %s (%d numbers checked, %d unverified; %d unresolved citations)\n",
              r.verification_json.string().c_str(), r.numbers_checked, r.unverified_numbers,
              r.unresolved_citations);
  std::printf("trace:        %s\n", r.trace_jsonl.string().c_str());
  std::printf("%d subtasks, %d figures, %d tables, %d tool calls, %d model calls, %lld tokens%s\n",
              r.subtasks, r.figures, r.tables, r.tool_calls, r.llm_calls,
              static_cast<long long>(r.tokens_used),
              r.budget_exhausted ? " (token budget used up: the report is partial)" : "");
}

struct FactsArgs {
  std::string question;
  std::string tables;
  std::string catalogue;
  std::string workspace;
  int top = 20;
  bool json = false;
};

// `kdr research facts`: the data facts a question would start from, ranked, without a model.
void run_facts_command(const FactsArgs& a) {
  namespace fs = std::filesystem;
  fs::path workspace = a.workspace;
  if (workspace.empty())
    workspace = fs::temp_directory_path() / ("kdr-facts-" + std::to_string(::getpid()));
  fs::create_directories(workspace);
  const fs::path db = workspace / "knowledge.db";
  hka::TableStore store = hka::TableStore::open(db);
  std::optional<fs::path> catalogue;
  if (!a.catalogue.empty())
    catalogue = a.catalogue;
  else if (std::error_code ec; fs::is_regular_file(fs::path(a.tables) / "catalogue.json", ec))
    catalogue = fs::path(a.tables) / "catalogue.json";
  const hka::TableIngestReport report = store.ingest_dir(a.tables, catalogue);
  for (const std::string& f : report.failed)
    std::fprintf(stderr, "kdr research facts: skipped %s\n", f.c_str());
  const hka::analysis::QuestionProfile q = hka::analysis::profile_question(a.question);
  std::vector<hka::TableInfo> tables = store.tables();
  // The tables the question is about: the best matches when there are many.
  if (tables.size() > 4) {
    std::vector<hka::TableInfo> picked;
    for (const hka::TableHit& h : store.search(a.question, 3)) {
      for (const hka::TableInfo& t : tables) {
        if (t.name == h.table) picked.push_back(t);
      }
    }
    if (!picked.empty()) tables = picked;
  }
  hka::analysis::FactFinder finder(db);
  std::vector<std::string> problems;
  const std::vector<hka::analysis::Fact> facts =
      finder.facts(tables, q, static_cast<size_t>(a.top), &problems);
  for (const std::string& p : problems) std::fprintf(stderr, "kdr research facts: %s\n", p.c_str());
  if (a.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : facts) out.push_back(hka::analysis::to_json(f));
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::string kinds;
    for (const std::string& k : q.kinds) kinds += (kinds.empty() ? "" : ", ") + k;
    std::printf("question kinds: %s\n", kinds.empty() ? "(none)" : kinds.c_str());
    for (size_t i = 0; i < facts.size(); ++i) {
      std::printf("%2zu. [%s %s] rel %.2f sig %.2f  %s\n", i + 1, facts[i].id.c_str(),
                  facts[i].table.c_str(), facts[i].relevance, facts[i].significance,
                  facts[i].text.c_str());
    }
  }
  if (a.workspace.empty()) fs::remove_all(workspace);
}

}  // namespace

void add_research_command(CLI::App& app) {
  auto a = std::make_shared<ResearchArgs>();
  CLI::App* cmd = app.add_subcommand(
      "research", "Answer a question with a verified report from tables and documents");
  cmd->add_option("question", a->options.question, "the research question");
  cmd->add_option("--tables", a->tables, "folder of CSV, TSV and JSON tables")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--docs", a->docs, "folder of markdown, text, HTML and PDF documents")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--catalogue", a->catalogue,
                  "table catalogue JSON (KDR-Bench fields: table_title, description, ...)")
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--out", a->out, "output folder")->capture_default_str();
  cmd->add_option("--workspace", a->workspace,
                  "where the ingested knowledge is kept (default: OUT/.kdr)");
  cmd->add_option("--llm-url", a->llm_url,
                  "an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (default: the "
                  "in-process engine)");
  cmd->add_option("--llm-model", a->llm_model, "the endpoint's model for every role");
  cmd->add_option("--llm-config", a->llm_config,
                  "JSON config: url, api_key_env, a model per role, vision roles, timeouts, "
                  "retries (see docs/research.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--llm-key-env", a->llm_key_env,
                  "environment variable holding the endpoint's API key")
      ->capture_default_str();
  cmd->add_option("--web-search-url", a->web_search_url,
                  "offer the web_search tool through this SearxNG /search endpoint (off by "
                  "default: no network is needed)");
  cmd->add_option("--embedding-model", a->embedding_model,
                  "sentence-embedding model folder for hybrid retrieval (BM25 + embeddings), or "
                  "'none' for BM25 alone (default: the installed default model, else BM25 alone)");
  cmd->add_option("-m,--model", a->model,
                  "model for the in-process engine (default: the embedded default)");
  cmd->add_option("-t,--threads", a->threads, "engine threads (default: all cores)");
  cmd->add_option("--kv-memory", a->kv_memory,
                  "in-process engine: memory for the KV cache, with K/M/G suffixes")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  cmd->add_option("--max-model-len", a->max_model_len,
                  "in-process engine: prompt + reply tokens at most (longer prompts lose the "
                  "middle of their longest message)")
      ->check(CLI::Range(256, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-subtasks", a->options.max_subtasks, "subtasks of the plan at most")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  cmd->add_option("--max-tool-calls", a->options.max_tool_calls, "tool calls in the whole run")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--max-repair-rounds", a->options.max_repair_rounds,
                  "SQL / chart repairs per analysis")
      ->check(CLI::Range(0, 20))
      ->capture_default_str();
  cmd->add_option("--max-tokens-total", a->options.max_tokens_total,
                  "prompt + completion tokens over the run (0: no limit); when used up the "
                  "report is written from what was found")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", a->options.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--temperature", a->options.temperature, "0: greedy and reproducible")
      ->check(CLI::Range(0.0, 2.0))
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", a->quiet, "no progress lines");
  cmd->add_flag("--facts-only", a->options.facts_only,
                "no language model: the report states the best-ranked data facts of each part of "
                "the question (deterministic, seconds)");

  auto fa = std::make_shared<FactsArgs>();
  CLI::App* facts = cmd->add_subcommand(
      "facts",
      "The data facts a question starts from, computed from the tables and ranked (no model)");
  facts->add_option("question", fa->question, "the research question")->required();
  facts->add_option("--tables", fa->tables, "folder of tables")
      ->required()
      ->check(CLI::ExistingDirectory);
  facts->add_option("--catalogue", fa->catalogue, "table catalogue JSON")->check(CLI::ExistingFile);
  facts->add_option("--workspace", fa->workspace,
                    "keep the ingested tables here (default: a temporary folder)");
  facts->add_option("-k,--top", fa->top, "how many facts")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  facts->add_flag("--json", fa->json, "print the fact records as JSON");
  facts->callback([fa] { run_facts_command(*fa); });
  add_research_verify_command(*cmd);
  add_research_search_command(*cmd);

  cmd->callback([a, cmd] {
    if (!cmd->get_subcommands().empty()) return;
    if (a->options.question.empty()) throw CLI::RequiredError("question");
    if (a->tables.empty()) throw CLI::RequiredError("--tables");
    run_research_command(*a);
  });
}

}  // namespace kdr::cli
