// Reports built from the dev set's facts the way the pipeline builds them: the example tables
// ingested into a temporary workspace, FactFinder's facts for each question in
// examples/dev/questions.json keyed A1, A2 ..., and a draft whose prose is the facts' own
// sentences, each citing its fact.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hka/analysis/candidates.h"
#include "hka/analysis/question.h"
#include "hka/knowledge/table_store.h"
#include "hka/report/report.h"
#include "hka/report/sentences.h"
#include "hka/text.h"

namespace kdr::hka::testing {

struct DevReport {
  std::string key;  // the question's key in questions.json
  std::string question;
  std::vector<analysis::Fact> facts;
  ReportDraft draft;
  FinalReport report;
};

// "A fell from 3 to 2. B rose." citing `key` in each sentence: "A fell from 3 to 2 [A1]. B
// rose [A1]." (a number a sentence states is checked against what that sentence cites).
inline std::string cite_each_sentence(const std::string& text, const std::string& key) {
  std::string out;
  for (const report::SentenceSpan& span : report::split_sentences(text)) {
    std::string sentence(
        text::trim(std::string_view(text).substr(span.begin, span.end - span.begin)));
    const bool stop = !sentence.empty() && sentence.back() == '.';
    if (stop) sentence.pop_back();
    out += (out.empty() ? "" : " ") + sentence + " [" + key + "]" + (stop ? "." : "");
  }
  return out;
}

inline std::vector<DevReport> dev_reports(size_t facts_per_question = 15) {
  namespace fs = std::filesystem;
  const fs::path root = KDR_SOURCE_DIR;
  const fs::path workspace =
      fs::temp_directory_path() / ("kdr-dev-reports-" + std::to_string(::getpid()));
  fs::remove_all(workspace);
  fs::create_directories(workspace);
  std::vector<DevReport> out;
  {
    const fs::path db = workspace / "knowledge.db";
    TableStore store = TableStore::open(db);
    store.ingest_dir(root / "examples" / "tables", root / "examples" / "tables" / "catalogue.json");
    std::ifstream in(root / "examples" / "dev" / "questions.json");
    const nlohmann::json questions = nlohmann::json::parse(in);
    analysis::FactFinder finder(db);
    for (const nlohmann::json& q : questions) {
      DevReport r;
      r.key = q.at("key").get<std::string>();
      r.question = q.at("question").get<std::string>();
      // The tables the question is about, as `kdr research facts` picks them.
      std::vector<TableInfo> tables = store.tables();
      if (tables.size() > 4) {
        std::vector<TableInfo> picked;
        for (const TableHit& h : store.search(r.question, 3)) {
          for (const TableInfo& t : tables) {
            if (t.name == h.table) picked.push_back(t);
          }
        }
        if (!picked.empty()) tables = picked;
      }
      r.facts = finder.facts(tables, analysis::profile_question(r.question), facts_per_question);
      std::string prose;
      for (size_t i = 0; i < r.facts.size(); ++i) {
        r.facts[i].key = "A" + std::to_string(i + 1);
        prose += cite_each_sentence(r.facts[i].text, r.facts[i].key) + "\n\n";
      }
      r.draft.title = r.question;
      r.draft.question = r.question;
      r.draft.sections = {{"Findings", prose, {}, {}}};
      r.draft.facts = r.facts;
      r.report = finalize_report(r.draft);
      out.push_back(std::move(r));
    }
  }
  fs::remove_all(workspace);
  return out;
}

}  // namespace kdr::hka::testing
