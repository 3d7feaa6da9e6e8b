// verify_report: a report.md read back. The body (before "## References") holds the prose of
// each section, figure captions, and result tables (not checked, as finalize_report does not
// check them); the references list maps each [n] back to the key it was written for.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>

#include "hka/report/citations.h"
#include "hka/report/numbers.h"
#include "hka/report/render.h"
#include "hka/report/report.h"
#include "hka/report/sentences.h"
#include "hka/report/verify.h"
#include "hka/text.h"

namespace kdr::hka {
namespace {

using report::is_digit;

// A block of prose to check, as finalize_report checked it: one section's text or a caption.
struct Block {
  std::string section;
  std::string text;
  bool numbers = true;  // false for a result table's cell: its citations only
};

// The cells of a markdown table row ("| a | b \\| c |"), unescaped.
std::vector<std::string> row_cells(std::string_view row) {
  std::vector<std::string> cells;
  std::string cell;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == '\\' && i + 1 < row.size() && row[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (row[i] == '|') {
      cells.push_back(std::string(text::trim(cell)));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  if (!cells.empty()) cells.erase(cells.begin());  // before the first '|'
  return cells;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (end == text.size()) break;
    start = end + 1;
  }
  return lines;
}

// "3. (A7) Data fact ..." -> (3, "A7").
std::optional<std::pair<size_t, std::string>> reference_line(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && is_digit(line[i])) ++i;
  if (i == 0 || i > 6 || !line.substr(i).starts_with(". (")) return std::nullopt;
  const size_t open = i + 2;
  const size_t close = line.find(')', open);
  if (close == std::string_view::npos) return std::nullopt;
  const std::string key(line.substr(open + 1, close - open - 1));
  if (!report::is_key(key)) return std::nullopt;
  return std::make_pair(std::stoul(std::string(line.substr(0, i))), key);
}

// "Table 3: ..." as the report writes a result table's title.
bool is_table_title(std::string_view line) {
  if (!line.starts_with("Table ")) return false;
  size_t i = 6;
  while (i < line.size() && is_digit(line[i])) ++i;
  return i > 6 && line.substr(i).starts_with(": ");
}

// The caption of a figure line "*Figure 2: title.* caption (Source: [3] title)".
std::optional<std::string> figure_caption(std::string_view line) {
  if (!line.starts_with("*Figure ")) return std::nullopt;
  const size_t label_end = line.find(".* ");
  if (label_end == std::string_view::npos) return std::string();
  std::string_view caption = line.substr(label_end + 3);
  const size_t source = caption.rfind(" (Source: [");
  if (source != std::string_view::npos && caption.ends_with(")"))
    caption = caption.substr(0, source);
  return std::string(caption);
}

// The blocks of the body, section by section.
std::vector<Block> body_blocks(const std::vector<std::string_view>& body) {
  std::vector<Block> blocks;
  std::optional<Block> prose;
  std::string section;
  auto flush = [&] {
    if (prose && !text::trim(prose->text).empty()) {
      prose->text = report::md_unescape(text::trim(prose->text));
      blocks.push_back(std::move(*prose));
    }
    prose.reset();
  };
  bool in_result_table = false;
  size_t table_line = 0;  // "|" lines of the result table so far (header, rule, rows)
  for (size_t i = 0; i < body.size(); ++i) {
    const std::string_view line = body[i];
    const std::string_view trimmed = text::trim(line);
    if (line.starts_with("## ")) {
      flush();
      section = report::md_unescape(text::trim(line.substr(3)));
      in_result_table = false;
      continue;
    }
    if (section.empty()) continue;  // the notes before the first section
    if (in_result_table) {
      // A result table: its title, its rows and its source line, up to the next paragraph.
      // Its numbers are not checked (finalize_report does not check them); a cell's citations
      // are citations.
      if (trimmed.starts_with("|") && ++table_line > 2) {
        for (const std::string& cell : row_cells(trimmed)) {
          if (cell.find('[') != std::string::npos) {
            blocks.push_back({section, report::md_unescape(cell), false});
          }
        }
      }
      if (trimmed.empty() || trimmed.starts_with("|") || trimmed.starts_with("Source: [")) {
        continue;
      }
      in_result_table = false;
    }
    if (trimmed.starts_with("![")) continue;
    if (std::optional<std::string> caption = figure_caption(trimmed)) {
      flush();
      if (!text::trim(*caption).empty()) {
        blocks.push_back({section, report::md_unescape(text::trim(*caption))});
      }
      continue;
    }
    if (is_table_title(trimmed)) {
      size_t next = i + 1;
      while (next < body.size() && text::trim(body[next]).empty()) ++next;
      if (next < body.size() && (text::trim(body[next]).starts_with("|") ||
                                 text::trim(body[next]).starts_with("Source: ["))) {
        flush();
        in_result_table = true;
        table_line = 0;
        continue;
      }
    }
    if (!prose) prose = Block{section, ""};
    prose->text += std::string(line) + "\n";
  }
  flush();
  return blocks;
}

}  // namespace

FinalReport verify_report(const std::string& markdown, const std::vector<analysis::Fact>& facts,
                          const std::vector<ReportSource>& sources) {
  const std::vector<std::string_view> lines = lines_of(markdown);
  size_t first = 0;
  while (first < lines.size() && text::trim(lines[first]).empty()) ++first;
  if (first == lines.size() || !lines[first].starts_with("# ")) {
    throw ReportError("it does not start with a \"# \" title line");
  }
  size_t references = lines.size();
  for (size_t i = first; i < lines.size(); ++i) {
    if (text::trim(lines[i]) == "## References") {
      references = i;
      break;
    }
  }
  if (references == lines.size()) {
    throw ReportError("it has no \"## References\" section, which says what each [n] cites");
  }
  std::map<size_t, std::string> keys;
  for (size_t i = references + 1; i < lines.size() && !lines[i].starts_with("## "); ++i) {
    if (auto ref = reference_line(lines[i])) keys[ref->first] = ref->second;
  }

  const report::Citable citable(facts, sources);
  const report::Verifier verifier(citable);
  const report::KeyOf key_of = [&](const std::string& item) -> std::string {
    if (report::is_key(item)) return item;
    if (item.empty() || item.size() > 6 || !std::all_of(item.begin(), item.end(), is_digit)) {
      return "";
    }
    const auto it = keys.find(std::stoul(item));
    return it == keys.end() ? "" : it->second;
  };
  FinalReport result;
  const std::vector<std::string_view> body(lines.begin() + static_cast<ptrdiff_t>(first) + 1,
                                           lines.begin() + static_cast<ptrdiff_t>(references));
  for (const Block& block : body_blocks(body)) {
    // Citations, each with the sentence it stands in.
    const std::vector<report::SentenceSpan> spans = report::split_sentences(block.text);
    for (const report::CitationGroup& g : report::citation_groups(block.text)) {
      const report::SentenceSpan* span = report::sentence_at(spans, g.begin);
      for (const std::string& item : g.items) {
        CitationCheck c;
        const std::string key = key_of(item);
        c.key = key.empty() ? item : key;
        c.section = block.section;
        if (std::all_of(item.begin(), item.end(), is_digit) && item.size() <= 6) {
          c.number = static_cast<int32_t>(std::stoul(item));
        }
        if (span) {
          c.sentence = text::one_line(
              std::string_view(block.text).substr(span->begin, span->end - span->begin));
        }
        if (const std::optional<report::Reference> ref =
                key.empty() ? std::nullopt : citable.find(key)) {
          c.resolved = true;
          c.kind = ref->fact ? "fact" : ref->source->kind;
        } else {
          c.reason =
              key.empty() ? "no reference line gives its key" : "no fact or source has this key";
        }
        verifier.check_support(c);
        result.citations.push_back(std::move(c));
      }
    }
    if (block.numbers) verifier.check_numbers(block.text, block.section, key_of, result.numbers);
  }
  report::summarize(result, {});
  return result;
}

}  // namespace kdr::hka

