// report.md: model text escaped so that nothing in it becomes HTML or a link.
#include <algorithm>
#include <cstdio>

#include "hka/report/render.h"
#include "hka/report/verify.h"
#include "hka/text.h"

namespace kdr::hka::report {
namespace {

using text::one_line;
using text::shorten;
using text::trim;

// Model text is text: nothing in it may become HTML or a link when the markdown is rendered.
std::string md_text(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == ']' && i + 1 < s.size() && s[i + 1] == '(') {
      out += "]\\";  // "[x](url)" stays text
    } else {
      out += c;
    }
  }
  return out;
}

std::string md_inline(std::string_view s) { return md_text(one_line(s)); }

std::string md_cell(std::string_view s) {
  std::string out;
  for (char c : md_inline(s)) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

// For ![alt](path): brackets in the alt text and spaces or parentheses in the path escaped.
std::string md_alt(std::string_view s) {
  std::string out;
  for (char c : md_inline(s)) {
    if (c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string md_path(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ') {
      out += "%20";
    } else if (c == '(') {
      out += "%28";
    } else if (c == ')') {
      out += "%29";
    } else if (c == '<' || c == '>' || c == '"' || c == '\n' || c == '\r') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// A code span long enough to hold any run of backticks in `s`.
std::string md_code(std::string_view s) {
  const std::string line = one_line(s);
  size_t longest = 0;
  size_t run = 0;
  for (char c : line) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(longest + 1, '`');
  return fence + " " + line + " " + fence;
}

std::string source_line_md(int32_t ref, const std::vector<Reference>& refs) {
  if (ref <= 0) return "";
  const Reference& r = refs[static_cast<size_t>(ref - 1)];
  const std::string& title = r.source ? r.source->title : r.fact->table_title;
  return "Source: [" + std::to_string(ref) + "] " + md_inline(title);
}

}  // namespace

std::string md_unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i).starts_with("&amp;")) {
      out += '&';
      i += 5;
    } else if (s.substr(i).starts_with("&lt;")) {
      out += '<';
      i += 4;
    } else if (s.substr(i).starts_with("&gt;")) {
      out += '>';
      i += 4;
    } else if (s.substr(i).starts_with("]\\(")) {
      out += "](";
      i += 3;
    } else {
      out += s[i++];
    }
  }
  return out;
}

std::string figure_label(const PlacedFigure& f) {
  return "Figure " + std::to_string(f.number) + ": " + f.figure->title;
}

std::string reference_markdown(const Reference& ref) {
  std::string out = "(" + ref.key + ") ";
  if (ref.fact) {
    const analysis::Fact& f = *ref.fact;
    out += "Data fact " + md_inline(f.key) + " (" + md_inline(f.type) + "): " + md_inline(f.text);
    out += " Computed from " + md_inline(f.table_title.empty() ? f.table : f.table_title);
    if (!f.source.empty()) out += " (" + md_inline(f.source) + ")";
    return out + " by the SQL in analysis/facts.sql.";
  }
  const ReportSource& s = *ref.source;
  if (s.kind == "table") {
    out += md_inline(s.title) + " \xE2\x80\x94 query: " + md_code(s.sql);
    std::vector<std::string> parts;
    if (!s.csv_path.empty()) parts.push_back("result: " + md_inline(s.csv_path));
    if (!s.location.empty()) parts.push_back("source: " + md_inline(s.location));
    if (!parts.empty()) {
      out += " (";
      for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
      out += ")";
    }
    return out;
  }
  out += md_inline(s.title) + " \xE2\x80\x94 " + md_inline(s.location);
  if (!trim(s.text).empty()) {
    out += ": \xE2\x80\x9C" + md_inline(shorten(s.text, 240)) + "\xE2\x80\x9D";
  }
  return out;
}

