// Verification bound to claims (report/verify.h): one rule per test, on hand-made facts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hka/report/report.h"

namespace kdr::hka {
namespace {

using analysis::Fact;
using analysis::FactValue;

Fact base_fact(const std::string& key, const std::string& type, const std::string& entity,
               const std::string& unit) {
  Fact f;
  f.id = type + "-" + key;
  f.key = key;
  f.type = type;
  f.table = "iowa_electricity";
  f.table_title = "Iowa electricity";
  f.source = "iowa-electricity.csv";
  f.measures = {"net generation"};
  f.unit = unit;
  f.entity = entity;
  f.entity_label = "source";
  if (!entity.empty()) f.mentions.push_back(entity);
  f.mentions.push_back("net generation");
  return f;
}

// `entity`'s measure went from `first` in `from` to `last` in `to`.
Fact change_fact(const std::string& key, const std::string& entity, double first, double last,
                 const std::string& from = "2001", const std::string& to = "2017",
                 const std::string& unit = "thousand MWh") {
  Fact f = base_fact(key, "change", entity, unit);
  f.period_from = from;
  f.period_to = to;
  f.values = {{"first", first, unit, entity, from},
              {"last", last, unit, entity, to},
              {"change", last - first, unit, entity, ""},
              {"pct_change", 100 * (last - first) / first, "%", entity, ""}};
  f.direction = last > first ? 1 : -1;
  f.text = entity + " went from " + std::to_string(first) + " to " + std::to_string(last) + ".";
  return f;
}

Fact share_fact(const std::string& key, const std::string& entity, double first, double last) {
  Fact f = base_fact(key, "proportion", entity, "thousand MWh");
  f.period_from = "2001";
  f.period_to = "2017";
  f.values = {{"share_first", first, "%", entity, "2001"},
              {"share_last", last, "%", entity, "2017"},
              {"shift_pp", last - first, "pp", entity, ""}};
  f.direction = last > first ? 1 : -1;
  f.text = "The share of " + entity + " changed.";
  return f;
}

Fact trend_fact(const std::string& key, const std::string& entity, double cagr, double p) {
  Fact f = base_fact(key, "trend", entity, "thousand MWh");
  f.period_from = "2001";
  f.period_to = "2017";
  f.values = {{"slope_per_year", 1445, "thousand MWh", entity, ""},
              {"r2", 0.95, "", "", ""},
              {"p_value", p, "", "", ""},
              {"n", 17, "", "", ""},
              {"cagr_pct", cagr, "%", entity, ""}};
  f.direction = 1;
  f.text = entity + " trended.";
  return f;
}

// Every source of the mix in 2001 and 2017 (one fact, several entities).
Fact mix_fact(const std::string& key) {
  Fact f = base_fact(key, "mix", "", "thousand MWh");
  f.period_from = "2001";
  f.period_to = "2017";
  f.values = {
      {"share", 51.9, "%", "Fossil Fuels", "2017"},   {"share", 38.8, "%", "Renewables", "2017"},
      {"share", 9.23, "%", "Nuclear Energy", "2017"}, {"share", 87.0, "%", "Fossil Fuels", "2001"},
      {"share", 9.48, "%", "Nuclear Energy", "2001"}, {"share", 3.53, "%", "Renewables", "2001"}};
  f.mentions = {"Fossil Fuels", "Renewables", "Nuclear Energy", "net generation"};
  f.text = "The mix.";
  return f;
}

struct Checked {
  FinalReport report;
  const NumberCheck* number(const std::string& text) const {
    for (const NumberCheck& n : report.numbers) {
      if (n.text == text) return &n;
    }
    return nullptr;
  }
  bool verified(const std::string& text) const {
    const NumberCheck* n = number(text);
    EXPECT_NE(n, nullptr) << "no number " << text << " in " << report.verification.dump(1);
    return n && n->verified;
  }
  std::string reason(const std::string& text) const {
    const NumberCheck* n = number(text);
    return n ? n->reason : "(no number " + text + ")";
  }
};

Checked check(const std::string& prose, const std::vector<Fact>& facts,
              const std::vector<ReportSource>& sources = {}, const std::string& question = "") {
  ReportDraft d;
  d.title = "Iowa";
  d.question = question;
  d.sections = {{"Findings", prose, {}, {}}};
  d.facts = facts;
  d.sources = sources;
  return {finalize_report(d)};
}

const Fact kRenewables = change_fact("A1", "Renewables", 1437, 21933);
const Fact kFossil = change_fact("A2", "Fossil Fuels", 35361, 29329);

TEST(ReportVerifySign, MinusNeedsANegativeValueAndAFallMustBeSaid) {
  const Checked c = check(
      "Fossil Fuels changed by -6,032 thousand MWh [A2]. Fossil Fuels changed by 17.1% [A2]. "
      "Fossil Fuels fell 17.1% [A2]. Renewables changed by -20,496 thousand MWh [A1].",
      {kRenewables, kFossil});
  EXPECT_TRUE(c.verified("-6,032 thousand"));
  ASSERT_EQ(c.report.numbers.size(), 4u);
  EXPECT_FALSE(c.report.numbers[1].verified);
  EXPECT_NE(c.report.numbers[1].reason.find("no word says it fell"), std::string::npos)
      << c.report.numbers[1].reason;
  EXPECT_TRUE(c.report.numbers[2].verified) << c.report.numbers[2].reason;
  EXPECT_EQ(c.report.numbers[2].fact_key, "A2");
  EXPECT_FALSE(c.verified("-20,496 thousand"));
}

TEST(ReportVerifySign, AFallOfAFallIsNotAFall) {
  const Checked c = check("Fossil Fuels fell by -17.1% [A2].", {kFossil});
  EXPECT_FALSE(c.verified("-17.1%"));
  EXPECT_EQ(c.reason("-17.1%"), "says fell by -17.1%, a fall of a fall");
}

TEST(ReportVerifyRounding, AsWritten) {
  const Fact share = share_fact("A3", "Renewables", 3.5312, 38.84);
  const Checked c = check(
      "The share of Renewables was 3.53% in 2001 [A3]. It was 3.5% then [A3] for Renewables. "
      "Renewables had 4% [A3]. Renewables had 3.54% [A3]. Renewables reached 38.8% [A3].",
      {share});
  ASSERT_EQ(c.report.numbers.size(), 6u);
  EXPECT_TRUE(c.report.numbers[0].verified);
  EXPECT_EQ(c.report.numbers[0].how, "rounded");
  EXPECT_TRUE(c.report.numbers[2].verified);   // 3.5%
  EXPECT_TRUE(c.report.numbers[3].verified);   // 4%: 3.53 to the digit written
  EXPECT_FALSE(c.report.numbers[4].verified);  // 3.54%
  EXPECT_EQ(c.report.numbers[4].reason, "no cited fact holds 3.54%");
  EXPECT_TRUE(c.report.numbers[5].verified);
}

TEST(ReportVerifyRounding, ScaleWordsAndTheValuesUnit) {
  const Checked c = check(
      "Renewables rose from 1.4 million MWh to 21.9 million MWh [A1]. Renewables rose to "
      "21,933 thousand MWh [A1]. Renewables rose to 22.9 million MWh [A1].",
      {kRenewables});
  EXPECT_TRUE(c.verified("1.4 million"));
  EXPECT_TRUE(c.verified("21.9 million"));
  EXPECT_TRUE(c.verified("21,933 thousand"));
  EXPECT_FALSE(c.verified("22.9 million"));
}

TEST(ReportVerifyDirection, WordsMustAgreeWithTheFact) {
  const Checked c = check("Fossil Fuels rose from 35,361 thousand MWh in 2001 [A2].", {kFossil});
  EXPECT_FALSE(c.verified("35,361 thousand"));
  EXPECT_EQ(c.reason("35,361 thousand"), "says rose, the fact fell");
  const Checked up = check("Renewables fell 1,426% [A1].", {kRenewables});
  EXPECT_EQ(up.reason("1,426%"), "says fell, the fact rose");
}

TEST(ReportVerifyDirection, EachClauseHasItsOwnDirection) {
  const Checked c = check(
      "Renewables rose from 1,437 to 21,933 thousand MWh while Fossil Fuels fell from 35,361 to "
      "29,329 thousand MWh [A1, A2].",
      {kRenewables, kFossil});
  for (const NumberCheck& n : c.report.numbers) EXPECT_TRUE(n.verified) << n.text << n.reason;
  EXPECT_EQ(c.report.numbers.size(), 4u);
}

TEST(ReportVerifyEntity, TheSentenceMustNameTheValuesEntity) {
  const Checked c = check("Fossil Fuels rose from 1,437 thousand MWh in 2001 [A1].", {kRenewables});
  EXPECT_FALSE(c.verified("1,437 thousand"));
  EXPECT_EQ(c.reason("1,437 thousand"), "names no entity of the fact (Renewables)");
  // Singular, plural and the head of a name ("South Korea" for "Korea, Rep.") all name it.
  const Fact korea = change_fact("A5", "Korea, Rep.", 6.16, 1.24, "1960", "2011", "");
  EXPECT_TRUE(check("South Korea fell from 6.16 to 1.24 [A5].", {korea}).verified("6.16"));
  EXPECT_TRUE(check("Renewable generation rose from 1,437 thousand MWh [A1].", {kRenewables})
                  .verified("1,437 thousand"));
}

TEST(ReportVerifyEntity, ANumberInAListBelongsToTheNameBeforeIt) {
  const Fact mix = mix_fact("A6");
  const Checked c = check(
      "In 2017 the largest shares were Fossil Fuels (51.9%), Renewables (38.8%) and Nuclear "
      "Energy (9.23%) [A6]. In 2017 they were Fossil Fuels (51.9%), Nuclear Energy (38.8%) and "
      "Renewables (9.23%) [A6].",
      {mix});
  ASSERT_EQ(c.report.numbers.size(), 8u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(c.report.numbers[i].verified) << i;
  EXPECT_TRUE(c.report.numbers[5].verified);  // 51.9%
  EXPECT_FALSE(c.report.numbers[6].verified);
  EXPECT_EQ(c.report.numbers[6].reason, "names no entity of the fact (Renewables)");
  EXPECT_FALSE(c.report.numbers[7].verified);
}

TEST(ReportVerifyYear, YearsMustBePeriodsOfTheCitedFacts) {
  const Checked c = check(
      "Renewables rose from 1,437 thousand MWh in 2001 to 21,933 thousand MWh in 2017 [A1]. "
      "Renewables rose from 1,437 thousand MWh in 2003 [A1].",
      {kRenewables});
  ASSERT_EQ(c.report.numbers.size(), 6u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(c.report.numbers[i].verified) << i;
  EXPECT_EQ(c.report.numbers[1].how, "year of the period 2001");
  EXPECT_FALSE(c.report.numbers[5].verified);
  EXPECT_EQ(c.report.numbers[5].reason, "year 2003 not in the cited facts");
}

TEST(ReportVerifyYear, AValueWrittenWithAPeriodIsThatPeriodsValue) {
  const Checked c = check("Renewables rose from 1,437 thousand MWh in 2017 [A1].", {kRenewables});
  EXPECT_TRUE(c.verified("2017"));
  EXPECT_FALSE(c.verified("1,437 thousand"));
  EXPECT_EQ(c.reason("1,437 thousand"), "the value 1437 is for 2001, not 2017");
}

TEST(ReportVerifyYear, RangesAndMonths) {
  const Fact monthly = change_fact("A7", "Renewables", 100, 150, "March 2009", "June 2012");
  const Checked c = check(
      "From March 2009 to June 2012 Renewables rose [A7]. Over 2009-2012 Renewables rose [A7]. "
      "In April 2009 Renewables rose [A7]. From 2009 to 2011 Renewables rose [A7].",
      {monthly});
  ASSERT_EQ(c.report.numbers.size(), 7u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(c.report.numbers[i].verified) << i;
  EXPECT_EQ(c.report.numbers[0].how, "period March 2009 to June 2012");
  EXPECT_FALSE(c.report.numbers[4].verified);
  EXPECT_EQ(c.report.numbers[4].reason, "April 2009 not in the cited facts");
  EXPECT_FALSE(c.report.numbers[5].verified);
  EXPECT_EQ(c.report.numbers[5].reason, "period 2009 to 2011 not in the cited facts");
}

TEST(ReportVerifyUncited, FactsWhoseMentionsTheSentenceNames) {
  const Checked c = check(
      "Renewables rose from 1,437 thousand MWh in 2001. Coal fell 12.3% in 2004. Fossil Fuels "
      "reached 21,933 thousand MWh.",
      {kRenewables, kFossil});
  EXPECT_TRUE(c.verified("1,437 thousand"));
  EXPECT_EQ(c.number("1,437 thousand")->fact_key, "A1");
  EXPECT_TRUE(c.verified("2001"));
  EXPECT_EQ(c.reason("12.3%"), "cites nothing and names no fact");
  EXPECT_EQ(c.reason("2004"), "year 2004 not in the facts the sentence names");
  // Fossil Fuels is named, Renewables is not: 21,933 is Renewables'.
  EXPECT_FALSE(c.verified("21,933 thousand"));
}

TEST(ReportVerifyUncited, UnkeyedFactsCountToo) {
  Fact f = kRenewables;
  f.key.clear();
  EXPECT_TRUE(check("Renewables rose to 21,933 thousand MWh.", {f}).verified("21,933 thousand"));
}

TEST(ReportVerifyQuestion, ANumberFromTheQuestionIsUnverified) {
  const Checked c = check("Renewables were among the top 5 sources since 1990 [A1].", {kRenewables},
                          {}, "Which were the top 5 sources since 1990?");
  EXPECT_FALSE(c.verified("5"));
  EXPECT_FALSE(c.verified("1990"));
}

TEST(ReportVerifyDerived, OnlyOverTheCitedFacts) {
  const Fact a = change_fact("A8", "Renewables", 100, 120, "2001", "2017", "");
  const Fact b = change_fact("A9", "Renewables", 50, 83, "2001", "2017", "");
  const Checked c = check(
      "Renewables grew 1.2 times [A8]. Renewables grew by 33 [A8]. Renewables grew by 33 [A9]. "
      "Renewables reached 1.66 times its start [A9].",
      {a, b});
  ASSERT_EQ(c.report.numbers.size(), 4u);
  EXPECT_TRUE(c.report.numbers[0].verified);
  EXPECT_EQ(c.report.numbers[0].how, "ratio of 120 and 100");
  EXPECT_FALSE(c.report.numbers[1].verified);  // 33 is A9's change, not A8's
  EXPECT_TRUE(c.report.numbers[2].verified);
  EXPECT_TRUE(c.report.numbers[3].verified);
  EXPECT_EQ(c.report.numbers[3].how, "ratio of 83 and 50");
}

TEST(ReportVerifyDerived, BetweenEntitiesTheSentenceNames) {
  const Checked c = check(
      "In 2001, Fossil Fuels' share exceeded that of Renewables by 83.5 percentage points [A6].",
      {mix_fact("A6")});
  EXPECT_TRUE(c.verified("83.5 percentage points"));
  EXPECT_EQ(c.number("83.5 percentage points")->how, "difference of 87 and 3.53");
}

TEST(ReportVerifyStatistics, PValueBoundsAndLabelledStatistics) {
  const Fact strong = trend_fact("A4", "Renewables", 18.6, 0.0002);
  const Fact weak = trend_fact("A5", "Wind", 2.0, 0.003);
  const Checked c = check(
      "Renewables grew by 18.6% a year (R² = 0.95, p < 0.001) [A4]. Wind grew (p < 0.001) [A5]. "
      "Wind grew (p<0.01) [A5]. Wind grew (R² = 17) [A5].",
      {strong, weak});
  EXPECT_TRUE(c.report.numbers[1].verified);
  EXPECT_TRUE(c.report.numbers[2].verified);
  EXPECT_EQ(c.report.numbers[2].how, "p-value 0.0002 below 0.001");
  EXPECT_FALSE(c.report.numbers[3].verified);
  EXPECT_EQ(c.report.numbers[3].reason, "no cited fact has a p-value below 0.001");
  EXPECT_TRUE(c.report.numbers[4].verified);
  // 17 is the fact's n, not its R².
  EXPECT_FALSE(c.report.numbers[5].verified);
  EXPECT_EQ(c.report.numbers[5].reason, "the value 17 is the fact's n, not r2");
}

TEST(ReportVerifyNames, DigitsInsideANameAreNotClaims) {
  Fact murder = base_fact("A3", "value", "Iowa", "per 100,000 population");
  murder.values = {{"value", 1.3, "per 100,000 population", "Iowa", "2009"}};
  const Checked c = check("Iowa had 1.3 per 100,000 population in 2009 [A3].", {murder});
  for (const NumberCheck& n : c.report.numbers) EXPECT_TRUE(n.verified) << n.text << n.reason;
  EXPECT_EQ(c.number("100,000")->how, "part of the name \"per 100,000 population\"");
}

TEST(ReportVerifyDocuments, ACitedPassageMustHoldTheClaim) {
  ReportSource doc;
  doc.key = "D1";
  doc.kind = "document";
  doc.title = "Iowa wind report";
  doc.location = "docs/wind.md";
  doc.text =
      "Wind capacity in Iowa grew rapidly after 2005, helped by federal tax credits; "
      "by 2017 wind supplied 37 percent of the state's electricity.";
  const Checked c = check(
      "Iowa's wind capacity grew rapidly after federal tax credits [D1]. Solar subsidies "
      "doubled rooftop adoption among households [D1]. Wind supplied 37% [D1].",
      {}, {doc});
  ASSERT_EQ(c.report.citations.size(), 3u);
  EXPECT_TRUE(c.report.citations[0].supported);
  EXPECT_FALSE(c.report.citations[1].supported);
  EXPECT_NE(c.report.citations[1].reason.find("holds 0 of"), std::string::npos)
      << c.report.citations[1].reason;
  EXPECT_TRUE(c.report.citations[2].supported);  // every number the sentence states
  EXPECT_EQ(c.report.unsupported_citations, 1);
  EXPECT_EQ(c.report.verification["summary"]["unsupported_citations"], 1);
  EXPECT_FALSE(c.report.verification["citations"][1]["supported"].get<bool>());
  EXPECT_NE(c.report.markdown.find("Citations the cited passage does not support"),
            std::string::npos);
  EXPECT_NE(c.report.markdown.find("1 not supported by the passage"), std::string::npos);
}

TEST(ReportVerifyFacts, CitedFactsAreReferences) {
  const Checked c = check("Renewables rose to 21,933 thousand MWh in 2017 [A1].", {kRenewables});
  EXPECT_EQ(c.report.unresolved_citations, 0);
  EXPECT_NE(c.report.markdown.find("[1]."), std::string::npos);
  EXPECT_NE(c.report.markdown.find("1. (A1) Data fact A1 (change): " + kRenewables.text +
                                   " Computed from Iowa electricity (iowa-electricity.csv) by "
                                   "the SQL in analysis/facts.sql."),
            std::string::npos)
      << c.report.markdown;
  EXPECT_EQ(c.report.verification["citations"][0]["kind"], "fact");
}

TEST(ReportVerifySentences, ListItemsTableRowsAndTrailingCitations) {
  const Checked c = check(
      "- Renewables reached 21,933 thousand MWh [A1]\n"
      "- Fossil Fuels reached 29,329 thousand MWh\n\n"
      "| source | generation |\n| --- | --- |\n| Renewables | 21,933 thousand MWh [A1] |\n"
      "| Fossil Fuels | 29,329 thousand MWh |\n\n"
      "Renewables reached 21,933 thousand MWh in 2017. [A1]",
      {kRenewables, kFossil});
  ASSERT_EQ(c.report.numbers.size(), 6u);
  // Each list item and table row is a sentence: the citation of one is not the other's.
  EXPECT_TRUE(c.report.numbers[0].verified);
  EXPECT_EQ(c.report.numbers[0].fact_key, "A1");
  EXPECT_EQ(c.report.numbers[1].context, "- Fossil Fuels reached 29,329 thousand MWh");
  EXPECT_TRUE(c.report.numbers[1].verified);  // uncited: the fact that names Fossil Fuels
  EXPECT_EQ(c.report.numbers[1].fact_key, "A2");
  EXPECT_EQ(c.report.numbers[2].fact_key, "A1");  // the row "| Renewables | 21,933 ..."
  EXPECT_EQ(c.report.numbers[3].fact_key, "A2");
  // "... in 2017. [A1]": the citation after the full stop belongs to the sentence before it.
  EXPECT_EQ(c.report.numbers[4].fact_key, "A1");
  EXPECT_EQ(c.report.numbers[5].fact_key, "A1");
  for (const NumberCheck& n : c.report.numbers) EXPECT_TRUE(n.verified) << n.text << n.reason;
}

// Sentences a writer might put around the facts, checked as written.
TEST(ReportVerifyProse, ParaphrasesOfTheFactsVerify) {
  const Fact share = share_fact("A3", "Renewables", 3.5312, 38.84);
  const Fact trend = trend_fact("A4", "Renewables", 18.6, 0.0002);
  const Fact korea = change_fact("A5", "Korea, Rep.", 6.16, 1.24, "1960", "2011", "");
  const Checked c = check(
      "Renewables' share of Iowa's generation rose from 3.5% in 2001 to 38.8% in 2017, a gain of "
      "35.3 percentage points [A3].\n\n"
      "- Between 2001 and 2017, renewable generation grew about 15-fold, from 1.4 million MWh to "
      "21.9 million MWh [A1].\n"
      "- Fossil fuel generation dropped 17% over the same period [A2].\n"
      "- Renewable output grew 18.6% a year on average (p < 0.001) [A4].\n\n"
      "South Korea saw the steepest decline, from 6.16 to 1.24 births per woman (-79.9%) [A5]. "
      "Fossil Fuels produced 6,032 thousand MWh less in 2017 than in 2001 [A2].",
      {kRenewables, kFossil, share, trend, korea});
  for (const NumberCheck& n : c.report.numbers) {
    EXPECT_TRUE(n.verified) << n.text << ": " << n.reason << " \"" << n.context << "\"";
  }
  EXPECT_EQ(c.report.numbers.size(), 19u);
}

// A model that wrote a shift as a share ("shifted from 35.3% in 2001", 35.3 being the change in
// points) states a number of no single period next to a period: flagged, though the value exists.
TEST(ReportVerifyProse, AChangeWrittenAsAPeriodsValueIsFlagged) {
  const Fact share = share_fact("A3", "Renewables", 3.5312, 38.84);
  const Checked c = check(
      "The share of Renewables shifted from 35.3% in 2001 to 38.8% in 2017 [A3]. "
      "The share of Renewables rose from 3.5% in 2001 to 38.8% in 2017 (+35.3 percentage points) "
      "[A3].",
      {share});
  ASSERT_EQ(c.report.numbers.size(), 9u);  // 35.3, 2001, 38.8, 2017; 3.5, 2001, 38.8, 2017, 35.3
  EXPECT_FALSE(c.report.numbers[0].verified);
  EXPECT_NE(c.report.numbers[0].reason.find("no single period"), std::string::npos)
      << c.report.numbers[0].reason;
  for (size_t i = 4; i < c.report.numbers.size(); ++i) {
    EXPECT_TRUE(c.report.numbers[i].verified)
        << c.report.numbers[i].text << ": " << c.report.numbers[i].reason;
  }
}

}  // namespace
}  // namespace kdr::hka
