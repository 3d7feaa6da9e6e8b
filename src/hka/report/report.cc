// finalize_report: citations, figure and table numbering, verification, rendering. The prose is
// rewritten once (figure/table references replaced, citations renumbered), then checked and
// rendered from that one rewritten text so the three can never disagree.
#include "hka/report/report.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "hka/report/citations.h"
#include "hka/report/numbers.h"
#include "hka/report/render.h"
#include "hka/report/sentences.h"
#include "hka/report/verify.h"
#include "hka/text.h"

namespace kdr::hka {

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<NumberCheck> extract_numbers(const std::string& text) {
  std::vector<NumberCheck> checks;
  const std::vector<report::SentenceSpan> spans = report::split_sentences(text);
  for (const report::WrittenNumber& n : report::scan_numbers(text)) {
    NumberCheck c;
    c.text = std::string(text::trim(n.text));
    c.value = n.value;
    if (const report::SentenceSpan* s = report::sentence_at(spans, n.begin)) {
      c.context = text::shorten(std::string_view(text).substr(s->begin, s->end - s->begin), 400);
    }
    checks.push_back(std::move(c));
  }
  return checks;
}

nlohmann::json to_json(const ReportSource& s) {
  return {{"key", s.key},           {"kind", s.kind}, {"title", s.title},
          {"location", s.location}, {"sql", s.sql},   {"csv_path", s.csv_path},
          {"columns", s.columns},   {"rows", s.rows}, {"text", s.text}};
}

ReportSource source_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw ReportError("a source is not a JSON object");
  auto str = [&](const char* field, bool required) -> std::string {
    if (!j.contains(field)) {
      if (required) throw ReportError(std::string("a source without \"") + field + "\"");
      return "";
    }
    const nlohmann::json& v = j.at(field);
    if (v.is_null()) return "";
    if (!v.is_string()) {
      throw ReportError(std::string("source field \"") + field + "\" is not a string");
    }
    return v.get<std::string>();
  };
  ReportSource s;
  s.key = str("key", true);
  s.kind = str("kind", true);
  s.title = str("title", false);
  s.location = str("location", false);
  s.sql = str("sql", false);
  s.csv_path = str("csv_path", false);
  s.text = str("text", false);
  // Cells as text, whatever JSON type they came as.
  auto cells = [&](const nlohmann::json& row, const char* what) {
    if (!row.is_array())
      throw ReportError(std::string("source ") + s.key + ": " + what + " is not an array");
    std::vector<std::string> out;
    for (const nlohmann::json& c : row) out.push_back(text::format_cell(c));
    return out;
  };
  if (j.contains("columns") && !j.at("columns").is_null())
    s.columns = cells(j.at("columns"), "\"columns\"");
  if (j.contains("rows") && !j.at("rows").is_null()) {
    if (!j.at("rows").is_array())
      throw ReportError("source " + s.key + ": \"rows\" is not an array");
    for (const nlohmann::json& row : j.at("rows")) s.rows.push_back(cells(row, "a row"));
  }
  return s;
}

std::vector<NumberCheck> check_prose(const std::string& text,
                                     const std::vector<analysis::Fact>& facts,
                                     const std::vector<ReportSource>& sources) {
  const report::Citable citable(facts, sources);
  const report::Verifier verifier(citable);
  std::vector<NumberCheck> out;
  verifier.check_numbers(
      text, "", [](const std::string& item) { return item; }, out);
  return out;
}