std::string render_markdown(const Layout& l) {
  const ReportDraft& draft = l.draft;
  const std::vector<Reference>& refs = l.references;
  std::string md = "# " + md_inline(draft.title) + "\n\n";
  for (size_t i = 0; i < draft.notes.size(); ++i) {
    md += (i ? ">\n> " : "> ") + md_inline(draft.notes[i]) + "\n";
  }
  if (!draft.notes.empty()) md += "\n";
  for (const Part& part : l.parts) {
    if (trim(part.text).empty() && part.figures.empty() && part.tables.empty()) continue;
    md += "## " + md_inline(part.heading) + "\n\n";
    if (!trim(part.text).empty()) md += md_text(trim(part.text)) + "\n\n";
    for (const PlacedFigure& f : part.figures) {
      const std::string label = figure_label(f);
      md += "![" + md_alt(label) + "](" + md_path(f.figure->svg_path) + ")\n\n";
      md += "*" + md_inline(label) + ".* " + md_inline(f.caption);
      if (f.source_ref > 0) md += " (" + source_line_md(f.source_ref, refs) + ")";
      md += "\n\n";
    }
    for (const PlacedTable& t : part.tables) {
      md += "Table " + std::to_string(t.number) + ": " + md_inline(t.table->title) + "\n\n";
      if (!t.table->columns.empty()) {
        md += "|";
        for (const std::string& c : t.table->columns) {
          md += ' ';
          md += md_cell(c);
          md += " |";
        }
        md += "\n|";
        for (size_t c = 0; c < t.table->columns.size(); ++c) md += " --- |";
        md += "\n";
        for (const auto& row : t.rows) {
          md += "|";
          for (size_t c = 0; c < t.table->columns.size(); ++c) {
            md += ' ';
            if (c < row.size()) md += md_cell(row[c]);
            md += " |";
          }
          md += "\n";
        }
        md += "\n";
      }
      if (t.source_ref > 0) md += source_line_md(t.source_ref, refs) + "\n\n";
    }
  }
  md += "## References\n\n";
  if (refs.empty()) md += "No sources were cited.\n\n";
  for (size_t i = 0; i < refs.size(); ++i) {
    md += std::to_string(i + 1) + ". " + reference_markdown(refs[i]) + "\n";
  }
  if (!refs.empty()) md += "\n";

  const FinalReport& r = l.checks;
  md += "## Verification\n\n" + verification_summary(r) + "\n\n";
  if (r.unverified_numbers > 0) {
    md += "Unverified numbers:\n\n";
    for (const NumberCheck& n : r.numbers) {
      if (n.verified) continue;
      md += "- " + md_inline(n.text) + " (" + md_inline(n.section) + "): " + md_inline(n.reason) +
            ". \xE2\x80\x9C" + md_inline(n.context) + "\xE2\x80\x9D\n";
    }
    md += "\n";
  }
  if (r.unsupported_citations > 0) {
    md += "Citations the cited passage does not support:\n\n";
    for (const CitationCheck& c : r.citations) {
      if (!c.resolved || c.supported) continue;
      md += "- [" + std::to_string(c.number) + "] (" + md_inline(c.key) + ") in " +
            md_inline(c.section) + ": " + md_inline(c.reason) + ". \xE2\x80\x9C" +
            md_inline(c.sentence) + "\xE2\x80\x9D\n";
    }
    md += "\n";
  }
  if (r.unresolved_citations > 0) {
    md += "Unresolved citations (removed from the text):\n\n";
    for (const CitationCheck& c : r.citations) {
      if (!c.resolved) md += "- [" + md_inline(c.key) + "] in " + md_inline(c.section) + "\n";
    }
    md += "\n";
  }
  const bool unknown = std::any_of(l.figure_refs.begin(), l.figure_refs.end(),
                                   [](const FigureRef& f) { return !f.resolved; });
  if (unknown) {
    md += "Unknown figure and table references:\n\n";
    for (const FigureRef& f : l.figure_refs) {
      if (!f.resolved)
        md += "- " + f.kind + " " + md_inline(f.key) + " in " + md_inline(f.section) + "\n";
    }
    md += "\n";
  }
  if (!draft.generated_by.empty())
    md += "---\n\nGenerated by " + md_inline(draft.generated_by) + "\n";
  return md;
}

}  // namespace kdr::hka::report
