// Data facts: what an analyst states first about a table, computed exactly.
//
// A fact (after Calliope, IEEE VIS 2020, and QuickInsights, SIGMOD 2019) is a record: its type,
// the table, the subspace it looks at (filters, a period range), the breakdown it compares
// across, the measure, the focus (an entity, a period), the values with their units, the SQL
// that reproduces them through the read-only guard, a chart where one helps, and how
// significant it is. The report states facts and cites them; verification checks each number
// against the facts its sentence cites.
//
// Types:
//   value         a named entity's measure (cross-sections), with its rank
//   change        first to last: both values, the absolute and relative change
//   trend         least-squares slope per year with its fit and p-value; compound growth
//   acceleration  growth per year in the earlier and the later half of the period
//   periods       growth per year in each sub-period the question names
//   series        the values period by period, for short spans
//   difference    two named entities' growth compared
//   proportion    an entity's share of the total in the first and last period, the shift
//   mix           every entity's share in the first and last period (the composition)
//   rank          entities ordered by a value or by their change: the top and bottom
//   extreme       the highest and lowest period of a series
//   drawdown      the largest fall from a peak to a trough and when the peak was regained
//   association   Pearson and Spearman correlation between two measures, n and p
//   seasonality   the mean by month of the year, its peak and trough
//   distribution  median, quartiles, range
//   outlier       entities far from the others (robust z-score)
//   query         the result of a query the model wrote (its cells are its values)
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hka/analysis/frame.h"

namespace kdr::hka::analysis {

struct FactValue {
  std::string name;  // "first", "last", "change", "pct_change", "cagr_pct", "r", "share_last" ...
  double value = 0;
  std::string unit;    // "%", "pp", "per year", the measure's unit, or ""
  std::string entity;  // the entity this value belongs to, when the fact spans several
  std::string period;  // the period label this value belongs to, when it has one
};

struct FactChart {
  nlohmann::json spec;  // chart.h's Vega-Lite subset
  QueryResult data;     // the rows it draws
};

struct Fact {
  std::string id;   // stable: type, table, measure, focus and subspace hashed ("trend-3f2a9c01")
  std::string key;  // citation key given by the run ("A7"); empty until cited
  std::string type;
  std::string table;  // SQL table name
  std::string table_title;
  std::string source;                  // file name
  std::vector<std::string> subspace;   // "source = Wind", "2001-2017"
  std::string breakdown;               // what the fact compares across: "source", "month"
  std::vector<std::string> measures;   // labels
  std::string unit;                    // the measure's unit
  std::string entity;                  // the focus entity ("" for all)
  std::string entity_label;            // what entities are ("source", "country")
  std::string period_from, period_to;  // labels; period_to empty for one period
  std::vector<FactValue> values;
  std::string sql;      // reproduces the values (columns named as the values)
  std::string formula;  // how values the SQL does not compute follow from its result
  std::string text;     // one sentence stating the fact (fact_text.h)
  // Words a sentence uses to name this fact's focus: its entity, the entities of its values,
  // its measure; verification of uncited sentences looks for them.
  std::vector<std::string> mentions;
  int direction = 0;        // +1 rose, -1 fell, 0 neither or not a change
  double significance = 0;  // 0..1: how far from noise (1 - p, relative size ...)
  // The question names measures of this table, and not this fact's: it is off its focus.
  bool off_focus = false;
  // Where the fact's measure stands among those the question names (0: the first, the
  // outcome); -1 when the question names none or not this one.
  int focus_rank = -1;
  double relevance = 0;  // 0..1: to the question (question.h)
  std::optional<FactChart> chart;
  // The frame the fact was computed from (FactFinder's key); not stored in facts.json.
  std::string frame_key;

  const FactValue* value(const std::string& name) const;
  double get(const std::string& name, double fallback = 0) const;
};

// What a question restricts and asks for, resolved against one frame.
struct Focus {
  std::vector<int32_t> entities;  // indices into Frame::entities named by the question
  std::vector<size_t> measures;   // indices into Frame::measures named by the question
  std::optional<int> year_from, year_to;
  std::vector<int64_t> months;  // named months (12 * year + month - 1), ascending
  // Sub-periods the question compares ("1960-1970 against 1990-2000", "each decade"), in order.
  std::vector<std::pair<int, int>> ranges;
  std::vector<int32_t> excluded;  // entities left out of ranks, mixes and comparisons
  std::set<std::string> kinds;    // "change", "growth", "association", "mix", "seasonality",
                                  // "extreme", "distribution", "outlier", "drawdown"
};

// Every fact the frame supports under the focus, with its significance (relevance is left to
// question.h). Deterministic: the same frame and focus give the same facts in the same order.
std::vector<Fact> compute_facts(const Frame& frame, const Focus& focus);

// A fact from a query result the model's SQL produced: its cells become values (numeric
// cells, each with its row's first text cell as the entity and any year-like cell as the
// period), cited like any other fact.
Fact query_fact(const std::string& table_title, const std::string& source, const std::string& sql,
                const QueryResult& result, const std::string& what);

// Runs the fact's SQL through the read-only guard on `db` and compares every value it can
// locate in the result (a column named as the value; or the "value" column of the row whose
// entity, period or name columns match the value's). The SQL is computed by SQLite from the
// stored table, the values by C++ from the frame: agreement checks both.
struct FactSqlCheck {
  size_t compared = 0;
  std::vector<std::string> mismatches;  // "pct_change (Wind): SQL 1426.3, fact 1426.1"
  std::string error;                    // the SQL failed
  bool ok() const { return error.empty() && mismatches.empty(); }
};
FactSqlCheck check_fact_sql(const std::filesystem::path& db, const Fact& fact);

// The fact as JSON (analysis/facts.json) and back; from_json throws FrameError naming the
// missing field.
nlohmann::json to_json(const Fact& fact);
Fact fact_from_json(const nlohmann::json& j);

}  // namespace kdr::hka::analysis
