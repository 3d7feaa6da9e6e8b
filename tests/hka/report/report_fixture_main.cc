// report_fixture: reads a ReportDraft as JSON on stdin and writes what finalize_report makes
// of it to stdout: report.html (default), --markdown or --verification. Used by
// tests/python/test_report_browser.py to open a report built from hostile text in Chromium.
#include <iostream>
#include <iterator>
#include <string>

#include "hka/report/report.h"

namespace {

using kdr::hka::ReportDraft;
using nlohmann::json;

std::string str(const json& j, const char* key) { return j.value(key, std::string()); }

std::vector<std::string> strings(const json& j, const char* key) {
  return j.value(key, std::vector<std::string>());
}

std::vector<std::vector<std::string>> rows(const json& j) {
  return j.value("rows", std::vector<std::vector<std::string>>());
}

ReportDraft draft_from_json(const json& j) {
  ReportDraft d;
  d.title = str(j, "title");
  d.question = str(j, "question");
  d.abstract = str(j, "abstract");
  d.introduction = str(j, "introduction");
  d.conclusion = str(j, "conclusion");
  d.notes = strings(j, "notes");
  d.generated_by = str(j, "generated_by");
  for (const json& s : j.value("sections", json::array())) {
    d.sections.push_back(
        {str(s, "heading"), str(s, "text"), strings(s, "figure_keys"), strings(s, "table_keys")});
  }
  for (const json& f : j.value("figures", json::array())) {
    d.figures.push_back({str(f, "key"), str(f, "title"), str(f, "caption"), str(f, "svg"),
                         str(f, "svg_path"), str(f, "png_path"), str(f, "source_key")});
  }
  for (const json& t : j.value("tables", json::array())) {
    d.tables.push_back(
        {str(t, "key"), str(t, "title"), strings(t, "columns"), rows(t), str(t, "source_key")});
  }
  for (const json& s : j.value("sources", json::array())) {
    d.sources.push_back({str(s, "key"), str(s, "kind"), str(s, "title"), str(s, "location"),
                         str(s, "sql"), str(s, "csv_path"), strings(s, "columns"), rows(s),
                         str(s, "text")});
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "--html";
  const std::string input{std::istreambuf_iterator<char>(std::cin),
                          std::istreambuf_iterator<char>()};
  const kdr::hka::FinalReport report =
      kdr::hka::finalize_report(draft_from_json(json::parse(input)));
  if (what == "--markdown") {
    std::cout << report.markdown;
  } else if (what == "--verification") {
    std::cout << report.verification.dump(2) << "\n";
  } else {
    std::cout << report.html;
  }
  return 0;
}
