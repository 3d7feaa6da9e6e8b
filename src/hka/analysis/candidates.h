// Candidate facts for a question over stored tables: each table read as a Frame (the entity
// column chosen by what the question names), its facts computed under the question's focus,
// all ranked together. Frames are kept, so a run computes each table's once.
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "hka/analysis/facts.h"
#include "hka/analysis/frame.h"
#include "hka/analysis/question.h"
#include "hka/knowledge/table_store.h"

namespace kdr::hka::analysis {

class FactFinder {
 public:
  explicit FactFinder(std::filesystem::path db_path) : db_path_(std::move(db_path)) {}

  // The frame of a table for a question (cached per table and entity column). Throws
  // FrameError when the table has nothing to analyse; SqlError when it cannot be read.
  const Frame& frame(const TableInfo& table, const QuestionProfile& q);

  // Facts of the given tables for the question, ranked (question.h), at most max_facts. A
  // table that cannot be analysed is skipped and its reason appended to *problems.
  std::vector<Fact> facts(const std::vector<TableInfo>& tables, const QuestionProfile& q,
                          size_t max_facts, std::vector<std::string>* problems = nullptr);

  // The frame a fact of this finder was computed from; nullptr when unknown.
  const Frame* frame_of(const Fact& fact) const;

  // Every frame read so far, as JSON (analysis/tables.json): how each table was read.
  nlohmann::json profiles() const;

 private:
  std::filesystem::path db_path_;
  std::map<std::string, std::unique_ptr<Frame>> frames_;    // "table|entity column"
  std::map<std::string, std::unique_ptr<Frame>> variants_;  // "table|columns": nullptr if none
};

}  // namespace kdr::hka::analysis
