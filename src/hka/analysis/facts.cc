// The fact generators (facts.h): one function per fact type over a frame's series, each
// writing the SQL that reproduces its values.
#include "hka/analysis/facts.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "hka/analysis/fact_text.h"
#include "hka/analysis/series.h"
#include "hka/analysis/stats.h"
#include "hka/text.h"

namespace kdr::hka::analysis {

namespace {

using json = nlohmann::json;

constexpr size_t kTopK = 3;
// At most this many entities get facts of their own when the question names none.
constexpr size_t kEntitiesWithoutFocus = 6;

std::string hex8(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08llx", static_cast<unsigned long long>(h & 0xffffffffULL));
  return buf;
}

// FNV-1a: stable across runs and builds (std::hash is not).
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

double clamp01(double v) { return std::isfinite(v) ? std::clamp(v, 0.0, 1.0) : 0.0; }

// The grain facts about change and growth use: years when the series spans three or more of
// them, else the frame's own (days become months).
Grain trend_grain(const Frame& f, int years_spanned) {
  if (f.grain == Grain::kYear || f.grain == Grain::kNone) return f.grain;
  if (years_spanned >= 3) return Grain::kYear;
  return f.grain == Grain::kDay ? Grain::kMonth : f.grain;
}

// The fractional-year expression of a period key at `grain`, minus `origin`, in SQL.
std::string t_sql(Grain grain, int origin) {
  const std::string o = std::to_string(origin);
  switch (grain) {
    case Grain::kYear:
      return "(period_key - " + o + ")";
    case Grain::kQuarter:
      return "(period_key / 4.0 - " + o + ")";
    case Grain::kMonth:
      return "(period_key / 12.0 - " + o + ")";
    case Grain::kDay:
      return "(1970 + period_key / 365.2425 - " + o + ")";
    case Grain::kNone:
      break;
  }
  return "0";
}

class Generator {
 public:
  Generator(const Frame& frame, const Focus& focus) : f_(frame), focus_(focus) {}

  std::vector<Fact> run();

 private:
  Fact base(const std::string& type, size_t measure) const;
  void add(Fact fact);

  // Facts over time.
  void time_facts(size_t m);
  void change_fact(size_t m, int32_t entity, const Series& s);
  void trend_fact(size_t m, int32_t entity, const Series& s);
  void acceleration_fact(size_t m, int32_t entity, const Series& s);
  void extreme_fact(size_t m, int32_t entity, const Series& s);
  void drawdown_fact(size_t m, int32_t entity, const Series& s);
  void series_fact(size_t m, int32_t entity, const Series& s);
  void periods_fact(size_t m, int32_t entity);
  void seasonality_fact(size_t m, int32_t entity);
  void entity_comparisons(size_t m, Grain g);
  // Facts across entities at one period (or a cross-section).
  void cross_section_facts(size_t m, Grain g, int64_t period, const std::vector<Series>& es);
  void associations(Grain g);

  std::string entity_name(int32_t e) const {
    return e >= 0 ? f_.entities[static_cast<size_t>(e)] : std::string();
  }
  std::vector<int32_t> targets(size_t m, Grain g) const;
  Series restrict(const Series& s) const {
    // Named months bound a monthly series exactly ("January 2006 to December 2015").
    if (focus_.months.size() >= 2 && s.grain == Grain::kMonth) {
      Series out;
      out.grain = s.grain;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s.periods[i] < focus_.months.front() || s.periods[i] > focus_.months.back()) continue;
        out.periods.push_back(s.periods[i]);
        out.values.push_back(s.values[i]);
      }
      return out;
    }
    if (!focus_.year_from || !focus_.year_to || *focus_.year_from >= *focus_.year_to) return s;
    return s.between_years(*focus_.year_from, *focus_.year_to);
  }
  bool excluded(size_t e) const {
    return std::find(focus_.excluded.begin(), focus_.excluded.end(), static_cast<int32_t>(e)) !=
           focus_.excluded.end();
  }
  std::string range_sql(const Series& s) const {
    return "period_key BETWEEN " + std::to_string(s.periods.front()) + " AND " +
           std::to_string(s.periods.back());
  }
  int span_years(const Series& s) const {
    return year_of(s.grain, s.periods.back()) - year_of(s.grain, s.periods.front());
  }

  const Frame& f_;
  const Focus& focus_;
  std::vector<Fact> out_;
  // The last drawdown's peak and trough (for the changes of entities over the same window).
  std::optional<std::pair<int64_t, int64_t>> drawdown_window_;
  Grain drawdown_grain_ = Grain::kNone;
};

Fact Generator::base(const std::string& type, size_t measure) const {
  Fact fact;
  fact.type = type;
  fact.table = f_.table;
  fact.table_title = f_.title;
  fact.source = f_.source;
  fact.measures = {f_.measures[measure].label};
  fact.unit = f_.measures[measure].unit;
  fact.entity_label = f_.entity_label;
  return fact;
}

void Generator::add(Fact fact) {
  if (!focus_.measures.empty() && !fact.measures.empty()) {
    fact.off_focus = true;
    for (size_t k = 0; k < focus_.measures.size(); ++k) {
      if (f_.measures[focus_.measures[k]].label == fact.measures[0]) {
        fact.off_focus = false;
        fact.focus_rank = static_cast<int>(k);
        break;
      }
    }
  }
  std::string key = fact.type + "|" + fact.table + "|" + fact.entity + "|" + fact.period_from +
                    "|" + fact.period_to + "|" + fact.breakdown;
  for (const std::string& m : fact.measures) key += "|" + m;
  for (const std::string& s : fact.subspace) key += "|" + s;
  fact.id = fact.type + "-" + hex8(fnv1a(key));
  if (!fact.entity.empty()) fact.mentions.push_back(fact.entity);
  for (const FactValue& v : fact.values) {
    if (!v.entity.empty() &&
        std::find(fact.mentions.begin(), fact.mentions.end(), v.entity) == fact.mentions.end()) {
      fact.mentions.push_back(v.entity);
    }
  }
  for (const std::string& m : fact.measures) fact.mentions.push_back(measure_phrase(m, fact.unit));
  fact.text = fact_sentence(fact);
  // Entities that are codes read with their names: "Apple (AAPL)".
  for (size_t e = 0; e < f_.entities.size() && e < f_.entity_aliases.size(); ++e) {
    const std::string& alias = f_.entity_aliases[e];
    if (alias.empty() || std::find(fact.mentions.begin(), fact.mentions.end(), f_.entities[e]) ==
                             fact.mentions.end())
      continue;
    fact.mentions.push_back(alias);
    const std::string& code = f_.entities[e];
    std::string out;
    for (size_t at = 0;;) {
      const size_t hit = fact.text.find(code, at);
      if (hit == std::string::npos) {
        out += fact.text.substr(at);
        break;
      }
      const size_t end = hit + code.size();
      const bool word =
          (hit == 0 || !std::isalnum(static_cast<unsigned char>(fact.text[hit - 1]))) &&
          (end >= fact.text.size() || !std::isalnum(static_cast<unsigned char>(fact.text[end])));
      out += fact.text.substr(at, hit - at) + (word ? alias + " (" + code + ")" : code);
      at = end;
    }
    fact.text = out;
  }
  if (fact.text.empty()) return;
  for (const Fact& other : out_) {
    // The same fact, or two that say the same (a ranking by absolute and by relative change
    // in the same order).
    if (other.id == fact.id || other.text == fact.text) return;
  }
  out_.push_back(std::move(fact));
}

