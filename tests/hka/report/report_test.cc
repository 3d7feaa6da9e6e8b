// finalize_report: citations, figure and table numbering, number verification and the
// rendered markdown and HTML.
#include "hka/report/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>

#include "../../base/seed.h"

namespace kdr::hka {
namespace {

ReportSource table_source(std::string key, std::vector<std::string> columns,
                          std::vector<std::vector<std::string>> rows) {
  ReportSource s;
  s.key = std::move(key);
  s.kind = "table";
  s.title = "Result of " + s.key;
  s.location = "data/" + s.key + ".csv";
  s.sql = "SELECT region, sales FROM sales WHERE year < 2022";
  s.csv_path = "analysis/" + s.key + ".csv";
  s.columns = std::move(columns);
  s.rows = std::move(rows);
  return s;
}

ReportSource document_source(std::string key, std::string text) {
  ReportSource s;
  s.key = std::move(key);
  s.kind = "document";
  s.title = "Document " + s.key;
  s.location = "docs/" + s.key + ".md, lines 1-9";
  s.text = std::move(text);
  return s;
}

ReportFigure figure(std::string key, std::string source_key = "") {
  ReportFigure f;
  f.key = key;
  f.title = "Chart " + key;
  f.caption = "What " + key + " shows.";
  f.svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>";
  f.svg_path = "figures/" + key + ".svg";
  f.source_key = std::move(source_key);
  return f;
}

// A draft with three sources and the given abstract; no numbers unless the text has them.
ReportDraft draft_with_abstract(std::string abstract) {
  ReportDraft d;
  d.title = "Report";
  d.abstract = std::move(abstract);
  d.sources = {table_source("T1", {"a"}, {{"x"}}), table_source("T2", {"a"}, {{"y"}}),
               document_source("D1", "Some passage.")};
  return d;
}

const NumberCheck* find_number(const FinalReport& r, const std::string& text) {
  for (const NumberCheck& n : r.numbers) {
    if (n.text == text) return &n;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// Citations

TEST(ReportCitations, RenumberedByFirstUseAndGroupsJoined) {
  ReportDraft d = draft_with_abstract("First [T2]. Then [D1, T2]. Then [T1][T2].");
  d.conclusion = "Again [D1].";
  const FinalReport r = finalize_report(d);
  EXPECT_NE(r.markdown.find("First [1]. Then [1, 2]. Then [1, 3]."), std::string::npos)
      << r.markdown;
  EXPECT_NE(r.markdown.find("Again [2]."), std::string::npos);
  ASSERT_EQ(r.citations.size(), 6u);
  EXPECT_EQ(r.citations[0].key, "T2");
  EXPECT_EQ(r.citations[0].number, 1);
  EXPECT_EQ(r.citations[0].section, "Abstract");
  EXPECT_EQ(r.citations[4].key, "T2");
  EXPECT_EQ(r.citations[5].section, "Conclusion");
  EXPECT_EQ(r.unresolved_citations, 0);
}

TEST(ReportCitations, UnresolvedKeyAndBareNumberRemovedAndRecorded) {
  ReportDraft d = draft_with_abstract("Sales rose [X9]. Costs fell [3], as shown [T1, Z4].");
  d.introduction = "[Q1] Starts here ([Y2]) and ends.";
  const FinalReport r = finalize_report(d);
  EXPECT_NE(r.markdown.find("Sales rose. Costs fell, as shown [1]."), std::string::npos)
      << r.markdown;
  EXPECT_NE(r.markdown.find("Starts here and ends."), std::string::npos) << r.markdown;
  EXPECT_EQ(r.unresolved_citations, 5);
  std::set<std::string> unresolved;
  for (const CitationCheck& c : r.citations) {
    if (!c.resolved) {
      unresolved.insert(c.key);
      EXPECT_EQ(c.number, 0);
    }
  }
  EXPECT_EQ(unresolved, (std::set<std::string>{"X9", "3", "Z4", "Q1", "Y2"}));
  EXPECT_EQ(r.verification["summary"]["unresolved_citations"], 5);
  EXPECT_NE(r.markdown.find("- [X9] in Abstract"), std::string::npos);
}

TEST(ReportCitations, ReferenceListHoldsExactlyTheUsedSources) {
  ReportDraft d = draft_with_abstract("Passage [D1] and result [T2].");
  d.sources[2].text = std::string(600, 'w') + " tail that is cut";
  const FinalReport r = finalize_report(d);
  const std::string refs = r.markdown.substr(r.markdown.find("## References"));
  EXPECT_NE(refs.find("1. (D1) Document D1 \xE2\x80\x94 docs/D1.md, lines 1-9: "),
            std::string::npos)
      << refs;
  EXPECT_EQ(refs.find("tail that is cut"), std::string::npos);
  EXPECT_NE(
      refs.find("2. (T2) Result of T2 \xE2\x80\x94 query: ` SELECT region, sales FROM sales WHERE "
                "year < 2022 ` (result: analysis/T2.csv; source: data/T2.csv)"),
      std::string::npos)
      << refs;
  EXPECT_EQ(refs.find("Result of T1"), std::string::npos);
  EXPECT_NE(r.html.find("<li id=\"ref-2\">"), std::string::npos);
  EXPECT_EQ(r.html.find("<li id=\"ref-3\">"), std::string::npos);
  EXPECT_NE(r.html.find("[<a href=\"#ref-1\">1</a>]"), std::string::npos);
}

TEST(ReportCitations, TableCellsCiteLikeProse) {
  ReportDraft d = draft_with_abstract("Text [T2].");
  ReportTable t;
  t.key = "R1";
  t.title = "Key figures";
  t.columns = {"value", "fact"};
  t.rows = {{"120", "[T1]"}, {"100", "[T2, X9]"}};
  d.tables = {t};
  d.sections = {{"Results", "", {}, {"R1"}}};
  const FinalReport r = finalize_report(d);
  EXPECT_NE(r.markdown.find("| 120 | [2] |"), std::string::npos) << r.markdown;
  EXPECT_NE(r.markdown.find("| 100 | [1] |"), std::string::npos) << r.markdown;
  EXPECT_NE(r.markdown.find("2. (T1) Result of T1"), std::string::npos) << r.markdown;
  EXPECT_EQ(r.unresolved_citations, 1);
  EXPECT_NE(r.html.find("<td>[<a href=\"#ref-2\">2</a>]</td>"), std::string::npos) << r.html;
}

// ---------------------------------------------------------------------------------------------
// Figures and tables

TEST(ReportFigures, NumberedByPlacementAndProseRewritten) {
  ReportDraft d = draft_with_abstract("Figure F2 and Figures F1 and F2; Table R9 and Table R1.");
  d.figures = {figure("F1"), figure("F2")};
  ReportTable t;
  t.key = "R1";
  t.title = "Top regions";
  t.columns = {"region", "sales"};
  t.rows = {{"North", "120"}};
  t.source_key = "T1";
  d.tables = {t};
  d.sections = {{"Results", "As Figure F9 shows.", {"F2", "F1"}, {"R1"}}};
  const FinalReport r = finalize_report(d);
  EXPECT_NE(r.markdown.find("Figure 1 and Figures 2 and 1; Table R9 and Table 1."),
            std::string::npos)
      << r.markdown;
  EXPECT_NE(r.markdown.find("![Figure 1: Chart F2](figures/F2.svg)"), std::string::npos);
  EXPECT_LT(r.markdown.find("Figure 1: Chart F2"), r.markdown.find("Figure 2: Chart F1"));
  EXPECT_NE(r.markdown.find("Table 1: Top regions"), std::string::npos);
  EXPECT_NE(r.markdown.find("| North | 120 |"), std::string::npos);
  EXPECT_NE(r.markdown.find("Source: [1] Result of T1"), std::string::npos);
  std::set<std::string> unknown;
  for (const auto& ref : r.verification["figure_refs"]) {
    if (!ref["resolved"].get<bool>()) unknown.insert(ref["key"].get<std::string>());
  }
  EXPECT_EQ(unknown, (std::set<std::string>{"R9", "F9"}));
}

TEST(ReportFigures, UnplacedFigureKeptInAdditionalSection) {
  ReportDraft d = draft_with_abstract("See Figure F3.");
  d.figures = {figure("F1"), figure("F3", "T2")};
  d.sections = {{"Results", "Text.", {"F1"}, {}}};
  const FinalReport r = finalize_report(d);
  const size_t extra = r.markdown.find("## Additional figures");
  ASSERT_NE(extra, std::string::npos) << r.markdown;
  EXPECT_GT(r.markdown.find("![Figure 2: Chart F3](figures/F3.svg)"), extra);
  EXPECT_NE(r.markdown.find("See Figure 2."), std::string::npos);
  EXPECT_NE(r.html.find("alt=\"Figure 2: Chart F3\""), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Numbers as written

TEST(ReportNumbers, ExtractsWrittenForms) {
  struct Case {
    std::string text;
    std::vector<std::pair<std::string, double>> expected;  // (text, value)
  };
  const std::vector<Case> cases = {
      {"Sales were 1,234.5 units.", {{"1,234.5", 1234.5}}},
      {"It fell -7 points.", {{"-7", -7}}},
      {"A share of 12.5% and 30 percent.", {{"12.5%", 12.5}, {"30 percent", 30}}},
      {"Revenue of 3.4 million and 2 billion.", {{"3.4 million", 3.4e6}, {"2 billion", 2e9}}},
      {"About 1.2k users, 3M views, 2bn and $1,200.",
       {{"1.2k", 1200}, {"3M", 3e6}, {"2bn", 2e9}, {"$1,200", 1200}}},
      {"From 2019-2021 it grew.", {{"2019", 2019}, {"2021", 2021}}},
      {"Between 10-20% of rows.", {{"10", 10}, {"20%", 20}}},
      // The second number of a range reads the same suffixes as any other.
      {"Up 2-3 percentage points, 4-5 per cent, 1-2 million.",
       {{"2", 2},
        {"3 percentage points", 3},
        {"4", 4},
        {"5 per cent", 5},
        {"1", 1e6},
        {"2 million", 2e6}}},
      {"See Figure 2 and Table 3 [4] [T2] and Figures 1 and 2.", {}},
      {"1. First item\n2) second\n## 3. Heading", {}},
      {"A H100, COVID-19 and the 3rd case.", {}},
      {"On 2021-03-15 we had 0.25.", {{"2021", 2021}, {"0.25", 0.25}}},
      {"It was \xE2\x88\x92"
       "4.5 in 1999.",
       {{"\xE2\x88\x92"
         "4.5",
         -4.5},
        {"1999", 1999}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    const std::vector<NumberCheck> found = extract_numbers(c.text);
    ASSERT_EQ(found.size(), c.expected.size());
    for (size_t i = 0; i < found.size(); ++i) {
      EXPECT_EQ(found[i].text, c.expected[i].first);
      EXPECT_NEAR(found[i].value, c.expected[i].second, 1e-9 * std::fabs(c.expected[i].second));
    }
  }
}

TEST(ReportNumbers, ContextIsTheSentence) {
  const std::vector<NumberCheck> found = extract_numbers("First one. Then 42 came. Last.");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].context, "Then 42 came.");
}

// ---------------------------------------------------------------------------------------------
// Verification

// The check of one sentence against a table of sales by region and a passage; the sentence
// cites what it needs ("[T1]", "[D1]").
NumberCheck verify_one(const std::string& sentence, const std::string& number,
                       const std::string& question = "") {
  ReportDraft d;
  d.question = question;
  d.abstract = sentence;
  d.sources = {
      table_source(
          "T1", {"region", "sales", "share"},
          {{"North", "120", "0.256"}, {"South", "100", "12.5%"}, {"East", "$3,412,000", "0.1"}}),
      document_source("D1", "The passage says 47.25 and 2.5 million.")};
  const FinalReport r = finalize_report(d);
  const NumberCheck* n = find_number(r, number);
  EXPECT_NE(n, nullptr) << sentence;
  return n ? *n : NumberCheck{};
}

TEST(ReportVerify, ExactValues) {
  const NumberCheck n = verify_one("North sold 120 [T1].", "120");
  EXPECT_TRUE(n.verified);
  EXPECT_EQ(n.source_key, "T1");
  EXPECT_EQ(n.how, "exact");
  EXPECT_TRUE(verify_one("A share of 12.5% in the South [T1].", "12.5%").verified);
  EXPECT_EQ(verify_one("The passage: 47.25 [D1].", "47.25").source_key, "D1");
}

TEST(ReportVerify, RoundedToTheDigitsWritten) {
  EXPECT_EQ(verify_one("About 47.3 in the passage [D1].", "47.3").how, "rounded");
  EXPECT_TRUE(verify_one("About 47 in the passage [D1].", "47").verified);
  EXPECT_FALSE(verify_one("About 47.4 in the passage [D1].", "47.4").verified);
}

TEST(ReportVerify, PercentOfFraction) {
  const NumberCheck n = verify_one("North has 25.6% of sales [T1].", "25.6%");
  EXPECT_TRUE(n.verified);
  EXPECT_EQ(n.how, "percent of fraction");
  EXPECT_TRUE(verify_one("North has 26% of sales [T1].", "26%").verified);
}

TEST(ReportVerify, ScaleWords) {
  EXPECT_TRUE(verify_one("East made 3.4 million [T1].", "3.4 million").verified);
  EXPECT_TRUE(verify_one("East made $3.41M [T1].", "$3.41M").verified);
  EXPECT_TRUE(verify_one("East made 3,412k [T1].", "3,412k").verified);
  EXPECT_TRUE(verify_one("The passage: 2.5 million [D1].", "2.5 million").verified);
  EXPECT_FALSE(verify_one("East made 3.5 million [T1].", "3.5 million").verified);
}

TEST(ReportVerify, DerivedDifferenceRatioAndPercentChange) {
  const NumberCheck diff = verify_one("North sold 20 more [T1].", "20");
  EXPECT_TRUE(diff.verified);
  EXPECT_EQ(diff.how, "difference of 120 and 100 (sales)");
  const NumberCheck ratio = verify_one("North sold 1.2 times as much [T1].", "1.2");
  EXPECT_TRUE(ratio.verified);
  EXPECT_EQ(ratio.how, "ratio of 120 and 100 (sales)");
  const NumberCheck change = verify_one("Sales are 16.7% lower in the South [T1].", "16.7%");
  EXPECT_TRUE(change.verified);
  EXPECT_EQ(change.how, "percent change between 100 and 120 (sales)");
  // One significant digit is too coarse to trust a derived match (120 / 100 rounds to "1").
  EXPECT_FALSE(verify_one("North sold 1 times as much [T1].", "1").verified);
}

TEST(ReportVerify, EvidenceIsWhatTheSentenceCites) {
  // The same numbers, uncited: nothing holds them (no fact names North).
  const NumberCheck n = verify_one("North sold 120.", "120");
  EXPECT_FALSE(n.verified);
  EXPECT_EQ(n.reason, "cites nothing and names no fact");
  // Cited, but not by this sentence.
  EXPECT_FALSE(verify_one("North sold 120. The table says so [T1].", "120").verified);
  // Cited: the passage, which does not hold 120.
  EXPECT_EQ(verify_one("North sold 120 [D1].", "120").reason, "no cited source holds 120");
}

TEST(ReportVerify, UnverifiedNumbersAreListedWithTheReason) {
  ReportDraft d = draft_with_abstract("We saw 987.6 cases.");
  const FinalReport r = finalize_report(d);
  ASSERT_EQ(r.numbers.size(), 1u);
  EXPECT_FALSE(r.numbers[0].verified);
  EXPECT_EQ(r.unverified_numbers, 1);
  EXPECT_EQ(r.verification["summary"]["unverified_numbers"], 1);
  EXPECT_EQ(r.verification["numbers"][0]["reason"], "cites nothing and names no fact");
  EXPECT_NE(r.markdown.find("- 987.6 (Abstract): cites nothing and names no fact. "
                            "\xE2\x80\x9CWe saw 987.6 cases.\xE2\x80\x9D"),
            std::string::npos)
      << r.markdown;
  EXPECT_NE(r.html.find("<strong class=\"unverified\">987.6</strong>"), std::string::npos);
}

TEST(ReportVerify, NumbersFromTheQuestionAreNotEvidence) {
  const NumberCheck n = verify_one("The top 7 regions since 1987.", "7", "The top 7 since 1987?");
  EXPECT_FALSE(n.verified);
  EXPECT_FALSE(
      verify_one("The top 7 regions since 1987 [T1].", "1987", "The top 7 since 1987?").verified);
}

TEST(ReportVerify, ReferencesAndTablesAreNotChecked) {
  ReportDraft d = draft_with_abstract("Nothing numeric [T1].");
  ReportTable t;
  t.key = "R1";
  t.title = "Top 3";
  t.columns = {"n"};
  t.rows = {{"555"}};
  d.tables = {t};
  d.sections = {{"Results", "Text.", {}, {"R1"}}};
  const FinalReport r = finalize_report(d);
  EXPECT_TRUE(r.numbers.empty());
}

// ---------------------------------------------------------------------------------------------
// Escaping

const std::string kHostile = "<script>alert(1)</script> \"><img src=x onerror=alert(1)> & 'q' | x";

ReportDraft hostile_draft() {
  ReportDraft d;
  d.title = kHostile;
  d.question = kHostile;
  d.abstract = kHostile + " [T1]";
  d.introduction = kHostile;
  d.conclusion = kHostile;
  d.notes = {kHostile};
  d.generated_by = kHostile;
  ReportFigure f = figure("F1", "T1");
  f.title = kHostile;
  f.caption = kHostile;
  f.svg_path = kHostile;
  d.figures = {f};
  d.tables = {{"R1", kHostile, {kHostile, "b"}, {{kHostile, "1"}}, "D1"}};
  d.sections = {{kHostile, "- " + kHostile + "\n\n**" + kHostile + "**", {"F1"}, {"R1"}}};
  ReportSource t = table_source("T1", {kHostile}, {{kHostile}});
  t.title = t.location = t.sql = t.csv_path = kHostile;
  ReportSource doc = document_source("D1", kHostile);
  doc.title = doc.location = kHostile;
  d.sources = {t, doc};
  return d;
}

TEST(ReportHtml, HostileStringsAreEscaped) {
  const FinalReport r = finalize_report(hostile_draft());
  EXPECT_EQ(r.html.find("<script"), std::string::npos);
  EXPECT_EQ(r.html.find("<img src=x"), std::string::npos);
  EXPECT_NE(r.html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(r.html.find("&quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &#39;q&#39;"),
            std::string::npos);
  // Every "onerror=" is inside escaped text: preceded by "&lt;img src=x ".
  for (size_t at = r.html.find("onerror="); at != std::string::npos;
       at = r.html.find("onerror=", at + 1)) {
    ASSERT_GE(at, 14u);
    EXPECT_EQ(r.html.substr(at - 14, 14), "&lt;img src=x ");
  }
}

// The markdown outside code spans: the SQL in the references is a code span, shown literally.
std::string markdown_outside_code(const std::string& md) {
  std::string out;
  bool code = false;
  for (char c : md) {
    if (c == '`') code = !code;
    if (!code) out += c;
  }
  return out;
}

TEST(ReportMarkdown, EscapesHtmlAndTablePipes) {
  const FinalReport r = finalize_report(hostile_draft());
  const std::string md = markdown_outside_code(r.markdown);
  EXPECT_EQ(md.find("<script"), std::string::npos);
  EXPECT_EQ(md.find("<img"), std::string::npos);
  EXPECT_NE(r.markdown.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(r.markdown.find("\\| x |"), std::string::npos) << r.markdown;
  EXPECT_NE(r.markdown.find("&amp; 'q'"), std::string::npos);
}

TEST(ReportHtml, SelfContainedWithPolicyAndInlineFigures) {
  ReportDraft d = draft_with_abstract("Plain.");
  d.figures = {figure("F1")};
  d.generated_by = "fake backend";
  const FinalReport r = finalize_report(d);
  EXPECT_NE(r.html.find("<meta charset=\"utf-8\">"), std::string::npos);
  EXPECT_NE(r.html.find("content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\""),
            std::string::npos);
  // base64 of the figure's svg, which starts with "<svg xm".
  EXPECT_NE(r.html.find("<img src=\"data:image/svg+xml;base64,PHN2ZyB4b"), std::string::npos);
  EXPECT_EQ(r.html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(r.html.find("href=\"http"), std::string::npos);
  EXPECT_NE(r.html.find("<footer>Generated by fake backend</footer>"), std::string::npos);
}

// Tag names and attribute names of every tag in `html`, by a simple scan.
void collect_tags(const std::string& html, std::set<std::string>& tags,
                  std::set<std::string>& attributes) {
  for (size_t i = html.find('<'); i != std::string::npos; i = html.find('<', i + 1)) {
    size_t j = i + 1;
    if (j < html.size() && (html[j] == '/' || html[j] == '!')) ++j;
    size_t k = j;
    while (k < html.size() && std::isalnum(static_cast<unsigned char>(html[k]))) ++k;
    tags.insert(html.substr(j, k - j));
    const size_t close = html.find('>', k);
    if (close == std::string::npos) break;
    // Attribute names: words followed by '=' outside quoted values.
    bool quoted = false;
    std::string word;
    for (size_t p = k; p < close; ++p) {
      const char c = html[p];
      if (c == '"') {
        quoted = !quoted;
      } else if (!quoted && c == '=') {
        attributes.insert(word);
      } else if (!quoted && (std::isalnum(static_cast<unsigned char>(c)) || c == '-')) {
        word += c;
        continue;
      }
      word.clear();
    }
  }
}

TEST(ReportHtml, RandomDraftsProduceOnlyAllowedTags) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  const std::vector<std::string> pieces = {"<",
                                           ">",
                                           "&",
                                           "\"",
                                           "'",
                                           "=",
                                           "[",
                                           "]",
                                           "[T1]",
                                           "[D1, X2]",
                                           "[3]",
                                           "**",
                                           "`",
                                           "|",
                                           "\n",
                                           "\n\n",
                                           "- ",
                                           "# ",
                                           "1. ",
                                           "Figure F1",
                                           "Table R1",
                                           "script",
                                           "img",
                                           "onerror",
                                           "<a href='http://x'>",
                                           "</p>",
                                           "12.5%",
                                           "3.4 million",
                                           "-7",
                                           " ",
                                           "word",
                                           "\xC3\xA9",
                                           "\xE2\x80\x93",
                                           "](http://evil)",
                                           "<!--",
                                           "<svg onload=alert(1)>",
                                           "javascript:"};
  auto random_text = [&] {
    std::string s;
    const int n = static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    return s;
  };
  const std::set<std::string> allowed_tags = {
      "",      "DOCTYPE", "html",  "head",   "meta", "title",  "style",      "body",
      "main",  "section", "h1",    "h2",     "h3",   "p",      "blockquote", "ul",
      "ol",    "li",      "a",     "strong", "code", "figure", "img",        "figcaption",
      "table", "caption", "thead", "tbody",  "tr",   "th",     "td",         "footer"};
  const std::set<std::string> allowed_attributes = {
      "lang", "charset", "http-equiv", "content", "name", "href", "id", "src", "alt", "class"};
  for (int round = 0; round < 200; ++round) {
    ReportDraft d;
    d.title = random_text();
    d.question = random_text();
    d.abstract = random_text();
    d.introduction = random_text();
    d.conclusion = random_text();
    d.notes = {random_text()};
    d.generated_by = random_text();
    ReportFigure f = figure("F1", "T1");
    f.title = random_text();
    f.caption = random_text();
    f.svg = random_text();
    d.figures = {f};
    d.tables = {{"R1", random_text(), {random_text()}, {{random_text()}}, "T1"}};
    d.sections = {{random_text(), random_text(), {"F1"}, {"R1"}}};
    ReportSource t = table_source("T1", {random_text()}, {{random_text()}});
    t.title = random_text();
    t.sql = random_text();
    ReportSource doc = document_source("D1", random_text());
    doc.title = random_text();
    d.sources = {t, doc};
    const FinalReport r = finalize_report(d);
    std::set<std::string> tags;
    std::set<std::string> attributes;
    collect_tags(r.html, tags, attributes);
    for (const std::string& tag : tags) {
      EXPECT_TRUE(allowed_tags.contains(tag)) << "tag <" << tag << "> in round " << round;
    }
    for (const std::string& a : attributes) {
      EXPECT_TRUE(allowed_attributes.contains(a)) << "attribute " << a << " in round " << round;
    }
    EXPECT_EQ(r.html.find("href=\"http"), std::string::npos) << "round " << round;
    // Only the references hold raw text, the SQL in code spans.
    const std::string before_references = r.markdown.substr(0, r.markdown.rfind("## References"));
    EXPECT_EQ(before_references.find('<'), std::string::npos) << "round " << round;
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace kdr::hka
