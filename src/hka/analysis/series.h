// Series of a frame's measure at a grain, computed in C++ and written as the SQL that computes
// the same numbers from the stored table (private to analysis/).
//
// Aggregation mirrors how the measure adds up: rows of one entity and period (other categories)
// and entities of one period are summed for extensive measures and averaged otherwise; finer
// periods inside a coarser one are summed for flows and averaged otherwise, and only complete
// coarse periods are kept (at least 90% of the most sub-periods any of them has).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "hka/analysis/frame.h"

namespace kdr::hka::analysis {

struct Series {
  Grain grain = Grain::kNone;
  std::vector<int64_t> periods;  // ascending
  std::vector<double> values;
  size_t size() const { return periods.size(); }
  bool empty() const { return periods.empty(); }
  // Index of `period`, or -1.
  int64_t find(int64_t period) const;
  // Points whose period lies in [from, to] (inclusive; year bounds compared by year_of).
  Series between_years(int from, int to) const;
};

// The whole frame's measure: one entity (entity >= 0), or every entity aggregated (-1).
Series series_of(const Frame& frame, size_t measure, int32_t entity, Grain grain);
// Every entity's series at `grain`, indexed as Frame::entities (empty series where none).
std::vector<Series> entity_series(const Frame& frame, size_t measure, Grain grain);
// The minimum number of finer periods a coarse period needs to count as complete.
size_t complete_count(const Frame& frame, size_t measure, Grain grain);

// SQL text of the series above. with_long() opens the WITH clause with `long` (the frame's
// observations); series_cte() then defines CTEs ending in `name` with columns period_key,
// period (its label) and value, the same series as series_of(); entity_series_cte() defines
// `name` with columns entity, period_key, period, value, as entity_series(). CTEs are joined
// with ",\n"; the caller appends its final SELECT.
std::string with_long(const Frame& frame);
std::string series_cte(const Frame& frame, size_t measure, int32_t entity, Grain grain,
                       const std::string& name = "s");
std::string entity_series_cte(const Frame& frame, size_t measure, Grain grain,
                              const std::string& name = "es");
// The SQL label of a period at `grain`, over long's year / month / period_date columns.
std::string period_label_sql(Grain grain);
// A SQL string literal.
std::string sql_literal(const std::string& text);

}  // namespace kdr::hka::analysis