std::vector<int32_t> Generator::targets(size_t m, Grain g) const {
  std::vector<int32_t> t;
  if (f_.entities.empty()) return {-1};
  if (!focus_.entities.empty()) {
    t = focus_.entities;
  } else {
    // The largest entities by their latest value.
    const std::vector<Series> es = entity_series(f_, m, g);
    std::vector<std::pair<double, int32_t>> latest;
    for (size_t e = 0; e < es.size(); ++e) {
      if (!es[e].empty() && !excluded(e))
        latest.push_back({es[e].values.back(), static_cast<int32_t>(e)});
    }
    std::sort(latest.begin(), latest.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    for (size_t i = 0; i < latest.size() && i < kEntitiesWithoutFocus; ++i)
      t.push_back(latest[i].second);
  }
  if (f_.measures[m].extensive && f_.entities.size() >= 2) t.push_back(-1);
  return t;
}

// --- over time ------------------------------------------------------------------------------

void Generator::change_fact(size_t m, int32_t entity, const Series& s) {
  if (s.size() < 2) return;
  Fact fact = base("change", m);
  fact.entity = entity_name(entity);
  fact.period_from = period_label(s.grain, s.periods.front());
  fact.period_to = period_label(s.grain, s.periods.back());
  const double a = s.values.front(), b = s.values.back();
  fact.values.push_back({"first", a, fact.unit, fact.entity, fact.period_from});
  fact.values.push_back({"last", b, fact.unit, fact.entity, fact.period_to});
  fact.values.push_back({"change", b - a, fact.unit, fact.entity, ""});
  std::string pct_sql;
  if (a > 0) {
    fact.values.push_back({"pct_change", 100.0 * (b - a) / a, "%", fact.entity, ""});
    pct_sql = ", 100.0 * (b.value - a.value) / a.value AS pct_change";
  }
  fact.direction = b > a ? 1 : b < a ? -1 : 0;
  fact.significance = a != 0 ? clamp01(std::fabs((b - a) / a) / 0.25) : 0.5;
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, s.grain) +
             "\nSELECT a.period AS first_period, a.value AS first, b.period AS last_period, "
             "b.value AS last, b.value - a.value AS change" +
             pct_sql + " FROM s a, s b WHERE a.period_key = " + std::to_string(s.periods.front()) +
             " AND b.period_key = " + std::to_string(s.periods.back());
  add(std::move(fact));
}

double years_of_series(const Series& s) {
  return s.empty()
             ? 0
             : period_year(s.grain, s.periods.back()) - period_year(s.grain, s.periods.front());
}

void Generator::trend_fact(size_t m, int32_t entity, const Series& s) {
  if (s.size() < 3) return;
  const int origin = year_of(s.grain, s.periods.front());
  std::vector<double> t;
  for (int64_t p : s.periods) t.push_back(period_year(s.grain, p) - origin);
  const std::optional<stats::LinearFit> fit = stats::linear_fit(t, s.values);
  if (!fit) return;
  Fact fact = base("trend", m);
  fact.entity = entity_name(entity);
  fact.period_from = period_label(s.grain, s.periods.front());
  fact.period_to = period_label(s.grain, s.periods.back());
  fact.values.push_back({"slope_per_year", fit->slope, fact.unit, fact.entity, ""});
  // A slope of a few hundredths a year reads better per decade as well.
  if (std::fabs(fit->slope) < 0.1 && fit->slope != 0 && years_of_series(s) >= 20) {
    fact.values.push_back({"slope_per_decade", 10 * fit->slope, fact.unit, fact.entity, ""});
  }
  fact.values.push_back({"r2", fit->r2, "", "", ""});
  fact.values.push_back({"r", (fit->slope >= 0 ? 1.0 : -1.0) * std::sqrt(fit->r2), "", "", ""});
  fact.values.push_back({"p_value", fit->p_value, "", "", ""});
  fact.values.push_back({"n", static_cast<double>(fit->n), "", "", ""});
  const double years =
      period_year(s.grain, s.periods.back()) - period_year(s.grain, s.periods.front());
  std::string cagr_sql;
  if (std::optional<double> g = stats::compound_growth(s.values.front(), s.values.back(), years)) {
    fact.values.push_back({"cagr_pct", 100.0 * *g, "%", fact.entity, ""});
    cagr_sql =
        ", 100.0 * (pow(MAX(CASE WHEN period_key = " + std::to_string(s.periods.back()) +
        " THEN value END) / MAX(CASE WHEN period_key = " + std::to_string(s.periods.front()) +
        " THEN value END), 1.0 / " + text::format_cell(years) + ") - 1) AS cagr_pct";
  }
  fact.direction = fit->slope > 0 ? 1 : fit->slope < 0 ? -1 : 0;
  fact.significance = clamp01(1.0 - fit->p_value) * (0.5 + 0.5 * fit->r2);
  const std::string tt = t_sql(s.grain, origin);
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, s.grain) +
             "\nSELECT COUNT(*) AS n, (COUNT(*) * SUM(" + tt + " * value) - SUM(" + tt +
             ") * SUM(value)) / (COUNT(*) * SUM(" + tt + " * " + tt + ") - SUM(" + tt + ") * SUM(" +
             tt + ")) AS slope_per_year" + cagr_sql + " FROM s WHERE " + range_sql(s);
  fact.formula =
      "slope_per_year: least squares over the rows of s; r2 and p_value (t test of the slope, "
      "n - 2 degrees of freedom) from the same fit; cagr_pct = 100 * ((last / first)^(1 / "
      "years) - 1)";
  add(std::move(fact));
}

void Generator::acceleration_fact(size_t m, int32_t entity, const Series& s) {
  if (s.size() < 6) return;
  const size_t mid = s.size() / 2;
  const double y0 = period_year(s.grain, s.periods.front());
  const double ym = period_year(s.grain, s.periods[mid]);
  const double y1 = period_year(s.grain, s.periods.back());
  const std::optional<double> g1 = stats::compound_growth(s.values.front(), s.values[mid], ym - y0);
  const std::optional<double> g2 = stats::compound_growth(s.values[mid], s.values.back(), y1 - ym);
  if (!g1 || !g2) return;
  Fact fact = base("acceleration", m);
  fact.entity = entity_name(entity);
  fact.period_from = period_label(s.grain, s.periods.front());
  fact.period_to = period_label(s.grain, s.periods.back());
  const std::string mid_label = period_label(s.grain, s.periods[mid]);
  fact.values.push_back(
      {"rate_first", 100.0 * *g1, "%", fact.entity, fact.period_from + " to " + mid_label});
  fact.values.push_back(
      {"rate_second", 100.0 * *g2, "%", fact.entity, mid_label + " to " + fact.period_to});
  fact.values.push_back({"first", s.values.front(), fact.unit, fact.entity, fact.period_from});
  fact.values.push_back({"middle", s.values[mid], fact.unit, fact.entity, mid_label});
  fact.values.push_back({"last", s.values.back(), fact.unit, fact.entity, fact.period_to});
  fact.direction = *g2 > *g1 ? 1 : *g2 < *g1 ? -1 : 0;
  fact.significance =
      clamp01(std::fabs(*g2 - *g1) / std::max(0.01, std::fabs(*g1) + std::fabs(*g2)));
  const std::string p0 = std::to_string(s.periods.front()), pm = std::to_string(s.periods[mid]),
                    p1 = std::to_string(s.periods.back());
  fact.sql =
      with_long(f_) + ",\n" + series_cte(f_, m, entity, s.grain) +
      "\nSELECT a.value AS first, m.value AS middle, b.value AS last, 100.0 * (pow(m.value / "
      "a.value, 1.0 / " +
      text::format_cell(ym - y0) + ") - 1) AS rate_first, 100.0 * (pow(b.value / m.value, 1.0 / " +
      text::format_cell(y1 - ym) +
      ") - 1) AS rate_second FROM s a, s m, s b WHERE a.period_key = " + p0 +
      " AND m.period_key = " + pm + " AND b.period_key = " + p1;
  fact.formula = "compound growth per year in each half of the period, split at " + mid_label;
  add(std::move(fact));
}

void Generator::extreme_fact(size_t m, int32_t entity, const Series& s) {
  if (s.size() < 3) return;
  std::vector<size_t> order(s.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return s.values[a] > s.values[b]; });
  if (s.values[order.front()] == s.values[order.back()]) return;
  Fact fact = base("extreme", m);
  fact.entity = entity_name(entity);
  fact.breakdown = grain_name(s.grain);
  fact.period_from = period_label(s.grain, s.periods.front());
  fact.period_to = period_label(s.grain, s.periods.back());
  // The highest and lowest periods, and the two after each when there are enough points.
  const size_t k = s.size() >= 9 ? 3 : 1;
  for (size_t r = 0; r < k; ++r) {
    fact.values.push_back({r == 0 ? "highest" : "high", s.values[order[r]], fact.unit, fact.entity,
                           period_label(s.grain, s.periods[order[r]])});
  }
  for (size_t r = 0; r < k; ++r) {
    const size_t i = order[order.size() - 1 - r];
    fact.values.push_back({r == 0 ? "lowest" : "low", s.values[i], fact.unit, fact.entity,
                           period_label(s.grain, s.periods[i])});
  }
  const double sd = stats::stddev(s.values);
  fact.significance =
      sd > 0 ? clamp01((s.values[order.front()] - stats::mean(s.values)) / sd / 3.0) : 0;
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, s.grain) +
             "\nSELECT * FROM (SELECT 'highest' AS name, period, value FROM s WHERE " +
             range_sql(s) +
             " ORDER BY value DESC, period_key LIMIT 1) UNION ALL SELECT * FROM (SELECT 'lowest', "
             "period, value FROM s WHERE " +
             range_sql(s) +
             " ORDER BY value ASC, period_key LIMIT 1) UNION ALL SELECT * FROM (SELECT 'ranked', "
             "period, value FROM s WHERE " +
             range_sql(s) + " ORDER BY value DESC, period_key)";
  add(std::move(fact));
}