FinalReport finalize_report(const ReportDraft& draft) {
  using report::Part;
  using report::PlacedFigure;
  FinalReport result;

  // 1. Figures and tables numbered by placement; the unplaced ones follow in draft order.
  std::unordered_map<std::string, const ReportFigure*> figure_by_key;
  std::unordered_map<std::string, const ReportTable*> table_by_key;
  for (const ReportFigure& f : draft.figures) figure_by_key.emplace(f.key, &f);
  for (const ReportTable& t : draft.tables) table_by_key.emplace(t.key, &t);
  std::map<std::string, int32_t> figure_numbers;
  std::map<std::string, int32_t> table_numbers;
  std::vector<report::FigureRef> bad_placements;
  for (const ReportSection& section : draft.sections) {
    for (const std::string& key : section.figure_keys) {
      if (!figure_by_key.contains(key)) {
        bad_placements.push_back({key, "figure", section.heading, false, 0});
      } else if (!figure_numbers.contains(key)) {
        figure_numbers.emplace(key, static_cast<int32_t>(figure_numbers.size()) + 1);
      }
    }
    for (const std::string& key : section.table_keys) {
      if (!table_by_key.contains(key)) {
        bad_placements.push_back({key, "table", section.heading, false, 0});
      } else if (!table_numbers.contains(key)) {
        table_numbers.emplace(key, static_cast<int32_t>(table_numbers.size()) + 1);
      }
    }
  }
  std::vector<const ReportFigure*> unplaced_figures;
  std::vector<const ReportTable*> unplaced_tables;
  for (const ReportFigure& f : draft.figures) {
    if (figure_numbers.emplace(f.key, static_cast<int32_t>(figure_numbers.size()) + 1).second) {
      unplaced_figures.push_back(&f);
    }
  }
  for (const ReportTable& t : draft.tables) {
    if (table_numbers.emplace(t.key, static_cast<int32_t>(table_numbers.size()) + 1).second) {
      unplaced_tables.push_back(&t);
    }
  }

  // 2. The prose rewritten in reading order, which is also the order citations are numbered.
  const report::Citable citable(draft.facts, draft.sources);
  report::ProseRewriter rewriter(citable, figure_numbers, table_numbers);
  auto place_figure = [&](const ReportFigure& f, Part& part) {
    PlacedFigure placed{&f, figure_numbers.at(f.key), rewriter.rewrite(f.caption, part.heading), 0};
    placed.source_ref = rewriter.cite(f.source_key);
    part.figures.push_back(std::move(placed));
  };
  // A table's cells are shown as they are, but a cell citing a fact or source ("[A3]") is a
  // citation like any other.
  auto place_table = [&](const ReportTable& t, Part& part) {
    report::PlacedTable placed{&t, table_numbers.at(t.key), rewriter.cite(t.source_key), {}};
    for (const std::vector<std::string>& row : t.rows) {
      std::vector<std::string> cells;
      for (const std::string& cell : row) {
        const bool cites = cell.find('[') != std::string::npos;
        cells.push_back(cites ? rewriter.rewrite(cell, part.heading) : cell);
      }
      placed.rows.push_back(std::move(cells));
    }
    part.tables.push_back(std::move(placed));
  };
  std::vector<Part> parts;
  parts.push_back({"Abstract", rewriter.rewrite(draft.abstract, "Abstract"), {}, {}});
  parts.push_back({"Introduction", rewriter.rewrite(draft.introduction, "Introduction"), {}, {}});
  std::unordered_set<std::string> shown;
  for (const ReportSection& section : draft.sections) {
    Part part{section.heading, rewriter.rewrite(section.text, section.heading), {}, {}};
    for (const std::string& key : section.figure_keys) {
      auto f = figure_by_key.find(key);
      if (f != figure_by_key.end() && shown.insert("F:" + key).second)
        place_figure(*f->second, part);
    }
    for (const std::string& key : section.table_keys) {
      auto t = table_by_key.find(key);
      if (t != table_by_key.end() && shown.insert("T:" + key).second) place_table(*t->second, part);
    }
    parts.push_back(std::move(part));
  }
  parts.push_back({"Conclusion", rewriter.rewrite(draft.conclusion, "Conclusion"), {}, {}});
  if (!unplaced_figures.empty() || !unplaced_tables.empty()) {
    Part extra{unplaced_tables.empty()    ? "Additional figures"
               : unplaced_figures.empty() ? "Additional tables"
                                          : "Additional figures and tables",
               "",
               {},
               {}};
    for (const ReportFigure* f : unplaced_figures) place_figure(*f, extra);
    for (const ReportTable* t : unplaced_tables) place_table(*t, extra);
    parts.push_back(std::move(extra));
  }
  const std::vector<report::Reference>& refs = rewriter.references();
  result.citations = rewriter.citations();
  std::vector<report::FigureRef> figure_refs = std::move(bad_placements);
  for (report::FigureRef& r : rewriter.figure_refs()) figure_refs.push_back(std::move(r));

  // 3. Numbers checked against what their sentences cite; passages against their sentences.
  const report::Verifier verifier(citable);
  const report::KeyOf key_of = [&](const std::string& item) -> std::string {
    if (item.empty() || item.size() > 6 ||
        !std::all_of(item.begin(), item.end(), report::is_digit)) {
      return item;
    }
    const size_t n = std::stoul(item);
    return n >= 1 && n <= refs.size() ? refs[n - 1].key : "";
  };
  for (const Part& part : parts) {
    verifier.check_numbers(part.text, part.heading, key_of, result.numbers);
    for (const PlacedFigure& f : part.figures) {
      verifier.check_numbers(f.caption, part.heading, key_of, result.numbers);
    }
  }
  for (CitationCheck& c : result.citations) verifier.check_support(c);
  report::summarize(result, figure_refs);

  // 4. report.md and report.html from the same layout.
  const report::Layout layout{draft, parts, refs, result, figure_refs};
  result.markdown = report::render_markdown(layout);
  result.html = report::render_html(layout);
  return result;
}

}  // namespace kdr::hka
