#include "hka/analysis/fact_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "hka/analysis/fact_text.h"
#include "hka/analysis/series.h"
#include "hka/text.h"

namespace kdr::hka::analysis {

namespace {

using json = nlohmann::json;

// The grain a period label was written at ("2001", "Q2 2001", "March 2001", "5 March 2001").
Grain label_grain(const std::string& label) {
  if (label.empty()) return Grain::kNone;
  if (label[0] == 'Q') return Grain::kQuarter;
  const std::vector<std::string> w = text::words(label);
  if (w.size() == 1) return Grain::kYear;
  if (w.size() == 2) return Grain::kMonth;
  return Grain::kDay;
}

int label_year(const std::string& label) {
  for (const std::string& w : text::words(label)) {
    if (w.size() == 4 &&
        std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::stoi(w);
    }
  }
  return 0;
}

std::optional<size_t> measure_index(const Frame& f, const Fact& fact) {
  if (fact.measures.empty()) return std::nullopt;
  for (size_t m = 0; m < f.measures.size(); ++m) {
    if (f.measures[m].label == fact.measures[0]) return m;
  }
  return std::nullopt;
}

int32_t entity_index(const Frame& f, const std::string& name) {
  for (size_t e = 0; e < f.entities.size(); ++e) {
    if (f.entities[e] == name) return static_cast<int32_t>(e);
  }
  return -1;
}

// x as the chart draws it: years as numbers, finer periods as ISO dates.
json x_value(Grain g, int64_t period) {
  if (g == Grain::kYear) return period;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-01", year_of(g, period), month_of(g, period));
  return std::string(buf);
}

std::string x_type(Grain g) { return g == Grain::kYear ? "quantitative" : "temporal"; }

std::string y_title(const Fact& fact, const std::string& what = "") {
  std::string t =
      what.empty() ? measure_phrase(fact.measures.empty() ? "value" : fact.measures[0], fact.unit)
                   : what;
  if (!t.empty()) t[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(t[0])));
  const std::string unit = what.empty() ? fact.unit : "";
  return unit.empty() ? t : t + " (" + unit + ")";
}

json spec(const std::string& mark, const std::string& title, const json& x, const json& y,
          const std::string& color = "") {
  json s = {{"mark", mark}, {"title", title}, {"encoding", {{"x", x}, {"y", y}}}};
  if (!color.empty()) s["encoding"]["color"] = {{"field", color}};
  return s;
}

std::string cap(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

// Lines of the series of `entities` (-1: the total) between the fact's periods.
std::optional<FactChart> series_chart(const Frame& f, size_t m, const Fact& fact,
                                      const std::vector<int32_t>& entities) {
  const Grain g = label_grain(fact.period_from);
  if (g == Grain::kNone) return std::nullopt;
  const int y0 = label_year(fact.period_from),
            y1 = label_year(fact.period_to.empty() ? fact.period_from : fact.period_to);
  FactChart c;
  c.data.columns = {"period", "series", "value"};
  for (int32_t e : entities) {
    const Series s = series_of(f, m, e, g).between_years(y0, y1);
    const std::string name = e >= 0 ? f.entities[static_cast<size_t>(e)] : "Total";
    for (size_t i = 0; i < s.size(); ++i) {
      c.data.rows.push_back(json::array({x_value(g, s.periods[i]), name, s.values[i]}));
    }
  }
  if (c.data.rows.size() < 2) return std::nullopt;
  const std::string who = entities.size() == 1 && entities[0] >= 0
                              ? " for " + f.entities[static_cast<size_t>(entities[0])]
                              : "";
  c.spec = spec("line",
                cap(measure_phrase(fact.measures[0], fact.unit)) + who + ", " + fact.period_from +
                    " to " + fact.period_to,
                {{"field", "period"}, {"type", x_type(g)}, {"title", cap(grain_name(g))}},
                {{"field", "value"}, {"type", "quantitative"}, {"title", y_title(fact)}},
                entities.size() > 1 ? "series" : "");
  if (entities.size() == 1) c.data.columns[1] = "series";
  return c;
}

}  // namespace

std::optional<FactChart> fact_chart(const Frame& f, const Fact& fact,
                                    const std::vector<const Fact*>& companions) {
  const std::optional<size_t> m = measure_index(f, fact);
  if (!m) return std::nullopt;
  const std::string& t = fact.type;
  if (t == "change" || t == "trend" || t == "acceleration" || t == "extreme" || t == "drawdown" ||
      t == "difference" || t == "series" || t == "periods") {
    std::vector<int32_t> entities;
    auto add = [&](const std::string& name) {
      const int32_t e = name.empty() ? -1 : entity_index(f, name);
      if (!name.empty() && e < 0) return;
      if (std::find(entities.begin(), entities.end(), e) == entities.end() && entities.size() < 8)
        entities.push_back(e);
    };
    if (t == "difference") {
      for (const FactValue& v : fact.values) add(v.entity);
    } else {
      add(fact.entity);
    }
    for (const Fact* other : companions) {
      if (other->table != fact.table || other->measures != fact.measures ||
          other->period_from != fact.period_from)
        continue;
      if (other->type == "change" || other->type == "trend") add(other->entity);
    }
    return series_chart(f, *m, fact, entities);
  }
  if (t == "mix" || t == "proportion") {
    const Grain g = label_grain(fact.period_from);
    if (g == Grain::kNone) return std::nullopt;
    const int y0 = label_year(fact.period_from), y1 = label_year(fact.period_to);
    const std::vector<Series> es = entity_series(f, *m, g);
    std::map<int64_t, double> total;
    for (const Series& s : es) {
      for (size_t i = 0; i < s.size(); ++i) total[s.periods[i]] += s.values[i];
    }
    // The entities with the largest last share, at most eight.
    std::vector<std::pair<double, size_t>> order;
    for (size_t e = 0; e < es.size(); ++e) {
      if (!es[e].empty()) order.push_back({es[e].values.back(), e});
    }
    std::sort(order.begin(), order.end(), std::greater<>());
    if (order.size() > 8) order.resize(8);
    FactChart c;
    c.data.columns = {"period", "series", "share"};
    for (const auto& [last, e] : order) {
      const Series s = es[e].between_years(y0, y1);
      for (size_t i = 0; i < s.size(); ++i) {
        const double tot = total[s.periods[i]];
        if (tot > 0)
          c.data.rows.push_back(
              json::array({x_value(g, s.periods[i]), f.entities[e], 100.0 * s.values[i] / tot}));
      }
    }
    if (c.data.rows.size() < 2) return std::nullopt;
    c.spec = spec("line",
                  "Share of total " + measure_phrase(fact.measures[0], fact.unit) + " by " +
                      (f.entity_label.empty() ? "entity" : f.entity_label) + ", " +
                      fact.period_from + " to " + fact.period_to,
                  {{"field", "period"}, {"type", x_type(g)}, {"title", cap(grain_name(g))}},
                  {{"field", "share"}, {"type", "quantitative"}, {"title", "Share of total (%)"}},
                  "series");
    return c;
  }
  if (t == "rank") {
    FactChart c;
    const std::string by = fact.values.empty() ? "value" : fact.values.front().name;
    c.data.columns = {"name", by};
    for (const FactValue& v : fact.values) {
      if (!v.entity.empty() && v.name == by)
        c.data.rows.push_back(json::array({v.entity, v.value}));
    }
    if (c.data.rows.size() < 2) return std::nullopt;
    const std::string what =
        by == "r"
            ? "Correlation with " + measure_phrase(fact.measures[0], fact.unit) + " (Pearson r)"
        : by == "pct_change" ? "Change, " + fact.period_from + " to " + fact.period_to + " (%)"
        : by == "change"     ? "Change, " + fact.period_from + " to " + fact.period_to +
                               (fact.unit.empty() ? "" : " (" + fact.unit + ")")
                         : y_title(fact);
    const std::string label =
        by == "r" ? "Measure" : cap(fact.entity_label.empty() ? "entity" : fact.entity_label);
    c.spec = spec("bar",
                  cap(what) +
                      (fact.period_from.empty() || by != "value" ? "" : ", " + fact.period_from) +
                      ": highest and lowest",
                  {{"field", "name"}, {"type", "nominal"}, {"title", label}},
                  {{"field", by}, {"type", "quantitative"}, {"title", what}});
    return c;
  }
  if (t == "association" && fact.measures.size() >= 2) {
    size_t b = f.measures.size();
    for (size_t k = 0; k < f.measures.size(); ++k) {
      if (f.measures[k].label == fact.measures[1]) b = k;
    }
    if (b == f.measures.size()) return std::nullopt;
    FactChart c;
    c.data.columns = {"label", "x", "y"};
    if (f.entities.empty()) {
      const Grain g = label_grain(fact.period_from);
      const int y0 = label_year(fact.period_from), y1 = label_year(fact.period_to);
      const Series sa = series_of(f, *m, -1, g).between_years(y0, y1);
      const Series sb = series_of(f, b, -1, g).between_years(y0, y1);
      for (size_t i = 0; i < sa.size(); ++i) {
        const int64_t j = sb.find(sa.periods[i]);
        if (j >= 0)
          c.data.rows.push_back(json::array(
              {period_label(g, sa.periods[i]), sb.values[static_cast<size_t>(j)], sa.values[i]}));
      }
    } else {
      const Grain g = fact.period_from.empty() ? Grain::kNone : label_grain(fact.period_from);
      const std::vector<Series> ea = entity_series(f, *m, g), eb = entity_series(f, b, g);
      for (size_t e = 0; e < ea.size(); ++e) {
        if (ea[e].empty() || eb[e].empty()) continue;
        // The fact's period (or the cross-section's one point).
        const int64_t ia = g == Grain::kNone ? 0 : ea[e].find(ea[e].periods.back());
        int64_t pa = -1, pb = -1;
        for (size_t i = 0; i < ea[e].size(); ++i) {
          if (g == Grain::kNone || period_label(g, ea[e].periods[i]) == fact.period_from)
            pa = static_cast<int64_t>(i);
        }
        for (size_t i = 0; i < eb[e].size(); ++i) {
          if (g == Grain::kNone || period_label(g, eb[e].periods[i]) == fact.period_from)
            pb = static_cast<int64_t>(i);
        }
        (void)ia;
        if (pa < 0 || pb < 0) continue;
        c.data.rows.push_back(json::array({f.entities[e], eb[e].values[static_cast<size_t>(pb)],
                                           ea[e].values[static_cast<size_t>(pa)]}));
      }
    }
    if (c.data.rows.size() < 3) return std::nullopt;
    const std::string xa = cap(measure_phrase(fact.measures[1], ""));
    const std::string ya = cap(measure_phrase(fact.measures[0], ""));
    c.spec = spec("scatter", ya + " against " + text::lower(xa.substr(0, 1)) + xa.substr(1),
                  {{"field", "x"}, {"type", "quantitative"}, {"title", xa}},
                  {{"field", "y"}, {"type", "quantitative"}, {"title", ya}});
    return c;
  }
  if (t == "seasonality") {
    FactChart c;
    c.data.columns = {"month", "mean"};
    for (const FactValue& v : fact.values) {
      if (v.name == "mean")
        c.data.rows.push_back(json::array({v.period.substr(0, 3), v.value}));  // "Jan", "Q1"
    }
    if (c.data.rows.size() < 3) return std::nullopt;
    c.spec =
        spec("bar",
             "Mean " + measure_phrase(fact.measures[0], fact.unit) + " by " + fact.breakdown +
                 ", " + fact.period_from + " to " + fact.period_to,
             {{"field", "month"}, {"type", "ordinal"}, {"title", "Month"}},
             {{"field", "mean"}, {"type", "quantitative"}, {"title", "Mean " + y_title(fact)}});
    return c;
  }
  return std::nullopt;
}

std::vector<std::vector<std::string>> fact_rows(const Fact& fact) {
  std::vector<std::vector<std::string>> rows;
  const std::string measure =
      measure_phrase(fact.measures.empty() ? "value" : fact.measures[0], fact.unit);
  const std::string span =
      fact.period_to.empty() ? fact.period_from : fact.period_from + " to " + fact.period_to;
  auto row = [&](const std::string& entity, const std::string& period, const std::string& what,
                 double v, const std::string& unit, bool sign = false) {
    rows.push_back({entity.empty() ? "all" : entity, period, what, format_value(v, unit, sign)});
  };
  const std::string& t = fact.type;
  if (t == "change") {
    for (const FactValue& v : fact.values) {
      if (v.name == "first" || v.name == "last")
        row(fact.entity, v.period, measure, v.value, v.unit);
    }
    if (const FactValue* p = fact.value("pct_change"))
      row(fact.entity, span, "change in " + measure, p->value, "%", true);
    else if (const FactValue* d = fact.value("change"))
      row(fact.entity, span, "change in " + measure, d->value, d->unit, true);
  } else if (t == "trend") {
    if (const FactValue* g = fact.value("cagr_pct"))
      row(fact.entity, span, "compound growth per year", g->value, "%", true);
    if (const FactValue* s = fact.value("slope_per_year"))
      row(fact.entity, span, "linear trend per year", s->value, s->unit, true);
  } else if (t == "acceleration") {
    const FactValue* a = fact.value("rate_first");
    const FactValue* b = fact.value("rate_second");
    if (a && b) {
      row(fact.entity, a->period, "growth per year", a->value, "%", true);
      row(fact.entity, b->period, "growth per year", b->value, "%", true);
    }
  } else if (t == "difference") {
    for (const FactValue& v : fact.values) {
      if (v.name == "cagr_pct") row(v.entity, span, "growth per year", v.value, "%", true);
    }
  } else if (t == "proportion") {
    if (const FactValue* a = fact.value("share_first"))
      row(fact.entity, a->period, "share of total", a->value, "%");
    if (const FactValue* b = fact.value("share_last"))
      row(fact.entity, b->period, "share of total", b->value, "%");
    if (const FactValue* s = fact.value("shift_pp"))
      row(fact.entity, span, "shift in share", s->value, "pp", true);
  } else if (t == "mix") {
    for (const FactValue& v : fact.values) {
      if (v.name == "share" && rows.size() < 16)
        row(v.entity, v.period, "share of total " + measure, v.value, "%");
    }
  } else if (t == "rank") {
    for (const FactValue& v : fact.values) {
      if (v.entity.empty()) continue;
      const std::string what = v.name == "r" ? "correlation with " + measure
                               : v.name == "pct_change" || v.name == "change"
                                   ? "change in " + measure
                                   : measure;
      const bool is_change = v.name == "pct_change" || v.name == "change";
      const std::string what2 = v.name == "first" || v.name == "last" ? measure
                                : v.name == "rho" ? "Spearman rho with " + measure
                                                  : what;
      row(v.entity,
          v.name == "r" || v.name == "rho" ? fact.period_from
                                           : (v.period.empty() ? span : v.period),
          what2, v.value, v.unit, is_change);
    }
  } else if (t == "extreme" || t == "drawdown") {
    for (const FactValue& v : fact.values) {
      if (v.name == "highest" || v.name == "lowest" || v.name == "peak" || v.name == "trough" ||
          v.name == "recovered") {
        row(fact.entity, v.period, v.name + " " + measure, v.value, v.unit);
      }
    }
  } else if (t == "seasonality") {
    for (const FactValue& v : fact.values) {
      if (v.name == "mean")
        row(fact.entity, v.period + ", " + span, "mean " + measure, v.value, v.unit);
    }
  } else if (t == "series") {
    for (const FactValue& v : fact.values) {
      if (v.name == "value") row(fact.entity, v.period, measure, v.value, v.unit);
    }
  } else if (t == "periods") {
    for (const FactValue& v : fact.values) {
      if (v.name == "cagr_pct") row(fact.entity, v.period, "growth per year", v.value, "%", true);
      if (v.name == "per_year")
        row(fact.entity, v.period, "change per year", v.value, v.unit, true);
    }
  } else if (t == "association") {
    const std::string pair =
        fact.measures.size() >= 2
            ? measure_phrase(fact.measures[0], "") + " vs " + measure_phrase(fact.measures[1], "")
            : measure;
    if (const FactValue* r = fact.value("r"))
      rows.push_back({pair, span.empty() ? "all" : span,
                      "Pearson r (n = " + std::to_string(static_cast<int>(fact.get("n"))) + ")",
                      text::format_number(r->value, 2)});
  } else if (t == "value" || t == "outlier") {
    if (const FactValue* v = fact.value("value"))
      row(fact.entity, v->period, measure, v->value, v->unit);
  } else if (t == "distribution") {
    if (const FactValue* v = fact.value("median"))
      row("", v->period, "median " + measure, v->value, v->unit);
  }
  return rows;
}

}  // namespace kdr::hka::analysis