void Generator::drawdown_fact(size_t m, int32_t entity, const Series& s) {
  if (s.size() < 4) return;
  // The largest fall from a running peak to a later trough; when the question names years,
  // the fall whose trough lies in them (the peak may come before, the recovery after).
  const bool windowed = focus_.year_from && focus_.year_to;
  size_t peak = 0, best_peak = 0, best_trough = 0;
  double best = 0;
  for (size_t i = 1; i < s.size(); ++i) {
    if (s.values[i] > s.values[peak]) peak = i;
    const int y = year_of(s.grain, s.periods[i]);
    if (windowed &&
        (y < *focus_.year_from || y > std::min(*focus_.year_to, *focus_.year_from + 30) + 1))
      continue;
    const double fall = s.values[peak] - s.values[i];
    if (fall > best) {
      best = fall;
      best_peak = peak;
      best_trough = i;
    }
  }
  if (best <= 0 || s.values[best_peak] <= 0) return;
  const double pct = 100.0 * best / s.values[best_peak];
  if (pct < 2.0) return;
  // A fall from the first to the last point is the change itself.
  if (best_peak == 0 && best_trough + 1 == s.size()) return;
  Fact fact = base("drawdown", m);
  fact.entity = entity_name(entity);
  fact.breakdown = grain_name(s.grain);
  fact.period_from = period_label(s.grain, s.periods.front());
  fact.period_to = period_label(s.grain, s.periods.back());
  fact.values.push_back({"peak", s.values[best_peak], fact.unit, fact.entity,
                         period_label(s.grain, s.periods[best_peak])});
  fact.values.push_back({"trough", s.values[best_trough], fact.unit, fact.entity,
                         period_label(s.grain, s.periods[best_trough])});
  fact.values.push_back({"decline", -best, fact.unit, fact.entity, ""});
  fact.values.push_back({"decline_pct", -pct, "%", fact.entity, ""});
  fact.values.push_back({"periods_peak_to_trough",
                         static_cast<double>(s.periods[best_trough] - s.periods[best_peak]), "", "",
                         ""});
  for (size_t i = best_trough + 1; i < s.size(); ++i) {
    if (s.values[i] >= s.values[best_peak]) {
      fact.values.push_back(
          {"recovered", s.values[i], fact.unit, fact.entity, period_label(s.grain, s.periods[i])});
      fact.values.push_back({"periods_to_recover",
                             static_cast<double>(s.periods[i] - s.periods[best_trough]), "", "",
                             ""});
      fact.values.push_back({"periods_peak_to_recovery",
                             static_cast<double>(s.periods[i] - s.periods[best_peak]), "", "", ""});
      break;
    }
  }
  fact.direction = -1;
  fact.significance = clamp01(pct / 10.0);
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, s.grain) +
             "\nSELECT period, value FROM s ORDER BY period_key";
  fact.formula =
      "peak: the running maximum before the largest fall; trough: the lowest value after it; "
      "recovered: the first later period at or above the peak";
  add(std::move(fact));
  drawdown_window_ = {s.periods[best_peak], s.periods[best_trough]};
  drawdown_grain_ = s.grain;
}

void Generator::seasonality_fact(size_t m, int32_t entity) {
  // The cycle of the year: months for monthly (and daily) data, quarters for quarterly.
  if (f_.grain != Grain::kMonth && f_.grain != Grain::kDay && f_.grain != Grain::kQuarter) return;
  const Grain cg = f_.grain == Grain::kQuarter ? Grain::kQuarter : Grain::kMonth;
  const int slots = cg == Grain::kQuarter ? 4 : 12;
  auto slot_of = [&](int64_t period) {
    return cg == Grain::kQuarter ? (month_of(cg, period) - 1) / 3 : month_of(cg, period) - 1;
  };
  auto slot_name = [&](int k) -> std::string {
    return cg == Grain::kQuarter ? "Q" + std::to_string(k + 1) : month_name(k + 1);
  };
  Series s = restrict(series_of(f_, m, entity, cg));
  if (s.size() < static_cast<size_t>(2 * slots)) return;
  std::vector<std::vector<double>> by_month(static_cast<size_t>(slots));
  for (size_t i = 0; i < s.size(); ++i)
    by_month[static_cast<size_t>(slot_of(s.periods[i]))].push_back(s.values[i]);
  Fact fact = base("seasonality", m);
  fact.entity = entity_name(entity);
  fact.breakdown = cg == Grain::kQuarter ? "quarter" : "month";
  fact.period_from = period_label(cg, s.periods.front());
  fact.period_to = period_label(cg, s.periods.back());
  int peak = -1, trough = -1;
  std::vector<double> means(static_cast<size_t>(slots), std::nan(""));
  for (int mo = 0; mo < slots; ++mo) {
    if (by_month[static_cast<size_t>(mo)].empty()) continue;
    means[static_cast<size_t>(mo)] = stats::mean(by_month[static_cast<size_t>(mo)]);
    fact.values.push_back(
        {"mean", means[static_cast<size_t>(mo)], fact.unit, fact.entity, slot_name(mo)});
    if (peak < 0 || means[static_cast<size_t>(mo)] > means[static_cast<size_t>(peak)]) peak = mo;
    if (trough < 0 || means[static_cast<size_t>(mo)] < means[static_cast<size_t>(trough)])
      trough = mo;
  }
  if (peak < 0 || peak == trough) return;
  fact.values.push_back(
      {"peak", means[static_cast<size_t>(peak)], fact.unit, fact.entity, slot_name(peak)});
  fact.values.push_back(
      {"trough", means[static_cast<size_t>(trough)], fact.unit, fact.entity, slot_name(trough)});
  fact.values.push_back({"amplitude",
                         means[static_cast<size_t>(peak)] - means[static_cast<size_t>(trough)],
                         fact.unit, fact.entity, ""});
  // Share of the variance the month of the year explains (eta squared).
  const double grand = stats::mean(s.values);
  double between = 0, total = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double mm = means[static_cast<size_t>(slot_of(s.periods[i]))];
    between += (mm - grand) * (mm - grand);
    total += (s.values[i] - grand) * (s.values[i] - grand);
  }
  fact.values.push_back({"eta2", total > 0 ? between / total : 0, "", "", ""});
  fact.values.push_back({"overall_mean", grand, fact.unit, fact.entity, ""});
  // How much each month varies from year to year.
  int most = -1, least = -1;
  std::vector<double> sd(static_cast<size_t>(slots), std::nan(""));
  for (int mo = 0; mo < slots; ++mo) {
    if (by_month[static_cast<size_t>(mo)].size() < 3) continue;
    sd[static_cast<size_t>(mo)] = stats::stddev(by_month[static_cast<size_t>(mo)]);
    fact.values.push_back(
        {"sd", sd[static_cast<size_t>(mo)], fact.unit, fact.entity, slot_name(mo)});
    if (most < 0 || sd[static_cast<size_t>(mo)] > sd[static_cast<size_t>(most)]) most = mo;
    if (least < 0 || sd[static_cast<size_t>(mo)] < sd[static_cast<size_t>(least)]) least = mo;
  }
  if (most >= 0 && most != least) {
    fact.values.push_back(
        {"most_variable", sd[static_cast<size_t>(most)], fact.unit, fact.entity, slot_name(most)});
    fact.values.push_back({"least_variable", sd[static_cast<size_t>(least)], fact.unit, fact.entity,
                           slot_name(least)});
  }
  fact.significance = total > 0 ? clamp01(between / total * 1.5) : 0;
  std::string cases;
  for (int k = 0; k < slots; ++k)
    cases += " WHEN " + std::to_string(k + 1) + " THEN '" + slot_name(k) + "'";
  const std::string slot_sql = "period_key % " + std::to_string(slots) + " + 1";
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, cg) + "\nSELECT " + slot_sql +
             " AS slot, CASE " + slot_sql + cases +
             " END AS period, AVG(value) AS value FROM s WHERE " + range_sql(s) +
             " GROUP BY 1 ORDER BY 1";
  fact.formula =
      "peak and trough: the months with the highest and lowest mean; amplitude = peak - trough";
  add(std::move(fact));
}

