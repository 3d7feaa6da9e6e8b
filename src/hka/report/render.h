// The finished report rendered: report.md (markdown.cc) and a self-contained report.html
// (html.cc), both from one layout so they can never disagree. Private to report/.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hka/report/citations.h"
#include "hka/report/report.h"

namespace kdr::hka::report {

struct PlacedFigure {
  const ReportFigure* figure;
  int32_t number;
  std::string caption;  // rewritten
  int32_t source_ref;   // 0 when the source is unknown
};

struct PlacedTable {
  const ReportTable* table;
  int32_t number;
  int32_t source_ref;
  std::vector<std::vector<std::string>> rows;  // the table's rows, citations renumbered
};

// A section of the report in reading order, after rewriting.
struct Part {
  std::string heading;
  std::string text;  // rewritten prose
  std::vector<PlacedFigure> figures;
  std::vector<PlacedTable> tables;
};

struct Layout {
  const ReportDraft& draft;
  const std::vector<Part>& parts;
  const std::vector<Reference>& references;  // reference n is references[n - 1]
  const FinalReport& checks;                 // numbers and citations, counted (verify.h)
  const std::vector<FigureRef>& figure_refs;
};

std::string render_markdown(const Layout& layout);
std::string render_html(const Layout& layout);

// A reference line as markdown, after "n. ": "(A7) Data fact A7 (proportion): ...",
// "(T1) Result of ... — query: `...`". The key in parentheses lets verify_report read [n] back.
std::string reference_markdown(const Reference& ref);

// "Figure 3: <title>" (both writers label a figure so).
std::string figure_label(const PlacedFigure& f);

// Undoes the escaping the markdown writer applies to model text (&amp; &lt; &gt; "]\(").
std::string md_unescape(std::string_view s);

}  // namespace kdr::hka::report
