// `kdr research search QUERY --tables DIR [--docs DIR] --k K`: what the research agent's
// retrieval finds for a query, as JSON: the tables (and document passages) ranked by BM25
// alone or, with an embedding model, by BM25 and embeddings fused (hka/knowledge/retrieval.h).
// No language model; bench/retrieval_dev.py measures recall with it.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "hka/knowledge/doc_store.h"
#include "hka/knowledge/table_store.h"
#include "hka/llm/embedding_backend.h"

namespace kdr::cli {

namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

struct SearchArgs {
  std::string query;
  std::string tables;
  std::string docs;
  std::string catalogue;
  std::string workspace;
  std::string embedding_model;
  int k = 5;
  int threads = 0;
};

// The ranks a hit had in each ranking: hybrid hits carry them; BM25 hits are their position.
void add_ranks(ojson& out, bool hybrid, size_t position, int bm25_rank, int vector_rank) {
  out["bm25_rank"] = hybrid ? bm25_rank : static_cast<int>(position) + 1;
  if (hybrid) out["vector_rank"] = vector_rank;
}

void run_search_command(const SearchArgs& a) {
  std::string note;
  const hka::TextEmbedder embedder = hka::choose_text_embedder(a.embedding_model, a.threads, note);
  std::fprintf(stderr, "kdr research search: %s\n", note.c_str());

  fs::path workspace = a.workspace;
  if (workspace.empty())
    workspace = fs::temp_directory_path() / ("kdr-search-" + std::to_string(::getpid()));
  fs::create_directories(workspace);
  const fs::path db = workspace / "knowledge.db";

  ojson out;
  out["query"] = a.query;
  out["k"] = a.k;
  out["retrieval"] = embedder ? "hybrid" : "bm25";
  out["embedding_model"] = embedder ? ojson(embedder.model) : ojson(nullptr);
  {
    hka::TableStore tables = hka::TableStore::open(db);
    tables.set_embedder(embedder);
    std::optional<fs::path> catalogue;
    if (!a.catalogue.empty())
      catalogue = a.catalogue;
    else if (std::error_code ec; fs::is_regular_file(fs::path(a.tables) / "catalogue.json", ec))
      catalogue = fs::path(a.tables) / "catalogue.json";
    const hka::TableIngestReport report = tables.ingest_dir(a.tables, catalogue);
    for (const std::string& f : report.failed)
      std::fprintf(stderr, "kdr research search: skipped %s\n", f.c_str());
    std::map<std::string, std::string> sources;  // table name -> source file
    for (const hka::TableInfo& t : tables.tables()) sources[t.name] = t.source_path;
    ojson hits = ojson::array();
    const std::vector<hka::TableHit> found = tables.search(a.query, a.k);
    for (size_t i = 0; i < found.size(); ++i) {
      ojson h = {{"table", found[i].table},
                 {"title", found[i].title},
                 {"source", sources[found[i].table]},
                 {"score", found[i].score}};
      add_ranks(h, static_cast<bool>(embedder), i, found[i].bm25_rank, found[i].vector_rank);
      hits.push_back(std::move(h));
    }
    out["tables"] = std::move(hits);
  }
  if (!a.docs.empty()) {
    hka::DocStore docs = hka::DocStore::open(db.string());
    docs.set_embedder(embedder);
    const hka::DocIngestReport report = docs.ingest_dir(a.docs);
    for (const auto& f : report.failed)
      std::fprintf(stderr, "kdr research search: skipped %s: %s\n", f.path.c_str(),
                   f.message.c_str());
    ojson hits = ojson::array();
    const std::vector<hka::ChunkHit> found = docs.search(a.query, a.k);
    for (size_t i = 0; i < found.size(); ++i) {
      const hka::DocChunk& c = found[i].chunk;
      ojson h = {{"chunk", c.id},           {"path", c.source_path},
                 {"title", c.title},        {"location", c.location},
                 {"score", found[i].score}, {"snippet", found[i].snippet}};
      add_ranks(h, static_cast<bool>(embedder), i, found[i].bm25_rank, found[i].vector_rank);
      hits.push_back(std::move(h));
    }
    out["documents"] = std::move(hits);
  }
  std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  if (a.workspace.empty()) fs::remove_all(workspace);
}

}  // namespace

void add_research_search_command(CLI::App& research) {
  auto a = std::make_shared<SearchArgs>();
  CLI::App* cmd = research.add_subcommand(
      "search",
      "The tables (and document passages) the research agent retrieves for a query, as JSON: "
      "BM25, fused with embedding similarity when an embedding model is available (no "
      "language model)");
  cmd->add_option("query", a->query, "the search query")->required();
  cmd->add_option("--tables", a->tables, "folder of tables")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--docs", a->docs, "folder of documents")->check(CLI::ExistingDirectory);
  cmd->add_option("--catalogue", a->catalogue, "table catalogue JSON")->check(CLI::ExistingFile);
  cmd->add_option("--workspace", a->workspace,
                  "keep the ingested knowledge (and its vectors) here (default: a temporary "
                  "folder)");
  cmd->add_option("--embedding-model", a->embedding_model,
                  "sentence-embedding model folder, or 'none' for BM25 alone (default: the "
                  "installed default model, else BM25 alone)");
  cmd->add_option("-k,--k", a->k, "results per store")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "embedding threads (default: all cores)");
  cmd->callback([a] { run_search_command(*a); });
}

}  // namespace kdr::cli