void Generator::entity_comparisons(size_t m, Grain g) {
  std::vector<Series> es = entity_series(f_, m, g);
  for (size_t e = 0; e < es.size(); ++e) es[e] = excluded(e) ? Series{} : restrict(es[e]);
  // The common span: the first and last period most entities have.
  std::map<int64_t, size_t> count;
  for (const Series& s : es) {
    for (int64_t p : s.periods) ++count[p];
  }
  if (count.empty()) return;
  size_t most = 0;
  for (const auto& [p, c] : count) most = std::max(most, c);
  std::vector<int64_t> common;
  for (const auto& [p, c] : count) {
    if (c * 10 >= most * 8) common.push_back(p);
  }
  const int64_t p0 = common.front(), p1 = common.back();
  const std::string l0 = period_label(g, p0), l1 = period_label(g, p1);
  const Measure& meas = f_.measures[m];
  const std::string base_sql = with_long(f_) + ",\n" + entity_series_cte(f_, m, g);

  // Rank of the changes (which rose and fell most): among every entity by relative and by
  // absolute change, and among the ones the question names (with their first and last
  // values). Each listed entity carries both changes.
  struct Row {
    int32_t e;
    double first, last, change, pct;
  };
  std::vector<Row> all_rows;
  bool all_positive = true;
  if (p0 != p1) {
    for (size_t e = 0; e < es.size(); ++e) {
      const int64_t i0 = es[e].find(p0), i1 = es[e].find(p1);
      if (i0 < 0 || i1 < 0) continue;
      const double a = es[e].values[static_cast<size_t>(i0)],
                   b = es[e].values[static_cast<size_t>(i1)];
      all_positive = all_positive && a > 0;
      all_rows.push_back(
          {static_cast<int32_t>(e), a, b, b - a, a > 0 ? 100.0 * (b - a) / a : std::nan("")});
    }
  }
  auto rank_fact = [&](std::vector<Row> rows, bool by_pct, bool named) {
    if (rows.size() < (named ? 2u : 3u)) return;
    std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
      return by_pct ? a.pct > b.pct : a.change > b.change;
    });
    Fact fact = base("rank", m);
    fact.breakdown = f_.entity_label;
    fact.period_from = l0;
    fact.period_to = l1;
    fact.subspace.push_back(by_pct ? "ranked by relative change" : "ranked by change");
    std::string in_named;
    if (named) {
      std::string list;
      for (const Row& r : rows) {
        list += (list.empty() ? "" : ", ") + entity_name(r.e);
        in_named += (in_named.empty() ? "" : ", ") + sql_literal(entity_name(r.e));
      }
      fact.subspace.push_back(f_.entity_label + " in (" + list + ")");
      in_named = " AND a.entity IN (" + in_named + ")";
    }
    std::vector<size_t> picks;
    const size_t k = named ? rows.size() : kTopK;
    for (size_t i = 0; i < rows.size() && i < k; ++i) picks.push_back(i);
    for (size_t i = rows.size() > k ? std::max(k, rows.size() - k) : rows.size(); i < rows.size();
         ++i)
      picks.push_back(i);
    const std::string by = by_pct ? "pct_change" : "change";
    for (size_t i : picks) {
      const Row& r = rows[i];
      const std::string name = entity_name(r.e);
      fact.values.push_back({by, by_pct ? r.pct : r.change, by_pct ? "%" : meas.unit, name, ""});
      if (by_pct) {
        fact.values.push_back({"change", r.change, meas.unit, name, ""});
      } else if (std::isfinite(r.pct)) {
        fact.values.push_back({"pct_change", r.pct, "%", name, ""});
      }
      if (named) {
        fact.values.push_back({"first", r.first, meas.unit, name, l0});
        fact.values.push_back({"last", r.last, meas.unit, name, l1});
      }
    }
    fact.values.push_back({"n", static_cast<double>(rows.size()), "", "", ""});
    std::vector<double> v;
    for (const Row& r : rows) v.push_back(by_pct ? r.pct : r.change);
    const double sd = stats::stddev(v);
    fact.significance = sd > 0 ? clamp01(std::max(std::fabs(v.front() - stats::mean(v)),
                                                  std::fabs(v.back() - stats::mean(v))) /
                                         sd / 3.0)
                               : 0;
    if (named) fact.significance = std::max(fact.significance, 0.8);
    fact.sql =
        base_sql +
        "\nSELECT a.entity, a.value AS first, b.value AS last, b.value - a.value AS change" +
        std::string(all_positive ? ", 100.0 * (b.value - a.value) / a.value AS pct_change" : "") +
        " FROM es a JOIN es b ON a.entity = b.entity WHERE a.period_key = " + std::to_string(p0) +
        " AND b.period_key = " + std::to_string(p1) + in_named + " ORDER BY " + by + " DESC";
    add(std::move(fact));
  };
  if (all_positive) rank_fact(all_rows, true, false);
  rank_fact(all_rows, false, false);
  if (focus_.entities.size() >= 2) {
    std::vector<Row> named;
    for (const Row& r : all_rows) {
      if (std::find(focus_.entities.begin(), focus_.entities.end(), r.e) != focus_.entities.end())
        named.push_back(r);
    }
    rank_fact(named, all_positive, true);
  }
  // The same over the window of a fall the question asks about (which lost most in it).
  if (drawdown_window_ && focus_.kinds.count("drawdown")) {
    const Grain wg = drawdown_grain_;
    const std::vector<Series> ws = entity_series(f_, m, wg);
    const int64_t w0 = drawdown_window_->first, w1 = drawdown_window_->second;
    std::vector<Row> rows;
    bool positive = true;
    for (size_t e = 0; e < ws.size(); ++e) {
      if (excluded(e)) continue;
      const int64_t i0 = ws[e].find(w0), i1 = ws[e].find(w1);
      if (i0 < 0 || i1 < 0) continue;
      const double a = ws[e].values[static_cast<size_t>(i0)],
                   b = ws[e].values[static_cast<size_t>(i1)];
      positive = positive && a > 0;
      rows.push_back(
          {static_cast<int32_t>(e), a, b, b - a, a > 0 ? 100.0 * (b - a) / a : std::nan("")});
    }
    if (rows.size() >= 3) {
      for (const bool by_pct : {false, true}) {
        if (by_pct && !positive) continue;
        std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
          return by_pct ? a.pct < b.pct : a.change < b.change;
        });
        Fact fact = base("rank", m);
        fact.breakdown = f_.entity_label;
        fact.period_from = period_label(wg, w0);
        fact.period_to = period_label(wg, w1);
        fact.subspace.push_back(by_pct ? "ranked by relative change over the fall"
                                       : "ranked by change over the fall");
        const std::string by = by_pct ? "pct_change" : "change";
        // Largest losses first: the fall is what is asked about.
        for (size_t i = 0; i < rows.size() && i < kTopK; ++i) {
          fact.values.push_back({by, by_pct ? rows[i].pct : rows[i].change,
                                 by_pct ? "%" : meas.unit, entity_name(rows[i].e), ""});
          if (by_pct)
            fact.values.push_back(
                {"change", rows[i].change, meas.unit, entity_name(rows[i].e), ""});
          else if (std::isfinite(rows[i].pct))
            fact.values.push_back({"pct_change", rows[i].pct, "%", entity_name(rows[i].e), ""});
        }
        fact.values.push_back({"n", static_cast<double>(rows.size()), "", "", ""});
        fact.significance = 0.9;
        fact.sql =
            with_long(f_) + ",\n" + entity_series_cte(f_, m, wg) +
            "\nSELECT a.entity, a.value AS first, b.value AS last, b.value - a.value AS change" +
            std::string(positive ? ", 100.0 * (b.value - a.value) / a.value AS pct_change" : "") +
            " FROM es a JOIN es b ON a.entity = b.entity WHERE a.period_key = " +
            std::to_string(w0) + " AND b.period_key = " + std::to_string(w1) + " ORDER BY " + by;
        add(std::move(fact));
      }
    }
  }

  // The mix: every entity's share of the total in the first and last common period.
  if (meas.extensive && es.size() >= 2 && p0 != p1) {
    double t0 = 0, t1 = 0;
    std::vector<std::pair<int32_t, std::pair<double, double>>> shares;
    for (size_t e = 0; e < es.size(); ++e) {
      const int64_t i0 = es[e].find(p0), i1 = es[e].find(p1);
      const double a = i0 >= 0 ? es[e].values[static_cast<size_t>(i0)] : 0;
      const double b = i1 >= 0 ? es[e].values[static_cast<size_t>(i1)] : 0;
      t0 += a;
      t1 += b;
      shares.push_back({static_cast<int32_t>(e), {a, b}});
    }
    if (t0 > 0 && t1 > 0) {
      Fact mix = base("mix", m);
      mix.breakdown = f_.entity_label;
      mix.period_from = l0;
      mix.period_to = l1;
      std::stable_sort(shares.begin(), shares.end(), [](const auto& a, const auto& b) {
        return a.second.second > b.second.second;
      });
      double max_shift = 0;
      for (const auto& [e, ab] : shares) {
        mix.values.push_back({"share", 100.0 * ab.second / t1, "%", entity_name(e), l1});
      }
      std::vector<std::pair<int32_t, std::pair<double, double>>> by_first = shares;
      std::stable_sort(by_first.begin(), by_first.end(), [](const auto& a, const auto& b) {
        return a.second.first > b.second.first;
      });
      for (const auto& [e, ab] : by_first) {
        mix.values.push_back({"share", 100.0 * ab.first / t0, "%", entity_name(e), l0});
      }
      for (const auto& [e, ab] : shares) {
        const double shift = 100.0 * ab.second / t1 - 100.0 * ab.first / t0;
        max_shift = std::max(max_shift, std::fabs(shift));
        mix.values.push_back({"shift_pp", shift, "pp", entity_name(e), ""});
      }
      mix.significance = clamp01(max_shift / 10.0);
      const std::string share_sql =
          base_sql +
          ",\nsh AS (SELECT entity, period_key, period, value, 100.0 * value / SUM(value) OVER "
          "(PARTITION BY period_key) AS share FROM es WHERE period_key IN (" +
          std::to_string(p0) + ", " + std::to_string(p1) + "))";
      mix.sql = share_sql +
                "\nSELECT entity, period, value, share FROM sh ORDER BY period_key, share DESC";
      mix.formula = "shift_pp = share in " + l1 + " - share in " + l0;
      add(mix);
      // Each target entity's share, and the shift.
      for (int32_t e : targets(m, g)) {
        if (e < 0) continue;
        const auto it =
            std::find_if(shares.begin(), shares.end(), [&](const auto& s) { return s.first == e; });
        if (it == shares.end()) continue;
        Fact fact = base("proportion", m);
        fact.entity = entity_name(e);
        fact.breakdown = f_.entity_label;
        fact.period_from = l0;
        fact.period_to = l1;
        const double s0 = 100.0 * it->second.first / t0, s1 = 100.0 * it->second.second / t1;
        fact.values.push_back({"share_first", s0, "%", fact.entity, l0});
        fact.values.push_back({"share_last", s1, "%", fact.entity, l1});
        fact.values.push_back({"shift_pp", s1 - s0, "pp", fact.entity, ""});
        fact.direction = s1 > s0 ? 1 : s1 < s0 ? -1 : 0;
        fact.significance = clamp01(std::fabs(s1 - s0) / 10.0);
        fact.sql = share_sql +
                   "\nSELECT a.share AS share_first, b.share AS share_last, b.share - a.share AS "
                   "shift_pp FROM sh a, sh b WHERE a.entity = " +
                   sql_literal(fact.entity) + " AND b.entity = " + sql_literal(fact.entity) +
                   " AND a.period_key = " + std::to_string(p0) +
                   " AND b.period_key = " + std::to_string(p1);
        add(std::move(fact));
      }
    }
  }

  // Growth of the named entities compared, pairwise among the first three.
  if (focus_.entities.size() >= 2 && p0 != p1) {
    const double years = period_year(g, p1) - period_year(g, p0);
    const size_t k = std::min<size_t>(3, focus_.entities.size());
    for (size_t i = 0; i < k; ++i) {
      for (size_t j = i + 1; j < k; ++j) {
        const int32_t a = focus_.entities[i], b = focus_.entities[j];
        const Series& sa = es[static_cast<size_t>(a)];
        const Series& sb = es[static_cast<size_t>(b)];
        const int64_t a0 = sa.find(p0), a1 = sa.find(p1), b0 = sb.find(p0), b1 = sb.find(p1);
        if (a0 < 0 || a1 < 0 || b0 < 0 || b1 < 0) continue;
        const auto ga = stats::compound_growth(sa.values[static_cast<size_t>(a0)],
                                               sa.values[static_cast<size_t>(a1)], years);
        const auto gb = stats::compound_growth(sb.values[static_cast<size_t>(b0)],
                                               sb.values[static_cast<size_t>(b1)], years);
        if (!ga || !gb) continue;
        Fact fact = base("difference", m);
        fact.breakdown = f_.entity_label;
        fact.period_from = l0;
        fact.period_to = l1;
        fact.subspace.push_back(entity_name(a) + " vs " + entity_name(b));
        fact.values.push_back({"cagr_pct", 100.0 * *ga, "%", entity_name(a), ""});
        fact.values.push_back({"cagr_pct", 100.0 * *gb, "%", entity_name(b), ""});
        fact.values.push_back(
            {"pct_change",
             100.0 * (sa.values[static_cast<size_t>(a1)] / sa.values[static_cast<size_t>(a0)] - 1),
             "%", entity_name(a), ""});
        fact.values.push_back(
            {"pct_change",
             100.0 * (sb.values[static_cast<size_t>(b1)] / sb.values[static_cast<size_t>(b0)] - 1),
             "%", entity_name(b), ""});
        fact.direction = *ga > *gb ? 1 : -1;
        fact.significance =
            clamp01(std::fabs(*ga - *gb) / std::max(0.01, std::fabs(*ga) + std::fabs(*gb)));
        fact.sql = base_sql + "\nSELECT a.entity, 100.0 * (pow(b.value / a.value, 1.0 / " +
                   text::format_cell(years) +
                   ") - 1) AS cagr_pct, 100.0 * (b.value - a.value) / a.value AS pct_change FROM "
                   "es a JOIN es b ON a.entity = b.entity WHERE a.period_key = " +
                   std::to_string(p0) + " AND b.period_key = " + std::to_string(p1) +
                   " AND a.entity IN (" + sql_literal(entity_name(a)) + ", " +
                   sql_literal(entity_name(b)) + ")";
        add(std::move(fact));
      }
    }
  }

  // Who is highest and lowest in the latest common period (or the question's year).
  int64_t at = p1;
  if (focus_.year_from && focus_.year_to && *focus_.year_from == *focus_.year_to) {
    for (int64_t p : common) {
      if (year_of(g, p) == *focus_.year_from) at = p;
    }
  }
  cross_section_facts(m, g, at, es);
}

