// report.html: self-contained (inline SVG as data: URIs, inline style), every text from the
// draft through html_escape, a Content-Security-Policy that forbids scripts and remote loads.
#include <algorithm>

#include "base/base64.h"
#include "hka/report/numbers.h"
#include "hka/report/render.h"
#include "hka/report/verify.h"
#include "hka/text.h"

namespace kdr::hka::report {
namespace {

using text::one_line;
using text::shorten;
using text::trim;

// Replaces each pair of `marker` in already escaped text by <tag>...</tag>.
std::string pair_markup(const std::string& s, std::string_view marker, std::string_view tag) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t open = s.find(marker, i);
    if (open == std::string::npos) break;
    const size_t close = s.find(marker, open + marker.size());
    if (close == std::string::npos || close == open + marker.size()) break;
    out.append(s, i, open - i);
    out += '<';
    out += tag;
    out += '>';
    out.append(s, open + marker.size(), close - open - marker.size());
    out += "</";
    out += tag;
    out += '>';
    i = close + marker.size();
  }
  out.append(s, i);
  return out;
}

// Citation markers "[1, 3]" (only ours are left in the rewritten prose) become links.
std::string link_citations(const std::string& s, size_t reference_count) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    auto group = s[i] == '[' ? parse_citation_group(s, i) : std::nullopt;
    bool ours = group.has_value();
    if (ours) {
      for (const std::string& item : group->items) {
        const bool in_range = !item.empty() && item.size() < 6 &&
                              std::all_of(item.begin(), item.end(), is_digit) &&
                              std::stoul(item) >= 1 && std::stoul(item) <= reference_count;
        ours = ours && in_range;
      }
    }
    if (!ours) {
      out += s[i++];
      continue;
    }
    out += '[';
    for (size_t k = 0; k < group->items.size(); ++k) {
      if (k > 0) out += ", ";
      out += "<a href=\"#ref-" + group->items[k] + "\">" + group->items[k] + "</a>";
    }
    out += ']';
    i = group->end;
  }
  return out;
}

class HtmlWriter {
 public:
  explicit HtmlWriter(size_t reference_count) : reference_count_(reference_count) {}

  // One line of model text: escaped, then our own markup for citations, bold and code.
  std::string inline_text(std::string_view s) const {
    std::string out = link_citations(html_escape(one_line(s)), reference_count_);
    out = pair_markup(out, "**", "strong");
    return pair_markup(out, "`", "code");
  }

  // Paragraphs split by blank lines; "- " / "* " lines are list items; "#" lines headings.
  std::string blocks(std::string_view text) const {
    std::string out;
    std::string paragraph;
    bool in_list = false;
    auto flush_paragraph = [&] {
      if (!trim(paragraph).empty()) out += "<p>" + inline_text(paragraph) + "</p>\n";
      paragraph.clear();
    };
    auto close_list = [&] {
      if (in_list) out += "</ul>\n";
      in_list = false;
    };
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      const std::string_view line = trim(text.substr(start, end - start));
      start = end + 1;
      if (line.empty()) {
        flush_paragraph();
        close_list();
      } else if (line.starts_with("- ") || line.starts_with("* ")) {
        flush_paragraph();
        if (!in_list) out += "<ul>\n";
        in_list = true;
        out += "<li>" + inline_text(line.substr(2)) + "</li>\n";
      } else if (line.starts_with("#")) {
        flush_paragraph();
        close_list();
        out += "<h3>" +
               inline_text(line.substr(std::min(line.find_first_not_of('#'), line.size()))) +
               "</h3>\n";
      } else {
        close_list();
        paragraph += ' ';
        paragraph += line;
      }
      if (end == text.size()) break;
    }
    flush_paragraph();
    close_list();
    return out;
  }

 private:
  size_t reference_count_;
};

