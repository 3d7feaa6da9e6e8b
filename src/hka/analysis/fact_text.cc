#include "hka/analysis/fact_text.h"

#include <cmath>

#include "hka/text.h"

namespace kdr::hka::analysis {

namespace {

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

std::string num(double v) { return text::format_number(v, 3); }

std::string value_of(const Fact& f, const std::string& name) {
  const FactValue* v = f.value(name);
  return v ? format_value(v->value, v->unit) : "";
}

std::string measure(const Fact& f) {
  return f.measures.empty() ? std::string("the value") : measure_phrase(f.measures[0], f.unit);
}

// "net generation for Wind", "total net generation", "fertility rate, total for Korea, Rep."
std::string subject(const Fact& f) {
  if (f.entity.empty()) return measure(f);
  return measure(f) + " for " + f.entity;
}

std::string span(const Fact& f) {
  if (f.period_to.empty()) return f.period_from;
  return f.period_from + " to " + f.period_to;
}

// "A (1.2), B (3.4) and C (5.6)"
std::string listing(const std::vector<const FactValue*>& items, bool with_period = false) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i]->entity + " (" + format_value(items[i]->value, items[i]->unit) +
           (with_period && !items[i]->period.empty() ? " in " + items[i]->period : "") + ")";
  }
  return out;
}

std::vector<const FactValue*> named(const Fact& f, const std::string& name) {
  std::vector<const FactValue*> out;
  for (const FactValue& v : f.values) {
    if (v.name == name) out.push_back(&v);
  }
  return out;
}

std::string strength(double r) {
  const double a = std::fabs(r);
  return a >= 0.7 ? "strongly" : a >= 0.4 ? "moderately" : "weakly";
}

std::string plural(const std::string& label) {
  if (label.empty()) return "entities";
  const std::string l = text::lower(label);
  if (l.ends_with("s")) return label;
  if (l.ends_with("y") && l.size() > 1 && std::string("aeiou").find(l[l.size() - 2]) == std::string::npos)
    return label.substr(0, label.size() - 1) + "ies";
  return label + "s";
}

}  // namespace

std::string p_text(double p) {
  if (p < 0.001) return "p < 0.001";
  return "p = " + text::format_number(p, 2);
}

std::string format_value(double value, const std::string& unit, bool sign) {
  const std::string n = sign ? text::format_signed(value, 3) : num(value);
  if (unit.empty()) return n;
  if (unit == "%") return n + "%";
  if (unit == "pp") return n + " percentage points";
  if (unit == "$" || unit == "€" || unit == "£") {
    if (n[0] == '-' || n[0] == '+') return n.substr(0, 1) + unit + n.substr(1);
    return unit + n;
  }
  return n + " " + unit;
}

std::string measure_phrase(const std::string& label, const std::string& unit) {
  std::string l(text::trim(label));
  if (!unit.empty()) {
    const std::string tail = "(" + unit + ")";
    if (l.ends_with(tail)) l = std::string(text::trim(l.substr(0, l.size() - tail.size())));
  }
  bool has_upper_inside = false;
  for (size_t i = 1; i < l.size(); ++i) has_upper_inside |= (l[i] >= 'A' && l[i] <= 'Z');
  for (char& c : l) {
    if (c == '_') c = ' ';
  }
  if (!has_upper_inside && !l.empty() && l[0] >= 'A' && l[0] <= 'Z') l[0] = static_cast<char>(l[0] - 'A' + 'a');
  return l;
}