// --- across entities --------------------------------------------------------------------

void Generator::cross_section_facts(size_t m, Grain g, int64_t period,
                                    const std::vector<Series>& es) {
  std::vector<std::pair<double, int32_t>> v;
  for (size_t e = 0; e < es.size(); ++e) {
    if (excluded(e)) continue;
    const int64_t i = es[e].find(period);
    if (i >= 0) v.push_back({es[e].values[static_cast<size_t>(i)], static_cast<int32_t>(e)});
  }
  if (v.size() < 3) return;
  std::stable_sort(v.begin(), v.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  const std::string label = g == Grain::kNone ? "" : period_label(g, period);
  const std::string where =
      g == Grain::kNone ? "" : " WHERE period_key = " + std::to_string(period);
  const std::string sql = with_long(f_) + ",\n" + entity_series_cte(f_, m, g) +
                          "\nSELECT entity, period, value FROM es" + where + " ORDER BY value DESC";
  const Measure& meas = f_.measures[m];
  std::vector<double> values;
  for (const auto& [x, e] : v) values.push_back(x);

  Fact rank = base("rank", m);
  rank.breakdown = f_.entity_label;
  rank.period_from = label;
  for (size_t i = 0; i < v.size() && i < kTopK; ++i)
    rank.values.push_back({"value", v[i].first, meas.unit, entity_name(v[i].second), label});
  for (size_t i = std::max(kTopK, v.size() > kTopK ? v.size() - kTopK : v.size()); i < v.size();
       ++i)
    rank.values.push_back({"value", v[i].first, meas.unit, entity_name(v[i].second), label});
  rank.values.push_back({"n", static_cast<double>(v.size()), "", "", ""});
  const double sd = stats::stddev(values);
  rank.significance = sd > 0 ? clamp01((values.front() - stats::mean(values)) / sd / 3.0 + 0.2) : 0;
  rank.sql = sql;
  add(rank);

  if (v.size() >= 5) {
    Fact dist = base("distribution", m);
    dist.breakdown = f_.entity_label;
    dist.period_from = label;
    dist.values.push_back({"median", stats::quantile(values, 0.5), meas.unit, "", label});
    dist.values.push_back({"q1", stats::quantile(values, 0.25), meas.unit, "", label});
    dist.values.push_back({"q3", stats::quantile(values, 0.75), meas.unit, "", label});
    dist.values.push_back({"min", v.back().first, meas.unit, entity_name(v.back().second), label});
    dist.values.push_back(
        {"max", v.front().first, meas.unit, entity_name(v.front().second), label});
    dist.values.push_back({"mean", stats::mean(values), meas.unit, "", label});
    dist.values.push_back({"n", static_cast<double>(v.size()), "", "", ""});
    dist.significance = 0.3;
    dist.sql = sql;
    dist.formula = "median and quartiles by linear interpolation over the values of the result";
    add(dist);
    // Outliers: far from the median in robust standard deviations.
    const double med = stats::quantile(values, 0.5);
    const double spread = stats::mad(values);
    if (spread > 0) {
      for (const auto& [x, e] : v) {
        const double z = (x - med) / spread;
        if (std::fabs(z) < 3.5) continue;
        Fact o = base("outlier", m);
        o.entity = entity_name(e);
        o.breakdown = f_.entity_label;
        o.period_from = label;
        o.values.push_back({"value", x, meas.unit, o.entity, label});
        o.values.push_back({"median", med, meas.unit, "", label});
        o.values.push_back({"z", z, "", o.entity, ""});
        o.significance = clamp01(std::fabs(z) / 7.0);
        o.sql = sql;
        o.formula = "z = (value - median) / (1.4826 * median absolute deviation)";
        add(std::move(o));
      }
    }
  }
  // The named entities' own values and ranks.
  for (int32_t e : focus_.entities) {
    const auto it = std::find_if(v.begin(), v.end(), [&](const auto& p) { return p.second == e; });
    if (it == v.end()) continue;
    Fact fact = base("value", m);
    fact.entity = entity_name(e);
    fact.breakdown = f_.entity_label;
    fact.period_from = label;
    fact.values.push_back({"value", it->first, meas.unit, fact.entity, label});
    fact.values.push_back({"rank", static_cast<double>(it - v.begin() + 1), "", fact.entity, ""});
    fact.values.push_back({"n", static_cast<double>(v.size()), "", "", ""});
    fact.significance = 0.5;
    fact.sql = sql;
    add(std::move(fact));
  }
}

void Generator::associations(Grain g) {
  if (f_.measures.size() < 2) return;
  // Pairs: each named measure against every other; without names, every pair of the first
  // eight measures.
  // The question's first named measure is the outcome; it is paired with every other measure
  // (the named ones first). Without a named measure, every pair of the first eight.
  std::vector<std::pair<size_t, size_t>> pairs;
  const size_t limit = std::min<size_t>(f_.measures.size(), 8);
  if (!focus_.measures.empty()) {
    const size_t target = focus_.measures.front();
    std::vector<size_t> others(focus_.measures.begin() + 1, focus_.measures.end());
    for (size_t b = 0; b < f_.measures.size() && b < 24; ++b) {
      if (b != target && std::find(others.begin(), others.end(), b) == others.end())
        others.push_back(b);
    }
    for (size_t b : others) pairs.push_back({target, b});
  } else {
    for (size_t a = 0; a < limit; ++a) {
      for (size_t b = a + 1; b < limit; ++b) pairs.push_back({a, b});
    }
  }
  // Across entities (one period: the latest with most entities, or a cross-section), or over
  // time when there are no entities.
  const bool over_time = f_.entities.empty();
  int64_t period = 0;
  if (!over_time && g != Grain::kNone) {
    std::map<int64_t, size_t> count;
    for (const Observation& o : f_.rows) ++count[coarsen(f_.grain, g, o.period)];
    size_t most = 0;
    for (const auto& [p, c] : count) {
      if (c * 10 >= most * 9 || c > most) period = p;
      most = std::max(most, c);
    }
    if (focus_.year_from && focus_.year_to && *focus_.year_from == *focus_.year_to &&
        g == Grain::kYear)
      period = *focus_.year_from;
  }
  std::map<size_t, std::vector<std::pair<double, Fact>>> by_target;
  for (const auto& [a, b] : pairs) {
    std::vector<double> x, y;
    std::string sql;
    Fact fact = base("association", a);
    fact.measures.push_back(f_.measures[b].label);
    if (over_time) {
      const Series sa = restrict(series_of(f_, a, -1, g));
      const Series sb = restrict(series_of(f_, b, -1, g));
      for (size_t i = 0; i < sa.size(); ++i) {
        const int64_t j = sb.find(sa.periods[i]);
        if (j < 0) continue;
        x.push_back(sa.values[i]);
        y.push_back(sb.values[static_cast<size_t>(j)]);
      }
      if (sa.empty()) continue;
      fact.breakdown = grain_name(g);
      fact.period_from = period_label(g, sa.periods.front());
      fact.period_to = period_label(g, sa.periods.back());
      sql = with_long(f_) + ",\n" + series_cte(f_, a, -1, g, "sx") + ",\n" +
            series_cte(f_, b, -1, g, "sy") +
            ",\nd AS (SELECT sx.value AS x, sy.value AS y FROM sx JOIN sy ON sx.period_key = "
            "sy.period_key WHERE sx." +
            range_sql(sa) + ")";
    } else {
      const std::vector<Series> ea = entity_series(f_, a, g);
      const std::vector<Series> eb = entity_series(f_, b, g);
      for (size_t e = 0; e < ea.size(); ++e) {
        if (excluded(e)) continue;
        const int64_t i = ea[e].find(period), j = eb[e].find(period);
        if (i < 0 || j < 0) continue;
        x.push_back(ea[e].values[static_cast<size_t>(i)]);
        y.push_back(eb[e].values[static_cast<size_t>(j)]);
      }
      fact.breakdown = f_.entity_label.empty() ? "entity" : f_.entity_label;
      if (g != Grain::kNone) fact.period_from = period_label(g, period);
      sql =
          with_long(f_) + ",\n" + entity_series_cte(f_, a, g, "ex") + ",\n" +
          entity_series_cte(f_, b, g, "ey") +
          ",\nd AS (SELECT ex.value AS x, ey.value AS y FROM ex JOIN ey ON ex.entity = ey.entity "
          "AND ex.period_key = ey.period_key" +
          (g == Grain::kNone ? std::string() : " WHERE ex.period_key = " + std::to_string(period)) +
          ")";
    }
    const auto pr = stats::pearson(x, y);
    if (!pr || x.size() < 5) continue;
    const auto sp = stats::spearman(x, y);
    fact.values.push_back({"r", pr->r, "", "", ""});
    if (sp) fact.values.push_back({"rho", sp->r, "", "", ""});
    // Over time, two trending series correlate whatever drives them: the correlation of their
    // changes from one period to the next says more.
    if (over_time && x.size() >= 6) {
      std::vector<double> dx, dy;
      for (size_t i = 1; i < x.size(); ++i) {
        dx.push_back(x[i] - x[i - 1]);
        dy.push_back(y[i] - y[i - 1]);
      }
      if (const auto pd = stats::pearson(dx, dy))
        fact.values.push_back({"r_changes", pd->r, "", "", ""});
    }
    fact.values.push_back({"p_value", pr->p_value, "", "", ""});
    fact.values.push_back({"n", static_cast<double>(pr->n), "", "", ""});
    fact.direction = pr->r > 0 ? 1 : -1;
    fact.significance = clamp01(1.0 - pr->p_value) * (0.4 + 0.6 * std::fabs(pr->r));
    fact.sql = sql +
               "\nSELECT COUNT(*) AS n, (COUNT(*) * SUM(x * y) - SUM(x) * SUM(y)) / sqrt((COUNT(*) "
               "* SUM(x * x) - "
               "SUM(x) * SUM(x)) * (COUNT(*) * SUM(y * y) - SUM(y) * SUM(y))) AS r FROM d";
    fact.formula =
        "r: Pearson over the rows of d; rho: Pearson of their ranks (ties share the mean rank); "
        "p_value: t test with n - 2 degrees of freedom";
    by_target[a].push_back({pr->r, fact});
    add(std::move(fact));
  }
  // Which measure correlates most with each named target.
  for (auto& [a, list] : by_target) {
    if (list.size() < 2 || focus_.measures.empty()) continue;
    std::stable_sort(list.begin(), list.end(), [](const auto& p, const auto& q) {
      return std::fabs(p.first) > std::fabs(q.first);
    });
    Fact fact = base("rank", a);
    fact.breakdown = "measure";
    fact.subspace.push_back("ranked by correlation");
    fact.period_from = list.front().second.period_from;
    fact.period_to = list.front().second.period_to;
    // Every measure the question names, and the strongest others, up to six.
    auto named = [&](const Fact& f) {
      for (size_t k : focus_.measures) {
        if (f_.measures[k].label == f.measures[1]) return true;
      }
      return false;
    };
    size_t listed = 0;
    for (size_t i = 0; i < list.size(); ++i) {
      if (listed >= 6 || (listed >= 4 && !named(list[i].second))) continue;
      const std::string who = measure_phrase(list[i].second.measures[1], "");
      fact.values.push_back({"r", list[i].first, "", who, ""});
      if (const FactValue* rho = list[i].second.value("rho"))
        fact.values.push_back({"rho", rho->value, "", who, ""});
      ++listed;
    }
    fact.values.push_back({"measures", static_cast<double>(list.size()), "", "", ""});
    fact.significance = list.front().second.significance;
    fact.sql = list.front().second.sql;
    fact.formula = "each measure's Pearson r with " + f_.measures[a].label + ", ordered by |r|";
    add(std::move(fact));
  }
}

void Generator::series_fact(size_t m, int32_t entity, const Series& s) {
  if (s.size() < 3 || s.size() > 15) return;
  Fact fact = base("series", m);
  fact.entity = entity_name(entity);
  fact.breakdown = grain_name(s.grain);
  fact.period_from = period_label(s.grain, s.periods.front());
  fact.period_to = period_label(s.grain, s.periods.back());
  if (s.grain != f_.grain && f_.grain != Grain::kNone) {
    fact.subspace.push_back(f_.measures[m].flow ? "total per " + std::string(grain_name(s.grain))
                                                : "mean per " + std::string(grain_name(s.grain)));
  }
  for (size_t i = 0; i < s.size(); ++i) {
    fact.values.push_back(
        {"value", s.values[i], fact.unit, fact.entity, period_label(s.grain, s.periods[i])});
  }
  fact.significance = 0.4;
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, s.grain) +
             "\nSELECT period, value FROM s WHERE " + range_sql(s) + " ORDER BY period_key";
  add(std::move(fact));
}

