#include "hka/analysis/fact_text.h"

#include <algorithm>
#include <cmath>
#include <map>

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

std::string plural(const std::string& raw) {
  // "Country Name" -> "countries", "symbol" -> "symbols".
  std::string label;
  for (const std::string& w : text::words(raw)) {
    if (w == "name" || w == "names" || w == "code" || w == "id" || w == "label") continue;
    label += (label.empty() ? "" : " ") + w;
  }
  if (label.empty()) return "entities";
  const std::string l = text::lower(label);
  if (l.ends_with("s")) return label;
  if (l.ends_with("y") && l.size() > 1 &&
      std::string("aeiou").find(l[l.size() - 2]) == std::string::npos)
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
  for (const char* currency : {"$", "\xE2\x82\xAC", "\xC2\xA3"}) {
    const std::string c = currency;
    if (unit != c && !unit.starts_with(c + " ")) continue;
    // "$3.31 per gallon", "-$12", "$1.2 billion"
    const std::string rest = unit.size() > c.size() ? unit.substr(c.size()) : "";
    if (n[0] == '-' || n[0] == '+') return n.substr(0, 1) + c + n.substr(1) + rest;
    return c + n + rest;
  }
  return n + " " + unit;
}

std::string measure_phrase(const std::string& label, const std::string& unit) {
  std::string l(text::trim(label));
  if (!unit.empty()) {
    const std::string tail = "(" + unit + ")";
    if (l.ends_with(tail)) l = std::string(text::trim(l.substr(0, l.size() - tail.size())));
  }
  bool has_upper_inside = false, has_lower = false;
  for (size_t i = 1; i < l.size(); ++i) has_upper_inside |= (l[i] >= 'A' && l[i] <= 'Z');
  for (char c : l) has_lower |= (c >= 'a' && c <= 'z');
  // A header in capitals ("SUNACTIVITY", "NET_GENERATION") reads in lower case; a short
  // acronym ("GDP", "CO2") keeps its capitals.
  if (!has_lower && l.size() > 4 && l.find(' ') == std::string::npos) {
    l = text::lower(l);
    has_upper_inside = false;
  }
  for (char& c : l) {
    if (c == '_') c = ' ';
  }
  if (!has_upper_inside && !l.empty() && l[0] >= 'A' && l[0] <= 'Z')
    l[0] = static_cast<char>(l[0] - 'A' + 'a');
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
    if (pct) {
      s += " (" + format_value(pct->value, "%", true);
      const double ratio = last->value / first->value;
      if (ratio >= 2)
        s += ", " + text::format_number(ratio, 3) + " times its " + f.period_from + " level";
      s += ")";
    }
    return s + ".";
  }
  if (t == "trend") {
    const FactValue* cagr = f.value("cagr_pct");
    const double slope = f.get("slope_per_year");
    // How clear the trend is, in words: the share of the variation the line explains.
    const double r2 = f.get("r2");
    const std::string clarity = f.get("p_value", 1) >= 0.05 ? "no clear"
                                : r2 >= 0.7                 ? "a strong"
                                : r2 >= 0.3                 ? "a moderate"
                                                            : "a weak";
    const std::string way = slope > 0 ? "upward" : "downward";
    std::string s = "From " + f.period_from + " to " + f.period_to + ", " + subject(f) + " shows " +
                    clarity + (clarity == "no clear" ? " trend" : " " + way + " trend") + ":";
    if (cagr) {
      s += std::string(cagr->value >= 0 ? " it grew by " : " it declined by ") +
           format_value(std::fabs(cagr->value), "%") +
           " a year (compound rate); its linear trend is " + format_value(slope, f.unit, true) +
           " per year";
    } else {
      s += " it changed by " + format_value(slope, f.unit, true) + " per year on a linear trend";
    }
    if (const FactValue* decade = f.value("slope_per_decade"))
      s += " (" + format_value(decade->value, f.unit, true) + " per decade)";
    return s + " (R\xC2\xB2 = " + text::format_number(f.get("r2"), 2) +
           ", r = " + text::format_number(f.get("r"), 2) + ", " + p_text(f.get("p_value", 1)) +
           ").";
  }
  if (t == "acceleration") {
    const FactValue* a = f.value("rate_first");
    const FactValue* b = f.value("rate_second");
    const FactValue* middle = f.value("middle");
    if (!a || !b || !middle) return "";
    const std::string mid = middle->period;
    std::string verdict;
    if (a->value >= 0 && b->value > a->value) verdict = "growth accelerated";
    if (a->value >= 0 && b->value < a->value)
      verdict = b->value < 0 ? "growth reversed into decline" : "growth slowed";
    if (a->value < 0 && b->value < a->value) verdict = "the decline deepened";
    if (a->value < 0 && b->value > a->value)
      verdict = b->value > 0 ? "the decline turned into growth" : "the decline eased";
    if (b->value == a->value) verdict = "the pace held steady";
    return cap(subject(f)) + " changed by " + format_value(a->value, a->unit, true) +
           " a year from " + f.period_from + " to " + mid + " and by " +
           format_value(b->value, b->unit, true) + " a year from " + mid + " to " + f.period_to +
           ": " + verdict + ".";
  }
  if (t == "difference") {
    const std::vector<const FactValue*> rates = named(f, "cagr_pct");
    if (rates.size() < 2) return "";
    const FactValue* a = rates[0];
    const FactValue* b = rates[1];
    const bool faster = a->value > b->value;
    return "From " + f.period_from + " to " + f.period_to + ", " + measure(f) + " for " +
           a->entity + " changed by " + format_value(a->value, "%", true) + " a year against " +
           format_value(b->value, "%", true) + " a year for " + b->entity + ": " +
           (faster ? a->entity : b->entity) + " grew faster.";
  }
  if (t == "proportion") {
    const double shift = f.get("shift_pp");
    if (std::fabs(shift) < 1.0) {
      return "The share of " + f.entity + " in total " + measure(f) +
             " stayed roughly stable, at " + value_of(f, "share_first") + " in " + f.period_from +
             " and " + value_of(f, "share_last") + " in " + f.period_to + " (" +
             format_value(shift, "pp", true) + ").";
    }
    return "The share of " + f.entity + " in total " + measure(f) +
           (shift > 0   ? " rose"
            : shift < 0 ? " fell"
                        : " stayed") +
           " from " + value_of(f, "share_first") + " in " + f.period_from + " to " +
           value_of(f, "share_last") + " in " + f.period_to + " (" +
           format_value(shift, "pp", true) + ").";
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
    if (shifts.size() >= 2) {
      std::vector<const FactValue*> sorted = shifts;
      std::stable_sort(sorted.begin(), sorted.end(),
                       [](const FactValue* a, const FactValue* b) { return a->value > b->value; });
      if (sorted.size() > 10) sorted.erase(sorted.begin() + 5, sorted.end() - 5);
      s.pop_back();
      s += "; from " + f.period_from + " to " + f.period_to + ", the shares shifted by ";
      for (size_t i = 0; i < sorted.size(); ++i) {
        s += std::string(i == 0                   ? ""
                         : i + 1 == sorted.size() ? " and "
                                                  : ", ") +
             format_value(sorted[i]->value, "pp", true) + " for " + sorted[i]->entity;
      }
      // Shares that barely moved, in words.
      std::vector<std::string> stable;
      for (const FactValue* v : sorted) {
        if (std::fabs(v->value) < 1.0 && stable.size() < 3) stable.push_back(v->entity);
      }
      if (!stable.empty() && stable.size() < sorted.size()) {
        s += "; the share of ";
        for (size_t i = 0; i < stable.size(); ++i)
          s += (i == 0 ? "" : i + 1 == stable.size() ? " and " : ", ") + stable[i];
        s += stable.size() == 1 ? " stayed roughly stable" : " stayed roughly stable";
      }
      s += ".";
    }
    return s;
  }
  if (t == "rank") {
    if (f.values.empty()) return "";
    const std::string by = f.values.front().name;
    // The entities in the order listed, each with its values.
    std::vector<std::string> order;
    std::map<std::string, std::map<std::string, const FactValue*>> of;
    for (const FactValue& v : f.values) {
      if (v.entity.empty()) continue;
      if (!of.count(v.entity)) order.push_back(v.entity);
      of[v.entity][v.name] = &v;
    }
    const std::string n =
        std::to_string(static_cast<int>(f.get("n", static_cast<double>(order.size()))));
    if (by == "r") {
      std::string s = "Of " + std::to_string(static_cast<int>(f.get("measures"))) + " measures, ";
      for (size_t i = 0; i < order.size(); ++i) {
        const auto& e = of[order[i]];
        const double r = e.at("r")->value;
        std::string stats = "r = " + text::format_number(r, 2);
        if (e.count("rho")) stats += ", \xCF\x81 = " + text::format_number(e.at("rho")->value, 2);
        stats += std::string(", ") +
                 (std::fabs(r) >= 0.7   ? "strong"
                  : std::fabs(r) >= 0.4 ? "moderate"
                                        : "weak") +
                 (r > 0 ? " positive" : " negative");
        if (i == 0) {
          s +=
              order[i] + " is the most strongly correlated with " + measure(f) + " (" + stats + ")";
        } else {
          s += std::string(i == 1                  ? ", then "
                           : i + 1 == order.size() ? " and "
                                                   : ", ") +
               order[i] + " (" + stats + ")";
        }
      }
      return s + ".";
    }
    if (by == "pct_change" || by == "change") {
      // "A (from 6.16 to 1.24 births per woman, -4.91 births per woman or -79.8%)"
      auto item = [&](const std::string& name) {
        const auto& e = of[name];
        std::string inner;
        if (e.count("first") && e.count("last")) {
          inner += "from " + format_value(e.at("first")->value, f.unit) + " to " +
                   format_value(e.at("last")->value, f.unit) + ", ";
        }
        if (e.count("change"))
          inner += format_value(e.at("change")->value, e.at("change")->unit, true);
        if (e.count("pct_change"))
          inner += std::string(e.count("change") ? " or " : "") +
                   format_value(e.at("pct_change")->value, "%", true);
        return name + " (" + inner + ")";
      };
      auto join = [&](const std::vector<std::string>& names) {
        std::string out;
        for (size_t i = 0; i < names.size(); ++i)
          out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + item(names[i]);
        return out;
      };
      std::vector<std::string> rises, falls;
      for (const std::string& name : order)
        (of[name].at(by)->value >= 0 ? rises : falls).push_back(name);
      const bool named = f.value("first") != nullptr;
      const bool window =
          !f.subspace.empty() && f.subspace.front().find("over the fall") != std::string::npos;
      std::string s = "From " + f.period_from + " to " + f.period_to + ", " +
                      (named ? "" : "among " + n + " " + plural(f.entity_label) + ", ") +
                      measure(f);
      if (window) {
        // Listed from the largest loss.
        return s + " fell most in " + join(falls.empty() ? order : falls) + ".";
      }
      if (!falls.empty()) {
        std::vector<std::string> most(falls.rbegin(), falls.rend());
        if (!named && most.size() > 3) most.resize(3);
        s += (named && rises.empty() ? " fell in all " + std::to_string(order.size()) + ", most in "
              : named && most.size() == 1 ? " fell in "
                                          : " fell most in ") +
             join(most);
      }
      if (!rises.empty()) {
        std::vector<std::string> most = rises;
        if (!named && most.size() > 3) most.resize(3);
        s +=
            std::string(falls.empty()
                            ? (named ? " rose in all " + std::to_string(order.size()) + ", most in "
                                     : " rose most in ")
                        : named && most.size() == 1 ? "; it rose in "
                                                    : "; it rose most in ") +
            join(most);
      }
      return s + ".";
    }
    std::vector<const FactValue*> top, bottom;
    for (const FactValue& v : f.values) {
      if (v.entity.empty()) continue;
      (top.size() < 3 ? top : bottom).push_back(&v);
    }
    const std::string where = f.period_from.empty() ? "" : "In " + f.period_from + ", ";
    std::string s =
        (where.empty() ? cap(measure(f)) : where + measure(f)) + " was highest in " + listing(top);
    if (!bottom.empty()) {
      std::vector<const FactValue*> low(bottom.rbegin(), bottom.rend());
      s += " and lowest in " + listing(low);
    }
    return s + ", of " + n + " " + plural(f.entity_label) + ".";
  }
  if (t == "extreme") {
    std::vector<const FactValue*> hi, lo;
    for (const FactValue& v : f.values) {
      if (v.name == "highest" || v.name == "high") hi.push_back(&v);
      if (v.name == "lowest" || v.name == "low") lo.push_back(&v);
    }
    if (hi.empty() || lo.empty()) return "";
    auto periods = [&](const std::vector<const FactValue*>& vs) {
      std::string out;
      for (size_t i = 0; i < vs.size(); ++i) {
        out += (i == 0               ? ""
                : i + 1 == vs.size() ? " and "
                                     : ", ") +
               vs[i]->period + " (" + format_value(vs[i]->value, f.unit) + ")";
      }
      return out;
    };
    return "From " + f.period_from + " to " + f.period_to + ", " + subject(f) + " was highest in " +
           periods(hi) + " and lowest in " + periods(lo) + ".";
  }
  if (t == "drawdown") {
    const FactValue* peak = f.value("peak");
    const FactValue* trough = f.value("trough");
    if (!peak || !trough) return "";
    // The fall first, then its peak and trough: a number right after a period reads as that
    // period's value, so the fall is not written there.
    std::string s = cap(subject(f)) + " fell by " +
                    format_value(std::fabs(f.get("decline")), f.unit) + " (" +
                    format_value(std::fabs(f.get("decline_pct")), "%") + ") from a peak of " +
                    format_value(peak->value, f.unit) + " in " + peak->period + " to " +
                    format_value(trough->value, f.unit) + " in " + trough->period;
    const std::string unit = f.breakdown.empty() ? "periods" : f.breakdown + "s";
    if (const FactValue* rec = f.value("recovered")) {
      s += "; it regained the peak in " + rec->period + ", " +
           std::to_string(static_cast<int>(f.get("periods_to_recover"))) + " " + unit +
           " after the trough and " +
           std::to_string(static_cast<int>(f.get("periods_peak_to_recovery"))) + " " + unit +
           " after the peak";
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
        "Across " + n + " " +
        (f.breakdown.empty() ? std::string("observations") : plural(f.breakdown)) +
        (f.period_from.empty() ? "" : " (" + span(f) + ")") + ", ";
    const std::string a = measure_phrase(f.measures[0], "");
    const std::string b = measure_phrase(f.measures[1], "");
    std::string stats = "Pearson r = " + text::format_number(r, 2);
    if (const FactValue* rho = f.value("rho"))
      stats += ", Spearman \xCF\x81 = " + text::format_number(rho->value, 2);
    stats += ", " + p_text(p);
    if (p >= 0.05) {
      std::string changes;
      if (const FactValue* rc = f.value("r_changes")) {
        changes = "; their changes from one " +
                  (f.breakdown.empty() ? std::string("period") : f.breakdown) +
                  " to the next correlate at r = " + text::format_number(rc->value, 2);
      }
      return across + a + " and " + b + " show no significant correlation (" + stats + ")" +
             changes + ".";
    }
    std::string changes;
    if (const FactValue* rc = f.value("r_changes")) {
      changes = "; their changes from one " +
                (f.breakdown.empty() ? std::string("period") : f.breakdown) +
                " to the next correlate at r = " + text::format_number(rc->value, 2);
    }
    return across + a + " and " + b + " are " + strength(r) +
           (r > 0 ? " positively" : " negatively") + " correlated (" + stats + "): where " + a +
           " is higher, " + b + " tends to be " + (r > 0 ? "higher" : "lower") + changes + ".";
  }
  if (t == "seasonality") {
    const FactValue* peak = f.value("peak");
    const FactValue* trough = f.value("trough");
    if (!peak || !trough) return "";
    // A cycle that explains almost none of the variation is said to be none.
    const std::string weak = f.get("eta2", 1) < 0.05 ? " shows no marked seasonal cycle; it" : "";
    std::string s = "On average from " + f.period_from + " to " + f.period_to + ", " + subject(f) +
                    weak + " is highest in " + peak->period + " (" +
                    format_value(peak->value, f.unit) + ") and lowest in " + trough->period + " (" +
                    format_value(trough->value, f.unit) + "), a seasonal swing of " +
                    format_value(f.get("amplitude"), f.unit);
    std::string means;
    for (const FactValue& v : f.values) {
      if (v.name == "mean")
        means += (means.empty() ? "" : ", ") + v.period + " " + text::format_number(v.value, 3);
    }
    s += std::string("; the ") + (f.breakdown == "quarter" ? "quarterly" : "monthly") +
         " means are " + means;
    if (const FactValue* all = f.value("overall_mean"))
      s += " (overall " + format_value(all->value, f.unit) + ")";
    const FactValue* most = f.value("most_variable");
    const FactValue* least = f.value("least_variable");
    if (most && least) {
      s += "; it varies most from year to year in " + most->period + " (standard deviation " +
           format_value(most->value, f.unit) + ") and least in " + least->period + " (" +
           format_value(least->value, f.unit) + ")";
    }
    return s + ".";
  }
  if (t == "series") {
    std::string s = cap(subject(f)) + (f.subspace.empty() ? "" : ", " + f.subspace.front()) + ": ";
    size_t i = 0, n = 0;
    for (const FactValue& v : f.values) n += v.name == "value";
    const FactValue* hi = nullptr;
    const FactValue* lo = nullptr;
    for (const FactValue& v : f.values) {
      if (v.name != "value") continue;
      s += std::string(i == 0       ? ""
                       : i + 1 == n ? " and "
                                    : ", ") +
           format_value(v.value, f.unit) + " in " + v.period;
      if (!hi || v.value > hi->value) hi = &v;
      if (!lo || v.value < lo->value) lo = &v;
      ++i;
    }
    if (hi && lo && hi != lo)
      s += "; the highest was in " + hi->period + " and the lowest in " + lo->period;
    return s + ".";
  }
  if (t == "periods") {
    const bool compound = f.value("cagr_pct") != nullptr;
    std::vector<std::pair<std::string, std::pair<double, double>>>
        spans;  // label -> (rate, per year)
    for (const FactValue& v : f.values) {
      if (v.name != "per_year") continue;
      double rate = v.value;
      for (const FactValue& c : f.values) {
        if (c.name == "cagr_pct" && c.period == v.period) rate = c.value;
      }
      spans.push_back({v.period, {rate, v.value}});
    }
    if (spans.size() < 2) return "";
    std::string s = cap(subject(f)) + " changed by ";
    for (size_t i = 0; i < spans.size(); ++i) {
      const auto& [label, r] = spans[i];
      std::string ends;
      for (const FactValue& v : f.values) {
        if (v.name == "start" && label.starts_with(v.period))
          ends = format_value(v.value, f.unit) + " in " + v.period;
      }
      for (const FactValue& v : f.values) {
        if (v.name == "end" && label.ends_with(v.period) && !ends.empty())
          ends += " to " + format_value(v.value, f.unit) + " in " + v.period;
      }
      s += std::string(i == 0                  ? ""
                       : i + 1 == spans.size() ? " and "
                                               : ", ") +
           (compound ? format_value(r.first, "%", true) + " a year (" +
                           format_value(r.second, f.unit, true) + " a year)"
                     : format_value(r.second, f.unit, true) + " a year") +
           " from " + label + (ends.empty() ? "" : ", from " + ends);
    }
    auto fastest = std::max_element(spans.begin(), spans.end(), [](const auto& a, const auto& b) {
      return a.second.first < b.second.first;
    });
    auto slowest = std::min_element(spans.begin(), spans.end(), [](const auto& a, const auto& b) {
      return a.second.first < b.second.first;
    });
    const double first = spans.front().second.first, last = spans.back().second.first;
    s += ": " +
         std::string(last > first   ? "the pace rose"
                     : last < first ? "the pace slowed"
                                    : "the pace held") +
         ", fastest from " + fastest->first + " and slowest from " + slowest->first;
    return s + ".";
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
    return f.entity + " stands out in " + measure(f) +
           (f.period_from.empty() ? "" : " in " + f.period_from) + ": " + value_of(f, "value") +
           ", " + text::format_number(std::fabs(z), 2) + " robust standard deviations " +
           (z > 0 ? "above" : "below") + " the median of " + value_of(f, "median") + ".";
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
