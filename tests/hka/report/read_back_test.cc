// verify_report and reverify_output: a finished report.md read back, edited, re-verified.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../../base/seed.h"
#include "hka/report/report.h"

namespace kdr::hka {
namespace {

namespace fs = std::filesystem;
using analysis::Fact;

Fact renewables_change() {
  Fact f;
  f.id = "change-1";
  f.key = "A1";
  f.type = "change";
  f.table = "iowa_electricity";
  f.table_title = "Iowa electricity";
  f.source = "iowa-electricity.csv";
  f.measures = {"net generation"};
  f.unit = "thousand MWh";
  f.entity = "Renewables";
  f.period_from = "2001";
  f.period_to = "2017";
  f.values = {{"first", 1437, "thousand MWh", "Renewables", "2001"},
              {"last", 21933, "thousand MWh", "Renewables", "2017"},
              {"change", 20496, "thousand MWh", "Renewables", ""},
              {"pct_change", 1426.3, "%", "Renewables", ""}};
  f.direction = 1;
  f.mentions = {"Renewables", "net generation"};
  f.text =
      "Net generation for Renewables rose from 1,437 thousand MWh in 2001 to 21,933 thousand "
      "MWh in 2017, an increase of 20,496 thousand MWh (+1,426%).";
  f.sql = "SELECT 1";
  return f;
}

Fact fossil_change() {
  Fact f = renewables_change();
  f.id = "change-2";
  f.key = "A2";
  f.entity = "Fossil Fuels";
  f.values = {{"first", 35361, "thousand MWh", "Fossil Fuels", "2001"},
              {"last", 29329, "thousand MWh", "Fossil Fuels", "2017"},
              {"change", -6032, "thousand MWh", "Fossil Fuels", ""},
              {"pct_change", -17.06, "%", "Fossil Fuels", ""}};
  f.direction = -1;
  f.mentions = {"Fossil Fuels", "net generation"};
  f.text = "Net generation for Fossil Fuels fell.";
  return f;
}

std::vector<ReportSource> sources() {
  ReportSource t;
  t.key = "T1";
  t.kind = "table";
  t.title = "Generation by source";
  t.location = "iowa-electricity.csv";
  t.sql = "SELECT source, year, value FROM iowa_electricity";
  t.csv_path = "analysis/q1.csv";
  t.columns = {"source", "year", "value"};
  t.rows = {{"Wind", "2017", "21,000"}, {"Coal", "2017", "20,100"}};
  ReportSource d;
  d.key = "D1";
  d.kind = "document";
  d.title = "Wind in Iowa";
  d.location = "docs/wind.md, lines 1-4";
  d.text = "Iowa's wind capacity grew rapidly after 2005, helped by federal tax credits.";
  return {t, d};
}

ReportDraft draft() {
  ReportDraft d;
  d.title = "Iowa's generation mix & how it changed";
  d.question = "How did Iowa's mix change?";
  d.notes = {"Stopped early: 3 subtasks were not analysed."};
  d.abstract =
      "Renewables rose from 1,437 to 21,933 thousand MWh [A1] while Fossil Fuels fell "
      "17.1% [A2].";
  d.introduction = "Wind capacity grew rapidly after 2005 thanks to federal tax credits [D1].";
  d.sections = {{"Results",
                 "- Wind produced 21,000 thousand MWh in 2017 [T1].\n"
                 "- Coal produced 20,100 [T1] & fossil fuels fell by 6,032 thousand MWh [A2].\n\n"
                 "As Figure F1 shows, Renewables gained 20,496 thousand MWh [A1].",
                 {"F1"},
                 {"R1"}}};
  d.conclusion = "Renewables now produce 21.9 million MWh [A1].";
  ReportFigure f;
  f.key = "F1";
  f.title = "Generation (thousand MWh)";
  f.caption = "Renewables rose from 1,437 thousand MWh in 2001 to 21,933 in 2017 [A1].";
  f.svg = "<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
  f.svg_path = "figures/fig1.svg";
  f.source_key = "T1";
  d.figures = {f};
  d.tables = {{"R1",
               "Top sources 2017",
               {"source", "value", "fact"},
               {{"Wind", "99,999", "[A1]"}, {"Coal | lignite", "1", "[T1, D1]"}},
               "T1"}};
  d.sources = sources();
  d.facts = {renewables_change(), fossil_change()};
  return d;
}

// The parts of verification.json that re-reading must reproduce: the numbers in order, the
// resolved citations in any order (a group's keys are written in order of their numbers).
nlohmann::json checks(const nlohmann::json& v) {
  std::vector<std::string> citations;
  for (const nlohmann::json& c : v["citations"]) {
    if (c["resolved"].get<bool>()) citations.push_back(c.dump());
  }
  std::sort(citations.begin(), citations.end());
  return {{"numbers", v["numbers"]}, {"citations", citations}};
}

TEST(ReportReadBack, ReReadingTheWrittenReportGivesTheSameChecks) {
  const ReportDraft d = draft();
  const FinalReport written = finalize_report(d);
  EXPECT_EQ(written.unverified_numbers, 0) << written.verification["numbers"].dump(1);
  const FinalReport again = verify_report(written.markdown, d.facts, d.sources);
  EXPECT_EQ(checks(again.verification), checks(written.verification));
  EXPECT_EQ(again.numbers.size(), 14u);
  EXPECT_EQ(again.unverified_numbers, 0);
  EXPECT_EQ(again.unresolved_citations, 0);
  EXPECT_EQ(again.citations.size(), written.citations.size());
}

TEST(ReportReadBack, AnEditedNumberIsFlagged) {
  const ReportDraft d = draft();
  std::string md = finalize_report(d).markdown;
  const size_t at = md.find("rose from 1,437 to 21,933");
  ASSERT_NE(at, std::string::npos);
  md.replace(md.find("21,933", at), 6, "23,933");
  const FinalReport again = verify_report(md, d.facts, d.sources);
  EXPECT_EQ(again.unverified_numbers, 1);
  for (const NumberCheck& n : again.numbers) {
    if (!n.verified) {
      EXPECT_EQ(n.text, "23,933 thousand");
      EXPECT_EQ(n.reason, "no cited fact holds 23,933 thousand");
      EXPECT_EQ(n.section, "Abstract");
    }
  }
}

TEST(ReportReadBack, AKeyWrittenInTheEditResolves) {
  const ReportDraft d = draft();
  std::string md = finalize_report(d).markdown;
  const size_t conclusion = md.find("## Conclusion");
  ASSERT_NE(conclusion, std::string::npos);
  md.insert(md.find('\n', conclusion + 20), " Fossil Fuels fell to 29,329 thousand MWh [A2].");
  const FinalReport again = verify_report(md, d.facts, d.sources);
  EXPECT_EQ(again.unverified_numbers, 0) << again.verification["numbers"].dump(1);
  EXPECT_EQ(again.citations.back().key, "A2");
  EXPECT_TRUE(again.citations.back().resolved);
  // A reference number with no reference line stands for nothing.
  md.insert(md.find('\n', conclusion + 20), " Coal fell [9].");
  EXPECT_EQ(verify_report(md, d.facts, d.sources).unresolved_citations, 1);
}

TEST(ReportReadBack, ATextThatIsNoReportIsRefused) {
  const ReportDraft d = draft();
  EXPECT_THROW(verify_report("Just some notes.\n", d.facts, d.sources), ReportError);
  try {
    verify_report("# Title\n\n## Results\n\nText [1].\n", d.facts, d.sources);
    FAIL() << "no error";
  } catch (const ReportError& e) {
    EXPECT_NE(std::string(e.what()).find("## References"), std::string::npos) << e.what();
  }
}

TEST(ReportReadBack, SourcesToJsonAndBack) {
  for (const ReportSource& s : sources()) {
    const ReportSource back = source_from_json(to_json(s));
    EXPECT_EQ(to_json(back), to_json(s));
  }
  nlohmann::json numeric = to_json(sources()[0]);
  numeric["rows"] = {{"Wind", 2017, 21000.5}};
  EXPECT_EQ(source_from_json(numeric).rows[0][1], "2017");
  EXPECT_THROW(source_from_json({{"kind", "table"}}), ReportError);
  EXPECT_THROW(source_from_json({{"key", "T1"}, {"kind", "table"}, {"rows", "x"}}), ReportError);
  EXPECT_THROW(source_from_json({{"key", 3}, {"kind", "table"}}), ReportError);
}

TEST(ReportReadBack, RandomEditsGiveAResultOrAReportError) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  const ReportDraft d = draft();
  const std::string written = finalize_report(d).markdown;
  const std::vector<std::string> pieces = {"[",
                                           "]",
                                           "[1]",
                                           "[99]",
                                           "[A2]",
                                           "[3-5]",
                                           "(",
                                           ")",
                                           "|",
                                           "\n",
                                           "\n\n",
                                           "## ",
                                           "# ",
                                           "*Figure 1: x.* ",
                                           "Table 2: y\n\n",
                                           "- ",
                                           "1. (A1) ",
                                           "2001",
                                           "-",
                                           "\xE2\x88\x92",
                                           "%",
                                           "12.5",
                                           "3.4 million",
                                           "p < 0.001",
                                           "r = ",
                                           "from 2001 to 2017",
                                           "fell ",
                                           "rose ",
                                           "Renewables",
                                           "\xC3\xA9",
                                           ".",
                                           " ",
                                           "&amp;",
                                           "]\\("};
  for (int round = 0; round < 300; ++round) {
    std::string md = written;
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % (md.size() + 1);
      if (rng() % 3 == 0 && at < md.size()) {
        md.erase(at, rng() % 40);
      } else {
        md.insert(at, pieces[rng() % pieces.size()]);
      }
    }
    try {
      const FinalReport r = verify_report(md, d.facts, d.sources);
      EXPECT_EQ(r.verification["summary"]["numbers"].get<size_t>(), r.numbers.size());
    } catch (const ReportError&) {
    }
    if (HasFailure()) break;
  }
}

class ReverifyOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = fs::temp_directory_path() /
           ("kdr-reverify-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(out_);
    fs::create_directories(out_ / "analysis");
    const ReportDraft d = draft();
    const FinalReport r = finalize_report(d);
    write("report.md", r.markdown);
    nlohmann::json facts = nlohmann::json::array();
    for (const Fact& f : d.facts) facts.push_back(analysis::to_json(f));
    write("analysis/facts.json", facts.dump(1));
    nlohmann::json sources = nlohmann::json::array();
    for (const ReportSource& s : d.sources) sources.push_back(to_json(s));
    write("analysis/sources.json", sources.dump(1));
    nlohmann::json verification = r.verification;
    verification["run"] = {{"backend", "fake"}, {"llm_calls", 7}};
    write("verification.json", verification.dump(2));
  }
  void TearDown() override { fs::remove_all(out_); }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(out_ / name, std::ios::binary) << text;
  }
  std::string read(const std::string& name) {
    std::ifstream in(out_ / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string error() {
    try {
      reverify_output(out_);
    } catch (const ReportError& e) {
      return e.what();
    }
    return "(no error)";
  }

  fs::path out_;
};

TEST_F(ReverifyOutput, RewritesVerificationAndKeepsTheRun) {
  std::string md = read("report.md");
  md.replace(md.find("17.1%"), 5, "27.1%");
  write("report.md", md);
  const FinalReport r = reverify_output(out_);
  EXPECT_EQ(r.unverified_numbers, 1);
  const nlohmann::json v = nlohmann::json::parse(read("verification.json"));
  EXPECT_EQ(v["summary"]["unverified_numbers"], 1);
  EXPECT_EQ(v["run"]["backend"], "fake");
  EXPECT_EQ(v["run"]["llm_calls"], 7);
}

TEST_F(ReverifyOutput, AMissingFileIsNamed) {
  fs::remove(out_ / "analysis" / "facts.json");
  EXPECT_NE(error().find("analysis/facts.json: no such file"), std::string::npos) << error();
  fs::remove(out_ / "report.md");
  EXPECT_NE(error().find("report.md: no such file"), std::string::npos) << error();
}

TEST_F(ReverifyOutput, AMalformedFileIsNamedWithTheProblem) {
  write("analysis/facts.json", "[{\"id\": \"x\", ");
  EXPECT_NE(error().find("facts.json: not JSON"), std::string::npos) << error();
  write("analysis/facts.json", "{}");
  EXPECT_NE(error().find("facts.json: not a JSON array"), std::string::npos) << error();
  write("analysis/facts.json", "[{\"id\": \"x\", \"type\": \"change\"}]");
  EXPECT_NE(error().find("facts.json: fact 1: fact: missing field \"values\""), std::string::npos)
      << error();
  write("analysis/facts.json", "[]");
  write("analysis/sources.json", "[{\"kind\": \"table\"}]");
  EXPECT_NE(error().find("sources.json: source 1: a source without \"key\""), std::string::npos)
      << error();
  write("analysis/sources.json", "[]");
  write("report.md", "no title\n");
  EXPECT_NE(error().find("report.md: it does not start with a \"# \" title line"),
            std::string::npos)
      << error();
}

}  // namespace
}  // namespace kdr::hka
