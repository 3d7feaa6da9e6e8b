// The evidence indexed: periods and spans parsed, values with their kind, unit scale, entity
// and span, the entities of each table, the words of the units.
#include "hka/report/evidence.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "hka/report/numbers.h"
#include "hka/text.h"

namespace kdr::hka::report {

using analysis::Fact;
using analysis::FactValue;

// ---------------------------------------------------------------------------------------------
// Periods: "2017", "March 2009", "Q1 2009", "15 March 2009"

Period parse_period(std::string_view label) {
  Period p;
  for (const std::string& w : text::words(label)) {
    if (w.size() == 4 && all_digits(w)) {
      const int y = std::stoi(w);
      if (y >= 1000 && y <= 2999) p.year = y;
    } else if (w.size() <= 2 && all_digits(w)) {
      p.day = std::stoi(w);
    } else if (w.size() == 2 && w[0] == 'q' && w[1] >= '1' && w[1] <= '4') {
      p.quarter = w[1] - '0';
    } else if (const int m = text::month_from_name(w); m > 0 && is_alpha(w[0])) {
      p.month = m;
    }
  }
  if (p.month == 0) p.day = 0;
  return p;
}

std::optional<std::pair<Period, Period>> parse_span(std::string_view label) {
  for (std::string_view sep : {" to ", "\xE2\x80\x93", "-"}) {
    const size_t at = label.find(sep);
    if (at == std::string_view::npos) continue;
    const Period a = parse_period(label.substr(0, at));
    const Period b = parse_period(label.substr(at + sep.size()));
    if (a.year != 0 && b.year != 0) return std::make_pair(a, b);
  }
  return std::nullopt;
}

// Whether `stated` (what the text says) fits `label` (the evidence's period).
bool period_fits(const Period& stated, const Period& label) {
  if (stated.year != 0 && stated.year != label.year) return false;
  if (stated.year == 0 && stated.month == 0) return false;
  if (stated.month != 0 && label.month != 0 && stated.month != label.month) return false;
  if (stated.month != 0 && label.month == 0 && label.quarter == 0) return false;
  if (stated.quarter != 0 && label.quarter != 0 && stated.quarter != label.quarter) return false;
  if (stated.quarter != 0 && label.quarter == 0 && label.month != 0 &&
      (label.month - 1) / 3 + 1 != stated.quarter) {
    return false;
  }
  if (stated.day != 0 && label.day != 0 && stated.day != label.day) return false;
  return true;
}

std::string period_text(const Period& p) {
  static constexpr std::array<const char*, 12> kMonths = {
      "January", "February", "March",     "April",   "May",      "June",
      "July",    "August",   "September", "October", "November", "December"};
  std::string out;
  if (p.day > 0) out += std::to_string(p.day) + " ";
  if (p.month > 0) out += std::string(kMonths[static_cast<size_t>(p.month - 1)]) + " ";
  if (p.quarter > 0) out += "Q" + std::to_string(p.quarter) + " ";
  if (p.year == 0) return std::string(text::trim(out));
  return out + std::to_string(p.year);
}

// ---------------------------------------------------------------------------------------------
// The evidence

ValueKind kind_of(const std::string& name) {
  // "z" reads as a signed distance: "4.3 standard deviations below the median".
  static const std::array<std::string_view, 12> kChanges = {
      "change",         "pct_change",  "shift_pp",   "cagr_pct",
      "slope_per_year", "per_year",    "rate_first", "rate_second",
      "decline",        "decline_pct", "z",          "amplitude"};
  static const std::array<std::string_view, 20> kLevels = {
      "first", "last", "middle", "highest",   "lowest",      "peak",      "trough",
      "start", "end",  "value",  "recovered", "mean",        "median",    "q1",
      "q3",    "min",  "max",    "share",     "share_first", "share_last"};
  static const std::array<std::string_view, 9> kStatistics = {"n",
                                                              "rank",
                                                              "r",
                                                              "rho",
                                                              "r2",
                                                              "p_value",
                                                              "periods_peak_to_trough",
                                                              "periods_to_recover",
                                                              "periods_peak_to_recovery"};
  auto in = [&](const auto& list) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  if (in(kChanges)) return ValueKind::kChange;
  if (in(kLevels)) return ValueKind::kLevel;
  if (in(kStatistics)) return ValueKind::kStatistic;
  return ValueKind::kUnknown;  // a name the checker does not know reads like a query's cell
}

namespace {

double unit_scale(const std::string& unit) {
  const std::vector<std::string> w = text::words(unit);
  if (w.empty()) return 1;
  const double s = scale_of_word(w.front());
  return s > 0 ? s : 1;
}

FactEvidence index_fact(const Fact& f) {
  FactEvidence e;
  e.fact = &f;
  auto add_period = [&](const std::string& label) {
    if (label.empty()) return;
    if (const auto span = parse_span(label)) {
      e.periods.push_back(span->first);
      e.periods.push_back(span->second);
      e.spans.push_back(*span);
      return;
    }
    const Period p = parse_period(label);
    if (p.year != 0) e.periods.push_back(p);
  };
  add_period(f.period_from);
  add_period(f.period_to);
  const Period from = parse_period(f.period_from), to = parse_period(f.period_to);
  if (from.year != 0 && to.year != 0) {
    e.spans.push_back({from, to});
    for (const FactValue& v : f.values) {
      const Period mid = parse_period(v.period);
      if (v.name == "middle" && mid.year != 0) {
        e.spans.push_back({from, mid});
        e.spans.push_back({mid, to});
      }
    }
  }
  auto add_entity = [&](const std::string& name) {
    if (!name.empty() &&
        std::find(e.entities.begin(), e.entities.end(), name) == e.entities.end()) {
      e.entities.push_back(name);
    }
  };
  add_entity(f.entity);
  auto add_name = [&](const std::string& name) {
    const std::string l = text::lower(text::trim(name));
    if (std::any_of(l.begin(), l.end(), is_digit) &&
        std::find(e.digit_names.begin(), e.digit_names.end(), l) == e.digit_names.end()) {
      e.digit_names.push_back(l);
    }
  };
  add_name(f.unit);
  add_name(f.entity);
  add_name(f.table_title);
  for (const std::string& m : f.measures) add_name(m);
  for (const std::string& m : f.mentions) add_name(m);
  const bool query = f.type == "query";
  Period middle;
  for (const FactValue& v : f.values) {
    if (v.name == "middle") middle = parse_period(v.period);
  }
  for (const FactValue& v : f.values) {
    add_period(v.period);
    add_entity(v.entity);
    add_name(v.unit);
    add_name(v.entity);
    if (!std::isfinite(v.value)) continue;
    if (v.name == "p_value")
      e.p_value = std::isnan(e.p_value) ? v.value : std::min(e.p_value, v.value);
    Value value;
    value.value = v.value;
    value.unit = v.unit;
    value.entity = v.entity.empty() ? f.entity : v.entity;
    value.period = v.period;
    const std::optional<std::pair<Period, Period>> period_span = parse_span(v.period);
    if (!period_span) value.parsed_period = parse_period(v.period);
    value.name = v.name;
    value.kind = query ? ValueKind::kUnknown : kind_of(v.name);
    value.unit_scale = unit_scale(v.unit);
    value.percent = v.unit == "%" || v.unit == "pp";
    value.fact = &f;
    if (period_span) {
      value.span = period_span;
    } else if (from.year != 0 && to.year != 0 && !query) {
      if (v.name == "rate_first" && middle.year != 0) {
        value.span = std::make_pair(from, middle);
      } else if (v.name == "rate_second" && middle.year != 0) {
        value.span = std::make_pair(middle, to);
      } else if (v.name == "change" || v.name == "pct_change" || v.name == "cagr_pct" ||
                 v.name == "slope_per_year" || v.name == "shift_pp") {
        value.span = std::make_pair(from, to);
      }
    }
    e.values.push_back(std::move(value));
  }
  return e;
}

SourceEvidence index_source(const ReportSource& s) {
  SourceEvidence e;
  e.source = &s;
  auto add = [&](double v, const std::string& column, bool percent, int64_t col) {
    Value value;
    value.value = v;
    value.name = column;
    value.kind = ValueKind::kUnknown;
    value.any_unit = s.kind == "table";
    value.percent = percent;
    value.source = &s;
    value.column = col;
    e.values.push_back(std::move(value));
  };
  if (s.kind == "table") {
    for (const std::string& c : s.columns) {
      for (double v : cell_numbers(c)) {
        add(v, c, false, -1);
        e.years.push_back(v);
      }
    }
    for (const auto& row : s.rows) {
      for (size_t c = 0; c < row.size(); ++c) {
        const std::vector<double> cell = cell_numbers(row[c]);
        for (double v : cell) {
          // Only a cell holding one number joins its column for derived numbers.
          const bool in_column = cell.size() == 1 && c < s.columns.size();
          add(v, c < s.columns.size() ? s.columns[c] : "", false,
              in_column ? static_cast<int64_t>(c) : -1);
          e.years.push_back(v);
        }
        // An ISO date cell ("2009-03-15") holds its year.
        const std::string_view cell_text = text::trim(row[c]);
        if (cell_text.size() >= 7 && all_digits(cell_text.substr(0, 4)) && cell_text[4] == '-') {
          e.years.push_back(std::stoi(std::string(cell_text.substr(0, 4))));
        }
      }
    }
    // The columns for derived numbers, at most 200 values each (the values stay put now).
    e.columns.resize(s.columns.size());
    for (const Value& v : e.values) {
      if (v.column >= 0 && e.columns[static_cast<size_t>(v.column)].size() < 200) {
        e.columns[static_cast<size_t>(v.column)].push_back(&v);
      }
    }
  } else {
    for (const WrittenNumber& n : scan_numbers(s.text)) {
      add(n.value, "", n.percent, -1);
      e.numbers.push_back(n.value);
      e.years.push_back(n.value);
    }
    e.words = text::words(s.text);
  }
  return e;
}

}  // namespace

Evidence::Evidence(const std::vector<Fact>& all_facts,
                   const std::vector<ReportSource>& all_sources) {
  facts.reserve(all_facts.size());
  for (const Fact& f : all_facts) facts.push_back(index_fact(f));
  for (const FactEvidence& e : facts) {
    fact_index.emplace(e.fact, &e);
    for (const Value& v : e.values) {
      for (const std::string& w : text::words(v.unit + " " + e.fact->unit)) {
        if (std::find(unit_words.begin(), unit_words.end(), w) == unit_words.end()) {
          unit_words.push_back(w);
        }
      }
    }
    std::vector<std::string>& known = table_entities[e.fact->table];
    for (const std::string& entity : e.entities) {
      if (std::find(known.begin(), known.end(), entity) == known.end()) known.push_back(entity);
    }
  }
  // A wide table's columns are entities of one fact ("cpi" ranked among the indicators) and
  // the measure of another ("cpi grew by 3.06% a year"): there the measure is the focus.
  for (FactEvidence& e : facts) {
    const Fact& f = *e.fact;
    std::vector<std::string> focus;
    for (const std::string& m : f.measures) {
      for (const std::string& entity : table_entities[f.table]) {
        // "private_service_providing" is the entity "private service providing".
        if (text::words(entity) == text::words(m) && entity != f.entity) {
          focus.push_back(entity);
        }
      }
    }
    if (focus.empty()) continue;
    for (Value& v : e.values) {
      v.focus_measures = focus;
      // A fact about one such measure and no entity: the measure is its entity.
      if (f.entity.empty() && focus.size() == 1 && v.entity.empty() &&
          v.kind != ValueKind::kStatistic) {
        v.entity = focus[0];
      }
    }
  }
  sources.reserve(all_sources.size());
  for (const ReportSource& s : all_sources) sources.push_back(index_source(s));
  for (const SourceEvidence& e : sources) source_index.emplace(e.source, &e);
}

}  // namespace kdr::hka::report
