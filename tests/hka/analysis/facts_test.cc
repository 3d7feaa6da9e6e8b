// Data facts: column roles and layouts, exact answers on tables built for the test, and the
// independent check that matters most: every fact's SQL, run through the read-only guard on
// the stored table, gives the values the C++ computed (on the example tables and on random
// tables with a printed seed).
#include "hka/analysis/facts.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "../../base/seed.h"
#include "hka/analysis/candidates.h"
#include "hka/analysis/fact_chart.h"
#include "hka/analysis/frame.h"
#include "hka/analysis/question.h"
#include "hka/analysis/series.h"
#include "hka/chart/chart.h"
#include "hka/knowledge/table_store.h"
#include "hka/pipeline/research.h"
#include "hka/text.h"

namespace kdr::hka::analysis {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class Workspace {
 public:
  Workspace() {
    root_ = fs::temp_directory_path() /
            ("kdr_facts_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "tables");
  }
  ~Workspace() {
    if (!::testing::Test::HasFailure()) fs::remove_all(root_);
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(root_ / "tables" / name, std::ios::binary) << text;
  }
  // Ingests tables/ (or `dir`) and returns the store's tables.
  std::vector<TableInfo> ingest(const fs::path& dir = {}) {
    store_.emplace(TableStore::open(db()));
    const fs::path from = dir.empty() ? root_ / "tables" : dir;
    std::optional<fs::path> catalogue;
    if (fs::exists(from / "catalogue.json")) catalogue = from / "catalogue.json";
    const TableIngestReport r = store_->ingest_dir(from, catalogue);
    EXPECT_TRUE(r.failed.empty()) << (r.failed.empty() ? "" : r.failed.front());
    return store_->tables();
  }
  TableInfo table(const std::string& name) {
    for (const TableInfo& t : store_->tables()) {
      if (t.name == name) return t;
    }
    ADD_FAILURE() << "no table " << name;
    return {};
  }
  fs::path db() const { return root_ / "knowledge.db"; }

 private:
  fs::path root_;
  std::optional<TableStore> store_;
};

// The fact's SQL gives the values the C++ computed; returns how many were compared.
size_t expect_sql_reproduces(const fs::path& db, const Fact& f) {
  const FactSqlCheck check = check_fact_sql(db, f);
  EXPECT_TRUE(check.error.empty()) << f.id << ": " << check.error << "\n"
                                   << f.sql.substr(f.sql.size() > 400 ? f.sql.size() - 400 : 0);
  for (const std::string& m : check.mismatches) {
    ADD_FAILURE() << f.id << " (" << f.text << "): " << m << "\n..."
                  << f.sql.substr(f.sql.size() > 400 ? f.sql.size() - 400 : 0);
  }
  return check.compared;
}

// --- roles and layouts -----------------------------------------------------------------

TEST(Frame, LongTableHasTimeEntityAndMeasures) {
  Workspace w;
  w.write("crops.csv",
          "country,year,crop,yield_t_ha\nFrance,2019,wheat,7.9\nFrance,2020,wheat,6.6\n"
          "Germany,2019,wheat,7.4\nGermany,2020,wheat,7.8\nFrance,2019,barley,6.9\n");
  w.ingest();
  const Frame f = load_frame(w.db(), w.table("crops"), "country");
  EXPECT_EQ(f.layout, "long");
  EXPECT_EQ(f.grain, Grain::kYear);
  EXPECT_EQ(f.entity_label, "country");
  EXPECT_EQ(f.entities, (std::vector<std::string>{"France", "Germany"}));
  ASSERT_EQ(f.measures.size(), 1u);
  EXPECT_EQ(f.measures[0].label, "yield_t_ha");
  EXPECT_FALSE(f.measures[0].extensive);  // a yield is a rate: averaged, not summed
  // France 2019 averages its two crops.
  const Series s = series_of(f, 0, 0, Grain::kYear);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_NEAR(s.values[0], (7.9 + 6.9) / 2, 1e-12);
}

TEST(Frame, WideYearTableIsUnpivotedWithItsIndicatorAsMeasure) {
  Workspace w;
  w.write("wb.csv",
          "Country Name,Country Code,Indicator Name,Indicator Code,1960,1961,1962,1963\n"
          "\"Korea, Rep.\",KOR,\"Fertility rate, total (births per "
          "woman)\",SP.DYN.TFRT.IN,6.1,5.9,5.6,5.4\n"
          "Niger,NER,\"Fertility rate, total (births per woman)\",SP.DYN.TFRT.IN,7.3,7.4,7.4,\n");
  w.ingest();
  const Frame f = load_frame(w.db(), w.table("wb"));
  EXPECT_EQ(f.layout, "wide-year");
  EXPECT_EQ(f.entity_label, "Country Name");
  EXPECT_EQ(f.measures[0].label, "Fertility rate, total (births per woman)");
  EXPECT_EQ(f.measures[0].unit, "births per woman");
  EXPECT_EQ(f.rows.size(), 7u);  // Niger's 1963 is empty
  const Series k = series_of(f, 0, 0, Grain::kYear);
  EXPECT_EQ(k.periods, (std::vector<int64_t>{1960, 1961, 1962, 1963}));
  EXPECT_NEAR(k.values.back(), 5.4, 1e-12);
}

TEST(Frame, WideMonthTableBecomesAMonthlySeries) {
  Workspace w;
  std::string csv = "YEAR,JAN,FEB,MAR,APR,MAY,JUN,JUL,AUG,SEP,OCT,NOV,DEC\n";
  for (int y = 2000; y < 2003; ++y) {
    csv += std::to_string(y);
    for (int m = 1; m <= 12; ++m) csv += "," + std::to_string(20 + m + (y - 2000) * 0.5);
    csv += "\n";
  }
  w.write("sst.csv", csv);
  w.ingest();
  const Frame f = load_frame(w.db(), w.table("sst"));
  EXPECT_EQ(f.layout, "wide-month");
  EXPECT_EQ(f.grain, Grain::kMonth);
  EXPECT_EQ(f.rows.size(), 36u);
  const Series annual = series_of(f, 0, -1, Grain::kYear);
  ASSERT_EQ(annual.size(), 3u);
  EXPECT_NEAR(annual.values[2], 26.5 + 1.0, 1e-9);  // mean of 21..32 is 26.5, plus 2 x 0.5
}

TEST(Frame, DatesAsIntegersQuartersAndAnnotationColumns) {
  Workspace w;
  w.write("co2.csv", "date,co2\n19580329,316.1\n19580405,317.3\n19580412,317.6\n19590103,315.2\n");
  w.write("macro.csv",
          "year,quarter,gdp\n1959,1,2710\n1959,2,2778\n1959,3,2775\n1959,4,2785\n1960,1,2847\n");
  w.write("drive.csv",
          "side,year,miles,gas\nleft,1956,3675,2.38\nright,1957,3706,2.40\nleft,1958,3766,2.26\n");
  w.ingest();
  EXPECT_EQ(load_frame(w.db(), w.table("co2")).grain, Grain::kDay);
  const Frame m = load_frame(w.db(), w.table("macro"));
  EXPECT_EQ(m.grain, Grain::kQuarter);
  ASSERT_EQ(m.measures.size(), 1u);  // quarter is time, not a measure
  EXPECT_EQ(period_label(Grain::kQuarter, m.rows[1].period), "Q2 1959");
  const Frame d = load_frame(w.db(), w.table("drive"));
  EXPECT_TRUE(d.entities.empty());  // one row per year: "side" annotates rows
  EXPECT_EQ(d.layout, "series");
}

TEST(Frame, UnitsComeFromTheDescription) {
  EXPECT_EQ(unit_from_text("percent of the population with a high-school diploma"), "%");
  EXPECT_EQ(unit_from_text("violent crimes per 100,000 population (Illinois excluded)"),
            "per 100,000 population");
  EXPECT_EQ(unit_from_text("wind speed (m/s)"), "m/s");
}

// --- exact answers ---------------------------------------------------------------------

TEST(Facts, MixChangeAndGrowthHaveExactValues) {
  Workspace w;
  w.write("power.csv",
          "year,source,generation\n2000,Coal,80\n2000,Wind,20\n2010,Coal,60\n2010,Wind,60\n"
          "2005,Coal,70\n2005,Wind,30\n");
  w.ingest();
  const TableInfo t = w.table("power");
  const QuestionProfile q =
      profile_question("How did the generation mix of coal and wind change from 2000 to 2010?");
  const Frame f = load_frame(w.db(), t);
  const std::vector<Fact> facts = compute_facts(f, resolve_focus(f, q));
  auto find = [&](const std::string& type, const std::string& entity) -> const Fact* {
    for (const Fact& x : facts) {
      if (x.type == type && x.entity == entity) return &x;
    }
    return nullptr;
  };
  const Fact* wind = find("proportion", "Wind");
  ASSERT_NE(wind, nullptr);
  EXPECT_NEAR(wind->get("share_first"), 20.0, 1e-12);
  EXPECT_NEAR(wind->get("share_last"), 50.0, 1e-12);
  EXPECT_NEAR(wind->get("shift_pp"), 30.0, 1e-12);
  EXPECT_EQ(wind->direction, 1);
  const Fact* coal = find("change", "Coal");
  ASSERT_NE(coal, nullptr);
  EXPECT_NEAR(coal->get("pct_change"), -25.0, 1e-12);
  EXPECT_EQ(coal->text,
            "Generation for Coal fell from 80 in 2000 to 60 in 2010, a decrease of 20 (-25%).");
  const Fact* growth = find("trend", "Wind");
  ASSERT_NE(growth, nullptr);
  EXPECT_NEAR(growth->get("cagr_pct"), 100.0 * (std::pow(3.0, 0.1) - 1.0), 1e-9);
  const Fact* diff = find("difference", "");
  ASSERT_NE(diff, nullptr);
  for (const Fact& x : facts)
    EXPECT_GT(expect_sql_reproduces(w.db(), x), 0u) << x.id << " " << x.text;
}

TEST(Facts, CrossSectionAssociationRankAndOutlier) {
  Workspace w;
  std::string csv = "state,crime,poverty,noise\n";
  const char* states[] = {"A", "B", "C", "D", "E", "F", "G", "H", "I", "J"};
  for (int i = 0; i < 10; ++i) {
    csv += std::string(states[i]) + "," + std::to_string(100 + 10 * i + (i == 9 ? 500 : 0)) + "," +
           std::to_string(5 + i) + "," + std::to_string((i * 7) % 10) + "\n";
  }
  w.write("states.csv", csv);
  w.ingest();
  const QuestionProfile q =
      profile_question("How does crime relate to poverty across states, and which are highest?");
  const Frame f = load_frame(w.db(), w.table("states"));
  EXPECT_EQ(f.layout, "cross-section");
  const std::vector<Fact> facts = compute_facts(f, resolve_focus(f, q));
  bool association = false, rank = false, outlier = false;
  for (const Fact& x : facts) {
    if (x.type == "association" && x.measures[1] == "poverty") {
      association = true;
      EXPECT_GT(x.get("r"), 0.6);
      EXPECT_EQ(x.get("n"), 10);
    }
    if (x.type == "rank" && x.measures[0] == "crime" && x.values.front().name == "value") {
      rank = true;
      EXPECT_EQ(x.values.front().entity, "J");
    }
    if (x.type == "outlier" && x.entity == "J") outlier = true;
    expect_sql_reproduces(w.db(), x);
  }
  EXPECT_TRUE(association);
  EXPECT_TRUE(rank);
  EXPECT_TRUE(outlier);
}

// --- every fact's SQL reproduces it --------------------------------------------------------

TEST(Facts, EverySqlReproducesItsValuesOnTheExampleTables) {
  Workspace w;
  const std::vector<TableInfo> tables = w.ingest(fs::path(KDR_SOURCE_DIR) / "examples" / "tables");
  const std::vector<std::string> questions = {
      "How did Iowa's electricity generation mix change between 2001 and 2017, and how fast did "
      "renewables grow?",
      "How deep was the 2008-2009 job loss in the United States and which industries lost the "
      "most?",
      "Is there a relationship between the price of gas and miles driven?",
      "How did fertility change in Korea, India and Brazil from 1960 to 2011, and which fell most?",
      "What is the seasonal cycle of sea surface temperature and which years were warmest?",
      "How does violent crime relate to poverty across states?",
      "How did CO2 grow and did it accelerate?",
      "How did the share prices of Apple and Microsoft change from January 2005 to March 2010?",
      // Left-out entities leave the SQL too (totals, shares and correlations without them).
      "Leaving out the District of Columbia, how is murder associated with poverty across states?",
      "Leaving out the aggregates, which countries had the lowest fertility in 2011?",
      // Quarterly data: the seasonal cycle is the quarters'.
      "Is there a seasonal pattern in US real GDP by quarter?"};
  FactFinder finder(w.db());
  size_t facts = 0, values = 0;
  for (const std::string& question : questions) {
    std::vector<std::string> problems;
    for (const Fact& f : finder.facts(tables, profile_question(question), 60, &problems)) {
      ++facts;
      values += expect_sql_reproduces(w.db(), f);
      EXPECT_FALSE(f.text.empty()) << f.id;
      EXPECT_FALSE(f.id.empty());
    }
  }
  std::printf("[ facts    ] %zu facts, %zu values reproduced by their SQL\n", facts, values);
  EXPECT_GT(facts, 120u);
  EXPECT_GT(values, facts);  // most facts have several values checked
}

TEST(Facts, EverySqlReproducesItsValuesOnRandomTables) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  Workspace w;
  // A long table (entity, year or date, two measures with gaps) and a wide-year one.
  std::uniform_real_distribution<double> u(1, 1000);
  std::string longcsv = "region,date,sales,price\n";
  const int regions = 2 + static_cast<int>(rng() % 5);
  for (int r = 0; r < regions; ++r) {
    for (int y = 2000; y < 2004; ++y) {
      for (int m = 1; m <= 12; ++m) {
        if (rng() % 17 == 0) continue;  // a missing month
        char date[16];
        std::snprintf(date, sizeof date, "%04d-%02d-01", y, m);
        longcsv += "R" + std::to_string(r) + "," + date + "," + std::to_string(u(rng)) + "," +
                   (rng() % 11 == 0 ? std::string() : std::to_string(u(rng) / 10)) + "\n";
      }
    }
  }
  w.write("sales.csv", longcsv);
  std::string wide = "name,1990,1991,1992,1993,1994,1995\n";
  for (int e = 0; e < 6; ++e) {
    wide += "E" + std::to_string(e);
    for (int y = 0; y < 6; ++y)
      wide += "," + (rng() % 9 == 0 ? std::string() : std::to_string(u(rng)));
    wide += "\n";
  }
  w.write("wide.csv", wide);
  const std::vector<TableInfo> tables = w.ingest();
  FactFinder finder(w.db());
  size_t values = 0;
  for (const char* question :
       {"How did sales change by region and which grew most?",
        "How does price relate to sales? What is the seasonal cycle of sales?",
        "What was the mix of sales by region in 2000 and 2003?",
        "How did E1 and E2 change from 1990 to 1995?"}) {
    for (const Fact& f : finder.facts(tables, profile_question(question), 80))
      values += expect_sql_reproduces(w.db(), f);
  }
  EXPECT_GT(values, 50u);
}

TEST(Facts, ChartsOfFactsPassTheFigureCheck) {
  Workspace w;
  const std::vector<TableInfo> tables = w.ingest(fs::path(KDR_SOURCE_DIR) / "examples" / "tables");
  FactFinder finder(w.db());
  size_t charts = 0;
  for (const char* question :
       {"How did Iowa's generation mix change, and how fast did renewables grow?",
        "How does violent crime relate to poverty across states?",
        "What is the seasonal cycle of sea surface temperature?"}) {
    const std::vector<Fact> facts = finder.facts(tables, profile_question(question), 30);
    for (const Fact& f : facts) {
      const Frame* frame = finder.frame_of(f);
      ASSERT_NE(frame, nullptr) << f.id;
      const std::optional<FactChart> c = fact_chart(*frame, f);
      if (!c) continue;
      const ChartSpec spec = parse_chart_spec(c->spec);
      const FigureCheck check = check_chart(spec, c->data);
      EXPECT_TRUE(check.ok) << f.id << ": "
                            << (check.problems.empty() ? "" : check.problems.front());
      ++charts;
      // Every key-figures row names its entity and period.
      for (const auto& row : fact_rows(f)) {
        ASSERT_EQ(row.size(), 4u);
        EXPECT_FALSE(row[0].empty());
      }
    }
  }
  EXPECT_GT(charts, 10u);
}

// --- questions ---------------------------------------------------------------------------

TEST(Question, KindsPeriodsMonthsAndExclusions) {
  const QuestionProfile q = profile_question(
      "Leaving out the District of Columbia, how did the mix shift from January 2006 to March "
      "2010, "
      "and is crime correlated with poverty?");
  EXPECT_TRUE(q.kinds.count("mix"));
  EXPECT_TRUE(q.kinds.count("association"));
  EXPECT_EQ(*q.year_from, 2006);
  EXPECT_EQ(*q.year_to, 2010);
  EXPECT_EQ(q.months, (std::vector<int64_t>{2006 * 12, 2010 * 12 + 2}));
  ASSERT_EQ(q.excluded.size(), 1u);
  EXPECT_EQ(q.excluded[0], "the District of Columbia");
}

TEST(Question, NamesMatchTheWayPeopleWriteThem) {
  const std::vector<std::string> words =
      kdr::hka::text::words("How did fertility fall in South Korea and Russia vs renewable power?");
  EXPECT_TRUE(names(words, "Korea, Rep."));
  EXPECT_TRUE(names(words, "Russian Federation") == false);  // "federation" is not named
  EXPECT_TRUE(names(words, "Renewables"));
  EXPECT_FALSE(names(words, "Niger"));
  EXPECT_TRUE(is_aggregate_name("Sub-Saharan Africa (all income levels)"));
  EXPECT_FALSE(is_aggregate_name("Mali"));
}

TEST(Question, PartsAreTheQuestionsClauses) {
  EXPECT_EQ(
      question_parts(
          "How did Iowa's mix change between 2001 and 2017, and how fast did renewables grow?"),
      (std::vector<std::string>{"How did Iowa's mix change between 2001 and 2017",
                                "how fast did renewables grow?"}));
  EXPECT_EQ(
      question_parts(
          "How deep was the loss, which industries lost most, and how long did recovery take?")
          .size(),
      3u);
  EXPECT_EQ(
      question_parts("Leaving out DC, how is murder related to poverty? Which states are highest?"),
      (std::vector<std::string>{"Leaving out DC, how is murder related to poverty?",
                                "Which states are highest?"}));
}

}  // namespace
}  // namespace kdr::hka::analysis
