// A stored table read as an analyst reads it: which column is time, which names the entities
// (countries, sources, industries), which are measures and which only identify rows; wide
// layouts (one column per year, or one per month beside a year column) unpivoted into long
// observations. Data facts (facts.h) are computed over a Frame, and every fact's SQL is built
// on the frame's `long_sql`, which reproduces its observations from the stored table.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hka/knowledge/sql_guard.h"
#include "hka/knowledge/table_store.h"

namespace kdr::hka::analysis {

class FrameError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The time grain of a series. A period is an integer index at its grain:
// year y -> y; quarter -> 4y + q - 1; month -> 12y + m - 1; day -> days since 1970-01-01.
enum class Grain { kNone, kYear, kQuarter, kMonth, kDay };

const char* grain_name(Grain grain);  // "none", "year", "quarter", "month", "day"
// As people write it: "2001", "Q2 2001", "March 2001", "5 March 2001".
std::string period_label(Grain grain, int64_t period);
// The period as a fractional year (March 2001 -> 2001 + 2/12), for slopes per year.
double period_year(Grain grain, int64_t period);
int year_of(Grain grain, int64_t period);
int month_of(Grain grain, int64_t period);  // 1-12; 0 for year grain
// The period at a coarser grain (month -> year, day -> month ...).
int64_t coarsen(Grain from, Grain to, int64_t period);
const char* month_name(int month);  // 1 -> "January"

enum class Role { kTime, kEntity, kMeasure, kIdentifier, kOther };
const char* role_name(Role role);

struct ColumnRole {
  std::string name;    // SQL identifier
  std::string header;  // as written in the source
  Role role = Role::kOther;
  std::string why;  // "values are years", "all distinct codes", ...
};

struct Measure {
  std::string label;  // as people would name it: the header, or a wide table's indicator
  std::string unit;   // "%", "$", "thousand MWh", "births per woman"; may be empty
  // The values add up across entities (amounts, counts, people): totals and mixes make sense.
  bool extensive = false;
  // The values add up over time within a coarser period (generation, precipitation); stocks
  // and rates (employment, prices, temperatures) are averaged instead.
  bool flow = false;
  std::string sql_name;  // column alias in long_sql: "v0", "v1", ...
  std::string column;    // the stored column ("" for a wide table's values)
  // What the table's description says of this column ("hs_grad: percent of the population
  // with a high-school diploma"), for matching a question's words; "" when it says nothing.
  std::string note;
  // Words around the measure's name in the description when it has no glossary entry
  // ("annual miles driven per capita in the"), for matching a question's words only.
  std::string context;
};

struct Observation {
  int64_t period = 0;          // at the frame's grain; 0 when the frame has no time
  int32_t entity = -1;         // index into Frame::entities; -1 when the frame has no entity column
  std::vector<double> values;  // one per measure; NaN when missing
};

struct Frame {
  std::string table;  // SQL table name
  std::string title;
  std::string description;
  std::string source;  // file name
  // "long" (time and entity as columns), "wide-year" (one column per year), "wide-month" (a
  // year column and one column per month), "series" (time, no entity), "cross-section" (no
  // time: one row per entity)
  std::string layout;
  Grain grain = Grain::kNone;
  std::string time_label;     // header of the time column ("year", "date"); "" when none
  std::string entity_label;   // header of the entity column ("country"); "" when none
  std::string entity_column;  // its SQL name, for subspace filters on the stored table
  std::vector<std::string> entities;
  // A name for entities that are codes, from the description ("AAPL Apple, AMZN Amazon"):
  // parallel to `entities`, "" where there is none.
  std::vector<std::string> entity_aliases;
  std::vector<Measure> measures;
  std::vector<Observation> rows;
  std::vector<ColumnRole> columns;
  // SELECT with columns period_date (ISO text or NULL), year, month (1-12 or NULL), entity
  // (text or NULL) and one column per measure (Measure::sql_name), one row per observation.
  std::string long_sql;
  bool truncated = false;  // the table had more rows than were read
};

// The SQL expression, over long_sql's columns, of the period at `grain` (coarser than or equal
// to the frame's grain): "year", "year * 12 + month - 1", ...
std::string period_sql(Grain grain);

// Reads a stored table through the read-only guard and profiles it. `entity_hint`: the column
// (SQL name) to use as entities when several could be; empty chooses the one with the most
// distinct values (at most 300). Throws FrameError when the table has no numeric measure.
Frame load_frame(const std::filesystem::path& db_path, const TableInfo& info,
                 const std::string& entity_hint = "", size_t max_rows = 200000);

// The unit a text gives a measure: "(mm)", "in thousand megawatthours" -> "thousand MWh",
// "percent of ..." -> "%", "per 100,000 population"; "" when it names none.
std::string unit_from_text(const std::string& text);

// A series frame (time, no entities) with several measures read the other way: each measure
// column becomes an entity of one measure (employment by industry, generation by source as
// columns). nullopt when the frame is not such a table or the columns do not share a unit.
// `named`: the measures a question names. Two or more become the entities themselves ("goods,
// services and government"); one that is the sum of other columns has them as its entities
// ("within private services"); otherwise the columns no other column sums up are.
std::optional<Frame> columns_as_entities(const Frame& frame, const std::vector<size_t>& named = {});

// The columns a frame could use as entities (TEXT columns that are neither time nor
// identifiers), for callers choosing one by relevance.
std::vector<std::string> entity_candidates(const std::filesystem::path& db_path,
                                           const TableInfo& info);

}  // namespace kdr::hka::analysis