void Generator::periods_fact(size_t m, int32_t entity) {
  if (focus_.ranges.size() < 2) return;
  const Series s = series_of(f_, m, entity, f_.grain == Grain::kNone ? Grain::kNone : Grain::kYear);
  if (s.grain != Grain::kYear) return;
  Fact fact = base("periods", m);
  fact.entity = entity_name(entity);
  fact.breakdown = "period";
  std::string sql;
  for (const auto& [y0, y1] : focus_.ranges) {
    const int64_t i0 = s.find(y0), i1 = s.find(y1);
    if (i0 < 0 || i1 < 0 || y1 <= y0) continue;
    const double a = s.values[static_cast<size_t>(i0)], b = s.values[static_cast<size_t>(i1)];
    const std::string label = std::to_string(y0) + " to " + std::to_string(y1);
    fact.values.push_back({"per_year", (b - a) / (y1 - y0), fact.unit, fact.entity, label});
    if (const auto g = stats::compound_growth(a, b, y1 - y0))
      fact.values.push_back({"cagr_pct", 100.0 * *g, "%", fact.entity, label});
    fact.values.push_back({"start", a, fact.unit, fact.entity, std::to_string(y0)});
    fact.values.push_back({"end", b, fact.unit, fact.entity, std::to_string(y1)});
    sql += std::string(sql.empty() ? "" : " UNION ALL ") + "SELECT '" + label +
           "' AS period, a.value AS start, b.value AS end, (b.value - a.value) / " +
           std::to_string(y1 - y0) + ".0 AS per_year" +
           (a > 0 && b > 0 ? ", 100.0 * (pow(b.value / a.value, 1.0 / " + std::to_string(y1 - y0) +
                                 ") - 1) AS cagr_pct"
                           : ", NULL AS cagr_pct") +
           " FROM s a, s b WHERE a.period_key = " + std::to_string(y0) +
           " AND b.period_key = " + std::to_string(y1);
  }
  if (fact.values.size() < 8) return;  // two periods at least
  if (fact.value("cagr_pct") == nullptr) {
    std::erase_if(fact.values, [](const FactValue& v) { return v.name == "cagr_pct"; });
  }
  fact.period_from = std::to_string(focus_.ranges.front().first);
  fact.period_to = std::to_string(focus_.ranges.back().second);
  std::vector<double> rates;
  const std::string by = fact.value("cagr_pct") ? "cagr_pct" : "per_year";
  for (const FactValue& v : fact.values) {
    if (v.name == by) rates.push_back(v.value);
  }
  fact.direction = rates.back() > rates.front() ? 1 : rates.back() < rates.front() ? -1 : 0;
  // The question names these periods: the comparison is what it asks for.
  fact.significance = std::max(
      0.9, clamp01(std::fabs(rates.back() - rates.front()) /
                   std::max(1e-9, std::fabs(rates.front()) + std::fabs(rates.back())) * 2));
  fact.sql = with_long(f_) + ",\n" + series_cte(f_, m, entity, Grain::kYear) + "\n" + sql;
  fact.formula =
      "per_year = (end - start) / years; cagr_pct = 100 * ((end / start)^(1 / years) - 1), for "
      "each period the question names";
  add(std::move(fact));
}