namespace kdr::hka {
namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ReportError(path.string() + ": " +
                      (std::filesystem::exists(path) ? "cannot be read" : "no such file"));
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

nlohmann::json read_json_array(const std::filesystem::path& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw ReportError(path.string() + ": not JSON (" + e.what() + ")");
  }
  if (!j.is_array()) throw ReportError(path.string() + ": not a JSON array");
  return j;
}

}  // namespace

FinalReport reverify_output(const std::filesystem::path& out_dir) {
  const std::filesystem::path report_md = out_dir / "report.md";
  const std::filesystem::path facts_json = out_dir / "analysis" / "facts.json";
  const std::filesystem::path sources_json = out_dir / "analysis" / "sources.json";
  const std::filesystem::path verification_json = out_dir / "verification.json";
  const std::string markdown = read_text(report_md);
  std::vector<analysis::Fact> facts;
  size_t i = 0;
  for (const nlohmann::json& j : read_json_array(facts_json)) {
    ++i;
    try {
      facts.push_back(analysis::fact_from_json(j));
    } catch (const std::exception& e) {
      throw ReportError(facts_json.string() + ": fact " + std::to_string(i) + ": " + e.what());
    }
  }
  std::vector<ReportSource> sources;
  i = 0;
  for (const nlohmann::json& j : read_json_array(sources_json)) {
    ++i;
    try {
      sources.push_back(source_from_json(j));
    } catch (const std::exception& e) {
      throw ReportError(sources_json.string() + ": source " + std::to_string(i) + ": " + e.what());
    }
  }
  FinalReport result;
  try {
    result = verify_report(markdown, facts, sources);
  } catch (const ReportError& e) {
    throw ReportError(report_md.string() + ": " + e.what());
  }
  // The run's own record (backend, calls, tokens) stays; a verification.json that cannot be
  // read is replaced whole.
  nlohmann::json verification = result.verification;
  if (std::filesystem::exists(verification_json)) {
    try {
      const nlohmann::json old = nlohmann::json::parse(read_text(verification_json));
      if (old.is_object() && old.contains("run")) verification["run"] = old.at("run");
    } catch (const nlohmann::json::exception&) {
    }
  }
  result.verification = verification;
  std::ofstream out(verification_json, std::ios::binary | std::ios::trunc);
  out << verification.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  if (!out) throw ReportError(verification_json.string() + ": cannot be written");
  return result;
}

}  // namespace kdr::hka
