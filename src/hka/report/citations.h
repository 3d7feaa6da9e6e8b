// Citations and figure/table references in the prose: citation groups ("[T2]", "[D1, A3]",
// "[3]"), renumbering keys [1], [2] ... in order of first use, and "Figure F3" -> "Figure 1".
// Private to report/.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hka/analysis/facts.h"
#include "hka/report/report.h"

namespace kdr::hka::report {

// "T2", "A13": a letter followed by digits.
bool is_key(std::string_view s);

struct CitationGroup {
  size_t begin = 0;
  size_t end = 0;  // one past the last ']'
  std::vector<std::string> items;
};

// The citation group starting at `pos` ("[T2]", "[D1, T3]", "[3]"); nullopt when the bracket
// opens something else (a markdown link, a word).
std::optional<CitationGroup> parse_citation_group(std::string_view text, size_t pos);

// Every citation group of `text` in order; adjacent groups ("[D1][T3]") read as one.
std::vector<CitationGroup> citation_groups(std::string_view text);

// What a citation key resolves to: a fact (a data fact the run computed) or a source (a
// query result, a document passage).
struct Reference {
  std::string key;
  const analysis::Fact* fact = nullptr;
  const ReportSource* source = nullptr;
};

// The facts and sources by key. Facts without a key cannot be cited.
class Citable {
 public:
  Citable(const std::vector<analysis::Fact>& facts, const std::vector<ReportSource>& sources);
  std::optional<Reference> find(const std::string& key) const;
  const std::vector<analysis::Fact>& facts() const { return facts_; }
  const std::vector<ReportSource>& sources() const { return sources_; }

 private:
  const std::vector<analysis::Fact>& facts_;
  const std::vector<ReportSource>& sources_;
  std::unordered_map<std::string, Reference> by_key_;
};

struct FigureRef {
  std::string key;
  std::string kind;  // "figure" or "table"
  std::string section;
  bool resolved = false;
  int32_t number = 0;
};

// Rewrites prose once: figure and table references to their numbers, then citation keys to
// reference numbers (a key that resolves to nothing is removed and recorded). Each citation
// is recorded with the sentence of the rewritten text it stands in.
class ProseRewriter {
 public:
  ProseRewriter(const Citable& citable, const std::map<std::string, int32_t>& figure_numbers,
                const std::map<std::string, int32_t>& table_numbers)
      : citable_(citable), figure_numbers_(figure_numbers), table_numbers_(table_numbers) {}

  // The reference number of a key, numbering it on first use; 0 when it resolves to nothing.
  int32_t cite(const std::string& key);

  std::string rewrite(const std::string& text, const std::string& section);

  const std::vector<Reference>& references() const { return references_; }
  std::vector<CitationCheck>& citations() { return citations_; }
  std::vector<FigureRef>& figure_refs() { return figure_refs_; }

 private:
  std::string rewrite_citations(std::string_view text, const std::string& section);
  std::string rewrite_references(std::string_view text, const std::string& section);

  const Citable& citable_;
  const std::map<std::string, int32_t>& figure_numbers_;
  const std::map<std::string, int32_t>& table_numbers_;
  std::map<std::string, int32_t> numbers_;
  std::vector<Reference> references_;
  std::vector<CitationCheck> citations_;
  std::vector<size_t> offsets_;  // of each citation in the rewritten text
  std::vector<FigureRef> figure_refs_;
};

}  // namespace kdr::hka::report