void Generator::time_facts(size_t m) {
  Series whole = series_of(f_, m, -1, f_.grain);
  if (whole.empty()) return;
  const int years =
      year_of(whole.grain, whole.periods.back()) - year_of(whole.grain, whole.periods.front());
  Grain g = trend_grain(f_, years);
  if (focus_.months.size() >= 2 && (f_.grain == Grain::kMonth || f_.grain == Grain::kDay))
    g = Grain::kMonth;
  for (int32_t e : targets(m, g)) {
    const Series s = restrict(series_of(f_, m, e, g));
    if (s.size() < 2) continue;
    change_fact(m, e, s);
    trend_fact(m, e, s);
    acceleration_fact(m, e, s);
    extreme_fact(m, e, s);
    series_fact(m, e, s);
    periods_fact(m, e);
    const Grain fine = f_.grain == Grain::kDay ? Grain::kMonth : f_.grain;
    if (g != f_.grain)
      extreme_fact(m, e, restrict(series_of(f_, m, e, fine)));  // the months' own peaks
    // A fall and its recovery: the whole series, so that the peak before a named period and
    // the recovery after it are found.
    if (focus_.kinds.count("drawdown")) drawdown_fact(m, e, series_of(f_, m, e, fine));
    if (e < 0 || f_.entities.size() <= 3 || !focus_.entities.empty()) seasonality_fact(m, e);
  }
  if (f_.entities.size() >= 2) entity_comparisons(m, g);
}

std::vector<Fact> Generator::run() {
  // Named measures first, then the rest (capped, so that wide tables stay fast).
  std::vector<size_t> order = focus_.measures;
  for (size_t m = 0; m < f_.measures.size() && order.size() < focus_.measures.size() + 6; ++m) {
    if (std::find(order.begin(), order.end(), m) == order.end()) order.push_back(m);
  }
  if (f_.grain == Grain::kNone) {
    for (size_t m : order) {
      cross_section_facts(m, Grain::kNone, 0, entity_series(f_, m, Grain::kNone));
    }
    associations(Grain::kNone);
  } else {
    for (size_t m : order) time_facts(m);
    Series whole = series_of(f_, order.front(), -1, f_.grain);
    const int years = whole.empty() ? 0
                                    : year_of(whole.grain, whole.periods.back()) -
                                          year_of(whole.grain, whole.periods.front());
    associations(trend_grain(f_, years));
  }
  return std::move(out_);
}

}  // namespace

const FactValue* Fact::value(const std::string& name) const {
  for (const FactValue& v : values) {
    if (v.name == name) return &v;
  }
  return nullptr;
}