std::string fact_sentence(const Fact& f) {
  const std::string& t = f.type;
  if (t == "change") {
    const FactValue* first = f.value("first");
    const FactValue* last = f.value("last");
    const FactValue* pct = f.value("pct_change");
    const double d = f.get("change");
    if (!first || !last) return "";
    if (d == 0) {
      return cap(subject(f)) + " was " + format_value(last->value, f.unit) + " in both " +
             f.period_from + " and " + f.period_to + ".";
    }
    std::string s = cap(subject(f)) + (d > 0 ? " rose" : " fell") + " from " +
                    format_value(first->value, f.unit) + " in " + f.period_from + " to " +
                    format_value(last->value, f.unit) + " in " + f.period_to + ", " +
                    (d > 0 ? "an increase" : "a decrease") + " of " +
                    format_value(std::fabs(d), f.unit);
    if (pct) s += " (" + format_value(pct->value, "%", true) + ")";
    return s + ".";
  }
  if (t == "trend") {
    const FactValue* cagr = f.value("cagr_pct");
    const double slope = f.get("slope_per_year");
    std::string s = "From " + f.period_from + " to " + f.period_to + ", " + subject(f);
    if (cagr) {
      s += std::string(cagr->value >= 0 ? " grew by " : " declined by ") +
           format_value(std::fabs(cagr->value), "%") + " a year (compound rate); its linear trend is " +
           format_value(slope, f.unit, true) + " per year";
    } else {
      s += " changed by " + format_value(slope, f.unit, true) + " per year on a linear trend";
    }
    return s + " (R\xC2\xB2 = " + text::format_number(f.get("r2"), 2) + ", " +
           p_text(f.get("p_value", 1)) + ").";
  }
  if (t == "acceleration") {
    const FactValue* a = f.value("rate_first");
    const FactValue* b = f.value("rate_second");
    if (!a || !b) return "";
    const std::string mid = a->period;
    std::string verdict;
    if (a->value >= 0 && b->value > a->value) verdict = "growth accelerated";
    if (a->value >= 0 && b->value < a->value) verdict = b->value < 0 ? "growth reversed into decline" : "growth slowed";
    if (a->value < 0 && b->value < a->value) verdict = "the decline deepened";
    if (a->value < 0 && b->value > a->value) verdict = b->value > 0 ? "the decline turned into growth" : "the decline eased";
    if (b->value == a->value) verdict = "the pace held steady";
    return cap(subject(f)) + " changed by " + format_value(a->value, a->unit, true) + " a year from " +
           f.period_from + " to " + mid + " and by " + format_value(b->value, b->unit, true) +
           " a year from " + mid + " to " + f.period_to + ": " + verdict + ".";
  }
  if (t == "difference") {
    const std::vector<const FactValue*> rates = named(f, "cagr_pct");
    if (rates.size() < 2) return "";
    const FactValue* a = rates[0];
    const FactValue* b = rates[1];
    const bool faster = a->value > b->value;
    return "From " + f.period_from + " to " + f.period_to + ", " + measure(f) + " for " + a->entity +
           " changed by " + format_value(a->value, "%", true) + " a year against " +
           format_value(b->value, "%", true) + " a year for " + b->entity + ": " +
           (faster ? a->entity : b->entity) + " grew faster.";
  }
  if (t == "proportion") {
    const double shift = f.get("shift_pp");
    return "The share of " + f.entity + " in total " + measure(f) +
           (shift > 0 ? " rose" : shift < 0 ? " fell" : " stayed") + " from " +
           value_of(f, "share_first") + " in " + f.period_from + " to " + value_of(f, "share_last") +
           " in " + f.period_to + " (" + format_value(shift, "pp", true) + ").";
  }
  if (t == "mix") {
    std::vector<const FactValue*> last, first, shifts;
    for (const FactValue& v : f.values) {
      if (v.name == "share" && v.period == f.period_to) last.push_back(&v);
      if (v.name == "share" && v.period == f.period_from) first.push_back(&v);
      if (v.name == "shift_pp") shifts.push_back(&v);
    }
    if (last.size() > 3) last.resize(3);
    if (first.size() > 3) first.resize(3);
    std::string s = "In " + f.period_to + ", the largest shares of total " + measure(f) + " were " +
                    listing(last) + "; in " + f.period_from + " they were " + listing(first) + ".";
    if (!shifts.empty()) {
      const FactValue* gain = shifts.front();
      const FactValue* loss = shifts.front();
      for (const FactValue* v : shifts) {
        if (v->value > gain->value) gain = v;
        if (v->value < loss->value) loss = v;
      }
      if (gain->value > 0) {
        s += " From " + f.period_from + " to " + f.period_to + ", " + gain->entity +
             " gained the most share (" + format_value(gain->value, "pp", true) + ")";
        s += loss->value < 0 ? " and " + loss->entity + " lost the most (" +
                                   format_value(loss->value, "pp", true) + ")."
                             : ".";
      }
    }
    return s;
  }
  if (t == "rank") {
    if (f.values.empty()) return "";
    const std::string by = f.values.front().name;
    std::vector<const FactValue*> top, bottom;
    for (const FactValue& v : f.values) {
      if (v.entity.empty()) continue;
      (top.size() < 3 ? top : bottom).push_back(&v);
    }
    const std::string n = std::to_string(static_cast<int>(f.get("n", static_cast<double>(top.size() + bottom.size()))));
    if (by == "r") {
      std::string s = "Of " + std::to_string(static_cast<int>(f.get("measures"))) + " measures, " + top[0]->entity + " is the most strongly correlated with " +
                      measure(f) + " (r = " + text::format_number(top[0]->value, 2) + ")";
      if (top.size() > 1) {
        s += ", then ";
        for (size_t i = 1; i < top.size(); ++i) {
          s += (i > 1 ? (i + 1 == top.size() ? " and " : ", ") : "") + top[i]->entity +
               " (r = " + text::format_number(top[i]->value, 2) + ")";
        }
      }
      return s + ".";
    }
    if (by == "pct_change" || by == "change") {
      std::vector<const FactValue*> all = top;
      all.insert(all.end(), bottom.begin(), bottom.end());
      // Values are ordered from the largest rise to the largest fall.
      std::vector<const FactValue*> rises, falls;
      for (const FactValue* v : all) (v->value >= 0 ? rises : falls).push_back(v);
      std::string s = "From " + f.period_from + " to " + f.period_to + ", among " + n + " " +
                      plural(f.entity_label) + ", " + measure(f);
      if (!falls.empty()) {
        std::vector<const FactValue*> most(falls.rbegin(), falls.rend());
        if (most.size() > 3) most.resize(3);
        s += " fell most in " + listing(most);
      }
      if (!rises.empty()) {
        std::vector<const FactValue*> most = rises;
        if (most.size() > 3) most.resize(3);
        s += std::string(falls.empty() ? "" : ", and") + " rose most in " + listing(most);
      }
      return s + ".";
    }
    const std::string where = f.period_from.empty() ? "" : "In " + f.period_from + ", ";
    std::string s = (where.empty() ? cap(measure(f)) : where + measure(f)) + " was highest in " +
                    listing(top);
    if (!bottom.empty()) {
      std::vector<const FactValue*> low(bottom.rbegin(), bottom.rend());
      s += " and lowest in " + listing(low);
    }
    return s + ", of " + n + " " + plural(f.entity_label) + ".";
  }
  if (t == "extreme") {
    const FactValue* hi = f.value("highest");
    const FactValue* lo = f.value("lowest");
    if (!hi || !lo) return "";
    return "From " + f.period_from + " to " + f.period_to + ", " + subject(f) + " was highest in " +
           hi->period + " (" + format_value(hi->value, f.unit) + ") and lowest in " + lo->period +
           " (" + format_value(lo->value, f.unit) + ").";
  }
  if (t == "drawdown") {
    const FactValue* peak = f.value("peak");
    const FactValue* trough = f.value("trough");
    if (!peak || !trough) return "";
    std::string s = cap(subject(f)) + " fell " + format_value(std::fabs(f.get("decline_pct")), "%") +
                    " from a peak of " + format_value(peak->value, f.unit) + " in " + peak->period +
                    " to " + format_value(trough->value, f.unit) + " in " + trough->period + " (" +
                    format_value(-std::fabs(f.get("decline")), f.unit) + ")";
    if (const FactValue* rec = f.value("recovered")) {
      s += "; it regained the peak in " + rec->period + ", " +
           std::to_string(static_cast<int>(f.get("periods_to_recover"))) + " " +
           (f.breakdown.empty() ? "periods" : f.breakdown + "s") + " after the trough";
    } else {
      s += "; it had not regained the peak by " + f.period_to;
    }
    return s + ".";
  }
  if (t == "association") {
    if (f.measures.size() < 2) return "";
    const double r = f.get("r");
    const double p = f.get("p_value", 1);
    const std::string n = std::to_string(static_cast<int>(f.get("n")));
    const std::string across =
        "Across " + n + " " + (f.breakdown.empty() ? std::string("observations") : plural(f.breakdown)) +
        (f.period_from.empty() ? "" : " (" + span(f) + ")") + ", ";
    const std::string a = measure_phrase(f.measures[0], "");
    const std::string b = measure_phrase(f.measures[1], "");
    std::string stats = "Pearson r = " + text::format_number(r, 2);
    if (const FactValue* rho = f.value("rho")) stats += ", Spearman \xCF\x81 = " + text::format_number(rho->value, 2);
    stats += ", " + p_text(p);
    if (p >= 0.05) {
      return across + a + " and " + b + " show no significant correlation (" + stats + ").";
    }
    return across + a + " and " + b + " are " + strength(r) + (r > 0 ? " positively" : " negatively") +
           " correlated (" + stats + "): where " + a + " is higher, " + b + " tends to be " +
           (r > 0 ? "higher" : "lower") + ".";
  }
  if (t == "seasonality") {
    const FactValue* peak = f.value("peak");
    const FactValue* trough = f.value("trough");
    if (!peak || !trough) return "";
    return "On average from " + f.period_from + " to " + f.period_to + ", " + subject(f) +
           " is highest in " + peak->period + " (" + format_value(peak->value, f.unit) +
           ") and lowest in " + trough->period + " (" + format_value(trough->value, f.unit) +
           "), a seasonal swing of " + format_value(f.get("amplitude"), f.unit) + ".";
  }
  if (t == "distribution") {
    const FactValue* lo = f.value("min");
    const FactValue* hi = f.value("max");
    std::string s = "Across " + std::to_string(static_cast<int>(f.get("n"))) + " " +
                    plural(f.entity_label) + (f.period_from.empty() ? "" : " in " + f.period_from) +
                    ", " + measure(f) + " has a median of " + value_of(f, "median") +
                    " (quartiles " + value_of(f, "q1") + " and " + value_of(f, "q3") + ")";
    if (lo && hi) {
      s += ", from " + format_value(lo->value, f.unit) + " in " + lo->entity + " to " +
           format_value(hi->value, f.unit) + " in " + hi->entity;
    }
    return s + ".";
  }
  if (t == "outlier") {
    const double z = f.get("z");
    return f.entity + " stands out in " + measure(f) + (f.period_from.empty() ? "" : " in " + f.period_from) +
           ": " + value_of(f, "value") + ", " + text::format_number(std::fabs(z), 2) +
           " robust standard deviations " + (z > 0 ? "above" : "below") + " the median of " +
           value_of(f, "median") + ".";
  }
  if (t == "value") {
    std::string s = f.entity + (f.period_from.empty() ? "" : " in " + f.period_from) + " has " +
                    measure(f) + " of " + value_of(f, "value");
    if (f.value("rank")) {
      s += ", ranking " + std::to_string(static_cast<int>(f.get("rank"))) + " of " +
           std::to_string(static_cast<int>(f.get("n"))) + " " + plural(f.entity_label) +
           " from the highest";
    }
    return s + ".";
  }
  return f.text;
}

}  // namespace kdr::hka::analysis
