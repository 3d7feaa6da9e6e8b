// The evidence a report's prose is checked against, indexed once per report: each fact's values
// with their kind (a level, a signed change, a statistic), unit, entity and period or span;
// each source's cells or passage numbers and words; the entities every table's facts name.
// Private to report/.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hka/analysis/facts.h"
#include "hka/report/report.h"

namespace kdr::hka::report {

// A period as labels write it: "2017", "March 2009", "Q1 2009", "15 March 2009".
struct Period {
  int year = 0;
  int month = 0;
  int quarter = 0;
  int day = 0;
  bool empty() const { return year == 0 && month == 0 && quarter == 0; }
};

Period parse_period(std::string_view label);
// "1959 to 2001", "2001-2017", "January 2006 to December 2015": a span of two periods.
std::optional<std::pair<Period, Period>> parse_span(std::string_view label);
// Whether `stated` (what the text says) fits `label` (the evidence's period).
bool period_fits(const Period& stated, const Period& label);
std::string period_text(const Period& p);

// What a value's name says about how its sign reads.
enum class ValueKind {
  kLevel,      // a level at a point: its direction is the fact's
  kChange,     // a signed change: its sign is its direction
  kStatistic,  // n, rank, r, p-value ...: no direction
  kUnknown,    // a query result's cell or a passage's number
};

ValueKind kind_of(const std::string& name);

struct Value {
  double value = 0;
  std::string unit;
  std::string entity;  // the value's own, else its fact's
  std::string period;
  Period parsed_period;
  std::string name;  // the fact value's name, or the table column
  ValueKind kind = ValueKind::kUnknown;
  double unit_scale = 1;  // "thousand MWh" -> 1e3
  bool percent = false;   // in "%" or "pp", or written as a percentage in a passage
  bool any_unit = false;  // a query result's cell: its unit is unknown
  int64_t column = -1;    // a cell's column, for derived numbers
  const analysis::Fact* fact = nullptr;
  const ReportSource* source = nullptr;
  // A change's span ("+25% a year from 2001 to 2009" is the first half of an acceleration).
  std::optional<std::pair<Period, Period>> span;
  // The fact's measures that are also entities of its table ("single" in a table whose
  // measures are ranked against each other): a sentence stating the value names them.
  std::vector<std::string> focus_measures;
};

struct FactEvidence {
  const analysis::Fact* fact = nullptr;
  // Period spans the fact covers: (from, to), and for a fact split at a middle period (from,
  // middle) and (middle, to).
  std::vector<std::pair<Period, Period>> spans;
  std::vector<Value> values;
  std::vector<Period> periods;
  std::vector<std::string> entities;
  std::vector<std::string> digit_names;  // lower case names with digits ("per 100,000 population")
  double p_value = std::nan("");
};

struct SourceEvidence {
  const ReportSource* source = nullptr;
  std::vector<Value> values;
  std::vector<std::vector<const Value*>> columns;  // a table's numeric cells by column
  std::vector<std::string> words;                  // a passage's words
  std::vector<double> numbers;                     // a passage's numbers
  std::vector<double> years;                       // numbers that may be years
};

struct Evidence {
  Evidence(const std::vector<analysis::Fact>& facts, const std::vector<ReportSource>& sources);

  std::vector<FactEvidence> facts;  // one per fact, in order
  std::unordered_map<const analysis::Fact*, const FactEvidence*> fact_index;
  std::vector<SourceEvidence> sources;
  std::unordered_map<const ReportSource*, const SourceEvidence*> source_index;
  // The entities the facts of each table name: a sentence naming any of them names an entity.
  std::unordered_map<std::string, std::vector<std::string>> table_entities;
  std::vector<std::string> unit_words;  // of every fact's units
};

}  // namespace kdr::hka::report