double Fact::get(const std::string& name, double fallback) const {
  const FactValue* v = value(name);
  return v ? v->value : fallback;
}

std::vector<Fact> compute_facts(const Frame& frame, const Focus& focus) {
  if (focus.excluded.empty()) return Generator(frame, focus).run();
  // Entities the question leaves out are out of every fact, totals included: the frame and its
  // SQL both lose their rows.
  Frame kept = frame;
  std::string list;
  for (int32_t e : focus.excluded) {
    list += (list.empty() ? "" : ", ") + sql_literal(frame.entities[static_cast<size_t>(e)]);
  }
  kept.long_sql =
      "SELECT * FROM (" + frame.long_sql + ") WHERE entity IS NULL OR entity NOT IN (" + list + ")";
  std::erase_if(kept.rows, [&](const Observation& o) {
    return std::find(focus.excluded.begin(), focus.excluded.end(), o.entity) !=
           focus.excluded.end();
  });
  return Generator(kept, focus).run();
}

Fact query_fact(const std::string& table_title, const std::string& source, const std::string& sql,
                const QueryResult& result, const std::string& what) {
  Fact fact;
  fact.type = "query";
  fact.table_title = table_title;
  fact.source = source;
  fact.sql = sql;
  fact.text = what;
  // Each row's label: its first text cell; its period: a year-like integer or a date.
  for (const json& row : result.rows) {
    std::string label, period;
    for (size_t c = 0; c < row.size(); ++c) {
      const json& cell = row[c];
      if (cell.is_string() && label.empty()) {
        const std::string& s = cell.get_ref<const std::string&>();
        if (s.size() >= 4 && std::isdigit(static_cast<unsigned char>(s[0])) && s[4] == '-') {
          period = s.substr(0, 4);
        } else {
          label = s;
        }
      }
      const std::string name = c < result.columns.size() ? text::lower(result.columns[c]) : "";
      if (cell.is_number_integer() && cell.get<int64_t>() >= 1000 && cell.get<int64_t>() <= 2200 &&
          name.find("year") != std::string::npos) {
        period = std::to_string(cell.get<int64_t>());
      }
    }
    for (size_t c = 0; c < row.size() && c < result.columns.size(); ++c) {
      if (row[c].is_number())
        fact.values.push_back({result.columns[c], row[c].get<double>(), "", label, period});
    }
    if (!label.empty() &&
        std::find(fact.mentions.begin(), fact.mentions.end(), label) == fact.mentions.end()) {
      fact.mentions.push_back(label);
    }
  }
  fact.id = "query-" + hex8(fnv1a(sql));
  fact.significance = 0.5;
  return fact;
}

FactSqlCheck check_fact_sql(const std::filesystem::path& db, const Fact& f) {
  FactSqlCheck out;
  Limits limits;
  limits.max_rows = 500000;
  limits.max_ms = 30000;
  limits.max_result_bytes = size_t{256} << 20;
  QueryResult r;
  try {
    r = run_readonly(db, f.sql, limits);
  } catch (const SqlError& e) {
    out.error = e.what();
    return out;
  }
  auto column = [&](const std::string& name) -> std::optional<size_t> {
    for (size_t c = 0; c < r.columns.size(); ++c) {
      if (r.columns[c] == name) return c;
    }
    return std::nullopt;
  };
  const auto entity_col = column("entity"), period_col = column("period"),
             name_col = column("name");
  for (const FactValue& v : f.values) {
    if (!std::isfinite(v.value)) continue;
    std::optional<size_t> target = column(v.name);
    const bool keyed = !target;  // the value sits in the "value" column of its own row
    if (keyed) target = column("value");
    if (!target) continue;
    if (!v.entity.empty() && !entity_col && f.entity.empty()) continue;  // ranks of measures
    // A row that is the value's own: its entity and period where the result has them; for a
    // keyed value also one key that tells rows apart (its name, else its entity, else its
    // period when rows are one per period).
    static const std::set<std::string> kObserved = {
        "value", "mean", "peak", "trough", "highest", "lowest", "recovered", "min", "max"};
    const bool observed = kObserved.count(v.name) > 0;
    const bool can_locate =
        !keyed || name_col ||
        (observed && (entity_col ? !v.entity.empty() : (period_col && !v.period.empty())));
    if (!can_locate) continue;
    for (const json& row : r.rows) {
      bool match = true;
      if (entity_col && !v.entity.empty()) match = match && row[*entity_col] == v.entity;
      if (period_col && !v.period.empty()) match = match && row[*period_col] == v.period;
      if (name_col && keyed) match = match && row[*name_col] == v.name;
      if (!match || !row[*target].is_number()) continue;
      const double sql = row[*target].get<double>();
      ++out.compared;
      if (std::fabs(sql - v.value) > 1e-6 * std::max(1.0, std::fabs(v.value))) {
        out.mismatches.push_back(v.name + (v.entity.empty() ? "" : " (" + v.entity + ")") +
                                 ": SQL " + text::format_cell(sql) + ", fact " +
                                 text::format_cell(v.value));
      }
      break;
    }
  }
  return out;
}

json to_json(const Fact& f) {
  json values = json::array();
  for (const FactValue& v : f.values) {
    json item = {{"name", v.name},
                 {"value", std::isfinite(v.value) ? json(v.value) : json(nullptr)}};
    if (!v.unit.empty()) item["unit"] = v.unit;
    if (!v.entity.empty()) item["entity"] = v.entity;
    if (!v.period.empty()) item["period"] = v.period;
    values.push_back(std::move(item));
  }
  json j = {{"id", f.id},
            {"type", f.type},
            {"table", f.table},
            {"table_title", f.table_title},
            {"source", f.source},
            {"subspace", f.subspace},
            {"breakdown", f.breakdown},
            {"measures", f.measures},
            {"unit", f.unit},
            {"entity", f.entity},
            {"entity_label", f.entity_label},
            {"period_from", f.period_from},
            {"period_to", f.period_to},
            {"values", values},
            {"sql", f.sql},
            {"formula", f.formula},
            {"text", f.text},
            {"mentions", f.mentions},
            {"direction", f.direction},
            {"significance", f.significance},
            {"off_focus", f.off_focus},
            {"relevance", f.relevance}};
  if (!f.key.empty()) j["key"] = f.key;
  if (f.chart)
    j["chart"] = {
        {"spec", f.chart->spec}, {"columns", f.chart->data.columns}, {"rows", f.chart->data.rows}};
  return j;
}

Fact fact_from_json(const json& j) {
  auto need = [&](const char* field) -> const json& {
    if (!j.is_object() || !j.contains(field))
      throw FrameError(std::string("fact: missing field \"") + field + "\"");
    return j.at(field);
  };
  auto str = [&](const char* field) -> std::string {
    const json& v = need(field);
    if (!v.is_string())
      throw FrameError(std::string("fact: field \"") + field + "\" is not a string");
    return v.get<std::string>();
  };
  auto strings = [&](const char* field) -> std::vector<std::string> {
    std::vector<std::string> out;
    if (!j.contains(field)) return out;
    for (const json& v : j.at(field)) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
    return out;
  };
  Fact f;
  f.id = str("id");
  f.type = str("type");
  f.key = j.value("key", "");
  f.table = j.value("table", "");
  f.table_title = j.value("table_title", "");
  f.source = j.value("source", "");
  f.subspace = strings("subspace");
  f.breakdown = j.value("breakdown", "");
  f.measures = strings("measures");
  f.unit = j.value("unit", "");
  f.entity = j.value("entity", "");
  f.entity_label = j.value("entity_label", "");
  f.period_from = j.value("period_from", "");
  f.period_to = j.value("period_to", "");
  for (const json& v : need("values")) {
    if (!v.is_object() || !v.contains("name"))
      throw FrameError("fact " + f.id + ": a value without a name");
    FactValue fv;
    fv.name = v.value("name", "");
    fv.value =
        v.contains("value") && v["value"].is_number() ? v["value"].get<double>() : std::nan("");
    fv.unit = v.value("unit", "");
    fv.entity = v.value("entity", "");
    fv.period = v.value("period", "");
    f.values.push_back(std::move(fv));
  }
  f.sql = j.value("sql", "");
  f.formula = j.value("formula", "");
  f.text = j.value("text", "");
  f.mentions = strings("mentions");
  f.direction = j.value("direction", 0);
  f.significance = j.value("significance", 0.0);
  f.off_focus = j.value("off_focus", false);
  f.relevance = j.value("relevance", 0.0);
  return f;
}

}  // namespace kdr::hka::analysis
