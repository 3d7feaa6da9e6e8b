// The research report: what the writer produced, checked and rendered.
//
// The pipeline fills a ReportDraft: sections of prose written by the model, the figures and
// result tables the analyzers made, the data facts the run computed (analysis/facts.h) and the
// sources (query results with their SQL, document passages) the prose may cite. finalize_report()
// then
//   1. resolves citations: the prose cites facts and sources by key in square brackets ("[A3]",
//      "[D1, T3]"); each resolving key is renumbered [1], [2] ... in order of first use, and
//      the reference list holds exactly those, each line starting with its key ("3. (A7) Data
//      fact A7 ..."); a key that resolves to nothing is removed from the text and recorded as an
//      unresolved citation;
//   2. numbers figures and tables in order of placement and rewrites the prose's "Figure F3"
//      / "Table R2" to "Figure 1" / "Table 1" (an unknown one is recorded and left as text);
//   3. checks every number in the prose (not citation markers or figure/table numbers) against
//      the facts and sources its own sentence cites, and every cited document passage for
//      support of its sentence (report/verify.h has the rules). Unverified numbers and
//      unsupported citations are listed, with the reason, in the report's "Verification"
//      section and in verification.json;
//   4. renders report.md and a self-contained report.html: every text it did not write is
//      HTML-escaped, figures are inline SVG as data: URIs in <img> (an SVG shown as an image
//      never runs scripts), a Content-Security-Policy forbids scripts and remote loads.
// verify_report() re-runs step 3 on a report.md a user edited (`kdr research verify OUT`).
#pragma once
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "hka/analysis/facts.h"

namespace kdr::hka {

struct ReportSource {
  std::string key;       // "T1" (a query result) or "D1" (a document passage): unique
  std::string kind;      // "table" or "document"
  std::string title;     // table title + what the query computed / document title
  std::string location;  // table: source file; document: path, headings, page, lines
  std::string sql;       // table: the SQL whose result this is
  std::string csv_path;  // table: the result as CSV, relative to the output folder
  // The evidence numbers come from: a table's result (header + rows), a passage's text.
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::string text;  // document: the passage
};

struct ReportFigure {
  std::string key;  // "F1": unique
  std::string title;
  std::string caption;   // the insight drawn from the data; may cite sources
  std::string svg;       // the SVG document
  std::string svg_path;  // relative to the output folder (figures/fig1.svg)
  std::string png_path;
  std::string source_key;  // the ReportSource with the data drawn
};

struct ReportTable {
  std::string key;  // "R1": unique
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;  // shown as is (cap them before)
  std::string source_key;
};

struct ReportSection {
  std::string heading;
  std::string text;  // paragraphs separated by blank lines; "- " lines are list items
  std::vector<std::string> figure_keys;  // placed after the text, in this order
  std::vector<std::string> table_keys;
};

struct ReportDraft {
  std::string title;
  std::string question;
  std::string abstract;
  std::string introduction;
  std::vector<ReportSection> sections;
  std::string conclusion;
  std::vector<ReportFigure> figures;
  std::vector<ReportTable> tables;
  std::vector<ReportSource> sources;
  // The data facts the run computed; a fact with a key ("A3") may be cited as [A3]. Its
  // values are what numbers in a sentence citing it are checked against.
  std::vector<analysis::Fact> facts;
  // Notes shown at the top of the report, e.g. "Stopped early: the token budget of 20000
  // was used up; subtasks 3-4 were not analysed."
  std::vector<std::string> notes;
  std::string generated_by;  // backend and model, for the footer
};

struct CitationCheck {
  std::string key;      // as written (the key a reference number stands for)
  std::string section;  // heading of the section it was in
  bool resolved = false;
  int32_t number = 0;     // the [n] it became (0 when unresolved)
  std::string kind;       // what it resolved to: "fact", "table" or "document"
  std::string sentence;   // the sentence it stands in
  bool supported = true;  // a document passage holds the sentence's claim (verify.h)
  std::string reason;     // why it is unresolved or unsupported
};

struct NumberCheck {
  std::string text;  // as written, e.g. "12.5%"
  double value = 0;  // the number it denotes (12.5 for "12.5%")
  std::string section;
  std::string context;  // the sentence it is in
  bool verified = false;
  std::string fact_key;    // the fact it matched ("A3"), or
  std::string source_key;  // the source it matched ("T1", "D2")
  std::string how;         // "exact", "rounded", "percent of fraction", "year of the period
                           // 2017", "difference of 120 and 100", "ratio ...", "percent change ..."
  std::string reason;      // unverified: "no cited fact holds 12.3", "year 2003 not in the
                           // cited facts", "says rose, the fact fell", "names no entity of the
                           // fact (Wind)" ...
};

struct FinalReport {
  std::string markdown;
  std::string html;
  nlohmann::json verification;  // {"citations": [...], "numbers": [...], "summary": {...}}
  std::vector<CitationCheck> citations;
  std::vector<NumberCheck> numbers;
  int32_t unverified_numbers = 0;
  int32_t unresolved_citations = 0;
  int32_t unsupported_citations = 0;
};

FinalReport finalize_report(const ReportDraft& draft);

// What finalize_report will say of the numbers of one piece of prose written with citation
// keys as the writer writes them ([A3], [T1]): each checked against the facts (with their keys
// set) and sources, by the same rules. The writer uses it to keep only prose that verifies.
std::vector<NumberCheck> check_prose(const std::string& text,
                                     const std::vector<analysis::Fact>& facts,
                                     const std::vector<ReportSource>& sources);

struct ReportError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Re-verifies a report.md as finalize_report writes it, after a user edited it: its body (the
// sections before "## References") is checked against `facts` and `sources` as finalize_report
// checks a draft, each [n] read back as the key its reference line names. The result has the
// same fields as FinalReport (markdown and html empty; figure references are already numbers).
// Throws ReportError when the text is not such a report (no "# " title, no "## References").
FinalReport verify_report(const std::string& markdown, const std::vector<analysis::Fact>& facts,
                          const std::vector<ReportSource>& sources);

// Re-verifies a finished run after its report was edited: OUT/report.md against
// OUT/analysis/facts.json (analysis::to_json of every fact the run computed) and
// OUT/analysis/sources.json (to_json of every source), then rewrites OUT/verification.json,
// keeping its "run" object. Throws ReportError naming the file and what is wrong with it.
FinalReport reverify_output(const std::filesystem::path& out_dir);

// A source as JSON (analysis/sources.json holds an array of them) and back; from_json throws
// ReportError naming the missing or mistyped field.
nlohmann::json to_json(const ReportSource& source);
ReportSource source_from_json(const nlohmann::json& j);

// The numbers a text states, as NumberCheck records (value, text, sentence), skipping
// citation markers ([3], [T2]), "Figure N" / "Table N" and list or heading numbering.
std::vector<NumberCheck> extract_numbers(const std::string& text);

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string html_escape(const std::string& text);

}  // namespace kdr::hka
