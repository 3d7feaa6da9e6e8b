#include "hka/analysis/series.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace kdr::hka::analysis {

namespace {

// Sum or mean of the values of one group, in insertion order.
struct Acc {
  double sum = 0;
  size_t n = 0;
  void add(double v) {
    sum += v;
    ++n;
  }
  double get(bool additive) const { return additive ? sum : sum / static_cast<double>(n); }
};

// (entity, fine period) -> value, collapsing other categories.
std::map<std::pair<int32_t, int64_t>, double> cells(const Frame& frame, size_t measure) {
  std::map<std::pair<int32_t, int64_t>, Acc> acc;
  for (const Observation& o : frame.rows) {
    const double v = o.values[measure];
    if (!std::isfinite(v)) continue;
    acc[{o.entity, o.period}].add(v);
  }
  std::map<std::pair<int32_t, int64_t>, double> out;
  const bool ext = frame.measures[measure].extensive;
  for (const auto& [k, a] : acc) out[k] = a.get(ext);
  return out;
}

Series coarsen_series(const std::map<int64_t, double>& fine, Grain from, Grain to, bool flow,
                      size_t min_count) {
  Series s;
  s.grain = to;
  std::map<int64_t, Acc> acc;
  for (const auto& [p, v] : fine) acc[coarsen(from, to, p)].add(v);
  for (const auto& [p, a] : acc) {
    if (a.n < min_count) continue;
    s.periods.push_back(p);
    s.values.push_back(from == to ? a.sum / static_cast<double>(a.n) : a.get(flow));
  }
  return s;
}

std::string agg(bool additive) { return additive ? "SUM" : "AVG"; }

std::string month_case(const std::string& expr) {
  std::string sql = "CASE " + expr;
  for (int m = 1; m <= 12; ++m) {
    sql += " WHEN " + std::to_string(m) + " THEN '" + month_name(m) + "'";
  }
  return sql + " END";
}

std::string cell_cte(const Frame& frame, size_t measure, const std::string& name) {
  const Measure& m = frame.measures[measure];
  return name + " AS (SELECT entity, year, month, period_date, " + agg(m.extensive) + "(" +
         m.sql_name + ") AS value FROM long WHERE " + m.sql_name +
         " IS NOT NULL GROUP BY entity, year, month, period_date)";
}

}  // namespace

int64_t Series::find(int64_t period) const {
  const auto it = std::lower_bound(periods.begin(), periods.end(), period);
  if (it == periods.end() || *it != period) return -1;
  return it - periods.begin();
}

Series Series::between_years(int from, int to) const {
  Series s;
  s.grain = grain;
  for (size_t i = 0; i < periods.size(); ++i) {
    const int y = year_of(grain, periods[i]);
    if (grain != Grain::kNone && (y < from || y > to)) continue;
    s.periods.push_back(periods[i]);
    s.values.push_back(values[i]);
  }
  return s;
}

size_t complete_count(const Frame& frame, size_t measure, Grain grain) {
  if (grain == frame.grain || frame.grain == Grain::kNone) return 1;
  // Distinct fine periods per coarse period, over all entities.
  std::map<int64_t, std::set<int64_t>> fine;
  for (const Observation& o : frame.rows) {
    if (!std::isfinite(o.values[measure])) continue;
    fine[coarsen(frame.grain, grain, o.period)].insert(o.period);
  }
  size_t most = 0;
  for (const auto& [p, s] : fine) most = std::max(most, s.size());
  return std::max<size_t>(1, static_cast<size_t>(std::ceil(0.9 * static_cast<double>(most))));
}

Series series_of(const Frame& frame, size_t measure, int32_t entity, Grain grain) {
  const auto c = cells(frame, measure);
  const Measure& m = frame.measures[measure];
  std::map<int64_t, Acc> fine_acc;
  for (const auto& [k, v] : c) {
    if (entity >= 0 && k.first != entity) continue;
    fine_acc[k.second].add(v);
  }
  std::map<int64_t, double> fine;
  for (const auto& [p, a] : fine_acc) fine[p] = a.get(m.extensive);
  return coarsen_series(fine, frame.grain, grain, m.flow, complete_count(frame, measure, grain));
}

std::vector<Series> entity_series(const Frame& frame, size_t measure, Grain grain) {
  const auto c = cells(frame, measure);
  std::vector<std::map<int64_t, double>> fine(frame.entities.size());
  for (const auto& [k, v] : c) {
    if (k.first >= 0) fine[static_cast<size_t>(k.first)][k.second] = v;
  }
  const size_t min_count = complete_count(frame, measure, grain);
  std::vector<Series> out;
  for (const auto& f : fine) {
    out.push_back(coarsen_series(f, frame.grain, grain, frame.measures[measure].flow, min_count));
  }
  return out;
}

std::string period_label_sql(Grain grain) {
  switch (grain) {
    case Grain::kYear:
      return "CAST(year AS TEXT)";
    case Grain::kQuarter:
      return "'Q' || ((month - 1) / 3 + 1) || ' ' || year";
    case Grain::kMonth:
      return month_case("month") + " || ' ' || year";
    case Grain::kDay:
      return "CAST(substr(period_date, 9, 2) AS INTEGER) || ' ' || " + month_case("month") +
             " || ' ' || year";
    case Grain::kNone:
      break;
  }
  return "''";
}

std::string sql_literal(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string with_long(const Frame& frame) { return "WITH long AS (" + frame.long_sql + ")"; }

std::string series_cte(const Frame& frame, size_t measure, int32_t entity, Grain grain,
                       const std::string& name) {
  const Measure& m = frame.measures[measure];
  std::string sql = cell_cte(frame, measure, name + "_cell");
  if (entity >= 0) {
    sql += ",\n" + name + "_fine AS (SELECT year, month, period_date, value FROM " + name +
           "_cell WHERE entity = " + sql_literal(frame.entities[static_cast<size_t>(entity)]) + ")";
  } else {
    sql += ",\n" + name + "_fine AS (SELECT year, month, period_date, " + agg(m.extensive) +
           "(value) AS value FROM " + name + "_cell GROUP BY year, month, period_date)";
  }
  const bool coarser = grain != frame.grain && frame.grain != Grain::kNone;
  sql += ",\n" + name + " AS (SELECT " + period_sql(grain) + " AS period_key, " +
         period_label_sql(grain) + " AS period, " + (coarser ? agg(m.flow) : std::string("AVG")) +
         "(value) AS value FROM " + name + "_fine GROUP BY 1";
  if (coarser)
    sql += " HAVING COUNT(*) >= " + std::to_string(complete_count(frame, measure, grain));
  return sql + ")";
}

std::string entity_series_cte(const Frame& frame, size_t measure, Grain grain,
                              const std::string& name) {
  const Measure& m = frame.measures[measure];
  std::string sql = cell_cte(frame, measure, name + "_cell");
  const bool coarser = grain != frame.grain && frame.grain != Grain::kNone;
  sql += ",\n" + name + " AS (SELECT entity, " + period_sql(grain) + " AS period_key, " +
         period_label_sql(grain) + " AS period, " + (coarser ? agg(m.flow) : std::string("AVG")) +
         "(value) AS value FROM " + name + "_cell GROUP BY entity, 2";
  if (coarser)
    sql += " HAVING COUNT(*) >= " + std::to_string(complete_count(frame, measure, grain));
  return sql + ")";
}

}  // namespace kdr::hka::analysis