constexpr std::string_view kStyle = R"(
body { font-family: Georgia, 'DejaVu Serif', serif; line-height: 1.55; color: #222;
  background: #fff; margin: 0; }
main { max-width: 52rem; margin: 0 auto; padding: 2rem 1.5rem 3rem; }
h1 { font-size: 1.9rem; line-height: 1.25; margin-bottom: 1rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.1rem; }
blockquote { margin: 1rem 0; padding: .5rem 1rem; border-left: 4px solid #c90;
  background: #fff8e6; }
figure { margin: 1.5rem auto; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .92rem; color: #444; margin-top: .4rem; text-align: left; }
table { border-collapse: collapse; margin: 1.2rem auto .3rem; font-size: .9rem;
  font-family: 'DejaVu Sans', Arial, sans-serif; }
caption { font-weight: bold; padding-bottom: .3rem; }
th, td { border: 1px solid #999; padding: .25rem .55rem; text-align: left; }
th { background: #f0f0f0; }
.source { font-size: .85rem; color: #555; text-align: center; }
code { font-family: 'DejaVu Sans Mono', monospace; font-size: .85em; background: #f4f4f4;
  padding: 0 .2em; word-break: break-word; }
ol.references li { margin-bottom: .4rem; font-size: .92rem; }
.unverified { color: #a00; }
footer { max-width: 52rem; margin: 0 auto; padding: 1rem 1.5rem 2rem; color: #777;
  font-size: .85rem; border-top: 1px solid #ddd; }
)";

std::string reference_html(const Reference& ref) {
  if (ref.fact) {
    const analysis::Fact& f = *ref.fact;
    std::string out = "Data fact " + html_escape(f.key) + " (" + html_escape(f.type) +
                      "): " + html_escape(one_line(f.text)) + " Computed from " +
                      html_escape(one_line(f.table_title.empty() ? f.table : f.table_title));
    if (!f.source.empty()) out += " (" + html_escape(one_line(f.source)) + ")";
    return out + " by the SQL in <code>analysis/facts.sql</code>.";
  }
  const ReportSource& s = *ref.source;
  std::string out = html_escape(one_line(s.title)) + " \xE2\x80\x94 ";
  if (s.kind == "table") {
    out += "query: <code>" + html_escape(one_line(s.sql)) + "</code>";
    std::vector<std::string> parts;
    if (!s.csv_path.empty()) parts.push_back("result: " + html_escape(one_line(s.csv_path)));
    if (!s.location.empty()) parts.push_back("source: " + html_escape(one_line(s.location)));
    if (!parts.empty()) {
      out += " (";
      for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
      out += ")";
    }
    return out;
  }
  out += html_escape(one_line(s.location));
  if (!trim(s.text).empty()) {
    out += ": \xE2\x80\x9C" + html_escape(shorten(s.text, 240)) + "\xE2\x80\x9D";
  }
  return out;
}

std::string source_line_html(int32_t ref, const std::vector<Reference>& refs) {
  if (ref <= 0) return "";
  const std::string n = std::to_string(ref);
  const Reference& r = refs[static_cast<size_t>(ref - 1)];
  const std::string& title = r.source ? r.source->title : r.fact->table_title;
  return "Source: [<a href=\"#ref-" + n + "\">" + n + "</a>] " + html_escape(one_line(title));
}

}  // namespace

std::string render_html(const Layout& l) {
  const ReportDraft& draft = l.draft;
  const std::vector<Reference>& refs = l.references;
  const HtmlWriter writer(refs.size());
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
      "style-src 'unsafe-inline'\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" +
      html_escape(one_line(draft.title)) + "</title>\n<style>" + std::string(kStyle) +
      "</style>\n</head>\n<body>\n<main>\n<h1>" + html_escape(one_line(draft.title)) + "</h1>\n";
  if (!draft.notes.empty()) {
    html += "<blockquote>\n";
    for (const std::string& note : draft.notes) html += "<p>" + writer.inline_text(note) + "</p>\n";
    html += "</blockquote>\n";
  }
  for (const Part& part : l.parts) {
    if (trim(part.text).empty() && part.figures.empty() && part.tables.empty()) continue;
    html += "<section>\n<h2>" + html_escape(one_line(part.heading)) + "</h2>\n";
    html += writer.blocks(part.text);
    for (const PlacedFigure& f : part.figures) {
      const std::string label = one_line(figure_label(f));
      html += "<figure>\n<img src=\"data:image/svg+xml;base64," + base64_encode(f.figure->svg) +
              "\" alt=\"" + html_escape(label) + "\">\n<figcaption><strong>" + html_escape(label) +
              ".</strong> " + writer.inline_text(f.caption);
      if (f.source_ref > 0) html += " (" + source_line_html(f.source_ref, refs) + ")";
      html += "</figcaption>\n</figure>\n";
    }
    for (const PlacedTable& t : part.tables) {
      html += "<table>\n<caption>Table " + std::to_string(t.number) + ": " +
              html_escape(one_line(t.table->title)) + "</caption>\n";
      if (!t.table->columns.empty()) {
        html += "<thead><tr>";
        for (const std::string& c : t.table->columns)
          html += "<th>" + html_escape(one_line(c)) + "</th>";
        html += "</tr></thead>\n";
      }
      html += "<tbody>\n";
      const size_t width = std::max<size_t>(t.table->columns.size(), 1);
      for (const auto& row : t.rows) {
        html += "<tr>";
        for (size_t c = 0; c < width; ++c) {
          html += "<td>" +
                  (c < row.size() ? link_citations(html_escape(one_line(row[c])), refs.size())
                                  : std::string()) +
                  "</td>";
        }
        html += "</tr>\n";
      }
      html += "</tbody>\n</table>\n";
      if (t.source_ref > 0)
        html += "<p class=\"source\">" + source_line_html(t.source_ref, refs) + "</p>\n";
    }
    html += "</section>\n";
  }
  html += "<section>\n<h2>References</h2>\n";
  if (refs.empty()) html += "<p>No sources were cited.</p>\n";
  if (!refs.empty()) {
    html += "<ol class=\"references\">\n";
    for (size_t i = 0; i < refs.size(); ++i) {
      html += "<li id=\"ref-" + std::to_string(i + 1) + "\">" + reference_html(refs[i]) + "</li>\n";
    }
    html += "</ol>\n";
  }
  const FinalReport& r = l.checks;
  html += "</section>\n<section>\n<h2>Verification</h2>\n<p>" +
          html_escape(verification_summary(r)) + "</p>\n";
  if (r.unverified_numbers > 0) {
    html += "<h3>Unverified numbers</h3>\n<ul>\n";
    for (const NumberCheck& n : r.numbers) {
      if (n.verified) continue;
      html += "<li><strong class=\"unverified\">" + html_escape(n.text) + "</strong> (" +
              html_escape(one_line(n.section)) + "): " + html_escape(n.reason) + ". \xE2\x80\x9C" +
              html_escape(n.context) + "\xE2\x80\x9D</li>\n";
    }
    html += "</ul>\n";
  }
  if (r.unsupported_citations > 0) {
    html += "<h3>Citations the cited passage does not support</h3>\n<ul>\n";
    for (const CitationCheck& c : r.citations) {
      if (!c.resolved || c.supported) continue;
      html += "<li><strong class=\"unverified\">[" + std::to_string(c.number) + "]</strong> (" +
              html_escape(c.key) + ") in " + html_escape(one_line(c.section)) + ": " +
              html_escape(c.reason) + ". \xE2\x80\x9C" + html_escape(c.sentence) +
              "\xE2\x80\x9D</li>\n";
    }
    html += "</ul>\n";
  }
  if (r.unresolved_citations > 0) {
    html += "<h3>Unresolved citations (removed from the text)</h3>\n<ul>\n";
    for (const CitationCheck& c : r.citations) {
      if (!c.resolved) {
        html +=
            "<li>[" + html_escape(c.key) + "] in " + html_escape(one_line(c.section)) + "</li>\n";
      }
    }
    html += "</ul>\n";
  }
  const bool unknown = std::any_of(l.figure_refs.begin(), l.figure_refs.end(),
                                   [](const FigureRef& f) { return !f.resolved; });
  if (unknown) {
    html += "<h3>Unknown figure and table references</h3>\n<ul>\n";
    for (const FigureRef& f : l.figure_refs) {
      if (!f.resolved) {
        html += "<li>" + f.kind + " " + html_escape(f.key) + " in " +
                html_escape(one_line(f.section)) + "</li>\n";
      }
    }
    html += "</ul>\n";
  }
  html += "</section>\n</main>\n";
  if (!draft.generated_by.empty()) {
    html += "<footer>Generated by " + html_escape(one_line(draft.generated_by)) + "</footer>\n";
  }
  html += "</body>\n</html>\n";
  return html;
}

}  // namespace kdr::hka::report
