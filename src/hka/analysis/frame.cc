// Column roles, wide-layout detection and the long SQL of a Frame (frame.h).
#include "hka/analysis/frame.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>

#include "hka/calendar.h"
#include "hka/text.h"

namespace kdr::hka::analysis {

namespace {

using json = nlohmann::json;

constexpr std::array<const char*, 12> kMonthNames = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

std::string quote_id(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

bool is_number(const json& cell) { return cell.is_number(); }

double to_double(const json& cell) {
  if (cell.is_number()) return cell.get<double>();
  return std::nan("");
}

std::string cell_string(const json& cell) {
  if (cell.is_null()) return "";
  if (cell.is_string()) return cell.get<std::string>();
  return text::format_cell(cell);
}

// A header that names a year: "1960", "YR1960", "1960 [YR1960]", "X1960", "y1960".
std::optional<int> header_year(const std::string& header) {
  std::string h(text::trim(header));
  if (const size_t bracket = h.find(" ["); bracket != std::string::npos) h = h.substr(0, bracket);
  size_t i = 0;
  while (i < h.size() && i < 2 && std::isalpha(static_cast<unsigned char>(h[i]))) ++i;
  if (h.size() - i != 4) return std::nullopt;
  int year = 0;
  for (size_t k = i; k < h.size(); ++k) {
    if (!std::isdigit(static_cast<unsigned char>(h[k]))) return std::nullopt;
    year = year * 10 + (h[k] - '0');
  }
  if (year < 1000 || year > 2200) return std::nullopt;
  return year;
}

bool name_has(const std::string& lower, std::initializer_list<const char*> words) {
  for (const char* w : words) {
    if (text::has_word(lower, w)) return true;
  }
  return false;
}

bool year_like_name(const std::string& header) {
  const std::string h = text::lower(header);
  return name_has(h, {"year", "yr", "years", "yyyy", "fy", "jahr", "annee", "ano", "anio"}) ||
         h.find("year") != std::string::npos;
}

// A text cell naming a month of a year: "2001-03", "2001/03", "2001M03", "Mar 2001",
// "March 2001"; or a quarter: "2001Q1", "2001-Q1", "Q1 2001". Returns {year, month, grain}.
struct TextPeriod {
  int year = 0;
  int month = 0;
  Grain grain = Grain::kNone;
  int format = 0;  // 1: yyyy?mm, 2: Mon yyyy, 3: yyyy?Qn, 4: Qn yyyy
};

std::optional<TextPeriod> parse_text_period(std::string_view raw) {
  const std::string s(text::trim(raw));
  auto digits = [&](size_t from, size_t n) -> int {
    if (from + n > s.size()) return -1;
    int v = 0;
    for (size_t k = from; k < from + n; ++k) {
      if (!std::isdigit(static_cast<unsigned char>(s[k]))) return -1;
      v = v * 10 + (s[k] - '0');
    }
    return v;
  };
  TextPeriod p;
  // Date and time: "2010/01/01 00:00", "2010-01-01T00:00:00", "2010-01-01 13:45:00".
  if (s.size() >= 16 && s.size() <= 25 && digits(0, 4) >= 1000 && (s[4] == '-' || s[4] == '/') &&
      s[7] == s[4] && (s[10] == ' ' || s[10] == 'T') && digits(5, 2) >= 1 && digits(5, 2) <= 12 &&
      digits(8, 2) >= 1 && digits(8, 2) <= 31 && digits(11, 2) >= 0 && s[13] == ':') {
    p.year = digits(0, 4);
    p.month = digits(5, 2);
    p.grain = Grain::kDay;
    p.format = 5;
    return p;
  }
  if (s.size() >= 6 && s.size() <= 8 && digits(0, 4) >= 1000) {
    p.year = digits(0, 4);
    const std::string rest = s.substr(4);
    // yyyy-mm, yyyy/mm, yyyyMmm
    if ((rest.size() == 3 && (rest[0] == '-' || rest[0] == '/' || rest[0] == '.' ||
                              rest[0] == 'M' || rest[0] == 'm')) &&
        digits(5, 2) >= 1 && digits(5, 2) <= 12) {
      p.month = digits(5, 2);
      p.grain = Grain::kMonth;
      p.format = 1;
      return p;
    }
    // yyyyQn, yyyy-Qn, yyyy Qn
    std::string q = rest;
    if (!q.empty() && (q[0] == '-' || q[0] == ' ')) q = q.substr(1);
    if (q.size() == 2 && (q[0] == 'Q' || q[0] == 'q') && q[1] >= '1' && q[1] <= '4') {
      p.month = (q[1] - '0') * 3 - 2;
      p.grain = Grain::kQuarter;
      p.format = 3;
      return p;
    }
    return std::nullopt;
  }
  const size_t space = s.find(' ');
  if (space == std::string::npos || s.size() - space - 1 != 4) return std::nullopt;
  const int year = digits(space + 1, 4);
  if (year < 1000) return std::nullopt;
  const std::string word = s.substr(0, space);
  if (word.size() == 2 && (word[0] == 'Q' || word[0] == 'q') && word[1] >= '1' && word[1] <= '4') {
    p.year = year;
    p.month = (word[1] - '0') * 3 - 2;
    p.grain = Grain::kQuarter;
    p.format = 4;
    return p;
  }
  const int month = text::month_from_name(word);
  if (month == 0) return std::nullopt;
  p.year = year;
  p.month = month;
  p.grain = Grain::kMonth;
  p.format = 2;
  return p;
}

// The SQL of a month number from a month-name column: CASE lower(substr(c, 1, 3)) ...
std::string month_name_sql(const std::string& expr) {
  std::string sql = "CASE lower(substr(" + expr + ", 1, 3))";
  for (int m = 0; m < 12; ++m) {
    sql += " WHEN '" + text::lower(std::string(kMonthNames[m]).substr(0, 3)) + "' THEN " +
           std::to_string(m + 1);
  }
  return sql + " END";
}

// Measures whose values add up over time (flows) or across entities (extensive amounts).
struct Additivity {
  bool extensive = true;
  bool flow = false;
};

Additivity additivity(const std::string& label, const std::string& unit,
                      const std::vector<double>& values) {
  const std::string l = text::lower(label + " " + unit);
  Additivity a;
  for (const char* w :
       {"rate",        "ratio",         "percent",     "pct",          "share",     "per",
        "average",     "avg",           "mean",        "median",       "price",     "prices",
        "index",       "temp",          "temperature", "density",      "capita",    "age",
        "score",       "yield",         "expectancy",  "expect",       "fertility", "growth",
        "margin",      "interest",      "inflation",   "speed",        "wind",      "humidity",
        "pressure",    "concentration", "ppm",         "level",        "gdp per",   "proportion",
        "probability", "fraction",      "latitude",    "longitude",    "lat",       "lon",
        "elevation",   "height",        "weight",      "length",       "duration",  "anomaly",
        "sst",         "usd per",       "cost",        "wage",         "wages",     "salary",
        "hours",       "mpg",           "efficiency",  "unemployment", "poverty",   "literacy",
        "mortality",   "life",          "years",       "rank",         "rating"}) {
    if (text::has_word(l, w)) a.extensive = false;
  }
  if (unit == "%" || l.find('%') != std::string::npos || l.find("/") != std::string::npos) {
    a.extensive = false;
  }
  for (double v : values) {
    if (v < 0) a.extensive = false;
  }
  for (const char* w :
       {"generation", "production",  "produced",  "precipitation", "rain",        "rainfall",
        "snow",       "snowfall",    "sales",     "revenue",       "revenues",    "exports",
        "imports",    "consumption", "emissions", "births",        "deaths",      "cases",
        "visitors",   "passengers",  "flights",   "spending",      "expenditure", "expenditures",
        "investment", "output",      "shipments", "arrivals",      "crimes",      "accidents",
        "incidents",  "volume",      "sold",      "trips",         "discharge",   "flow",
        "downloads",  "orders",      "profit",    "profits",       "income",      "earnings"}) {
    if (text::has_word(l, w)) a.flow = a.extensive || text::has_word(l, "precipitation");
  }
  if (text::has_word(l, "precipitation") || text::has_word(l, "rainfall")) a.flow = true;
  return a;
}

// "Fertility rate, total (births per woman)" -> "births per woman".
std::string unit_in_parentheses(const std::string& label) {
  const size_t open = label.rfind('(');
  const size_t close = label.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open + 2) return "";
  return std::string(text::trim(label.substr(open + 1, close - open - 1)));
}

// Unit words as people abbreviate them.
std::string normalize_unit(std::string u) {
  u = std::string(text::trim(u));
  const std::string l = text::lower(u);
  static const std::vector<std::pair<std::string, std::string>> kMap = {{"percent", "%"},
                                                                        {"percentage", "%"},
                                                                        {"per cent", "%"},
                                                                        {"degrees celsius",
                                                                         "\xC2\xB0"
                                                                         "C"},
                                                                        {"degrees c",
                                                                         "\xC2\xB0"
                                                                         "C"},
                                                                        {"degree celsius",
                                                                         "\xC2\xB0"
                                                                         "C"},
                                                                        {"celsius",
                                                                         "\xC2\xB0"
                                                                         "C"},
                                                                        {"degrees fahrenheit",
                                                                         "\xC2\xB0"
                                                                         "F"},
                                                                        {"degrees f",
                                                                         "\xC2\xB0"
                                                                         "F"},
                                                                        {"megawatthours", "MWh"},
                                                                        {"megawatt hours", "MWh"},
                                                                        {"megawatt-hours", "MWh"},
                                                                        {"gigawatthours", "GWh"},
                                                                        {"gigawatt hours", "GWh"},
                                                                        {"kilowatthours", "kWh"},
                                                                        {"dollars", "$"},
                                                                        {"us dollars", "$"},
                                                                        {"usd", "$"}};
  for (const auto& [from, to] : kMap) {
    if (l == from) return to;
  }
  // "thousands of jobs" -> "thousand jobs"; "thousand megawatthours" -> "thousand MWh".
  for (const char* scale : {"thousand", "million", "billion", "trillion"}) {
    const std::string sc = scale;
    for (const std::string& prefix : {sc + "s of ", sc + " of ", sc + "s ", sc + " "}) {
      if (l.starts_with(prefix)) {
        const std::string rest = normalize_unit(u.substr(prefix.size()));
        return rest == "$" ? "$ " + sc : sc + " " + rest;
      }
    }
  }
  for (const auto& [from, to] : kMap) {
    if (l.starts_with(from + " ") && to != "%") return to + u.substr(from.size());
  }
  return u;
}

bool unit_like(const std::string& lowered) {
  static const std::vector<std::string> kWords = {
      "percent", "%",        "degree",     "celsius",    "fahrenheit", "dollar", "usd",
      "euro",    "thousand", "million",    "billion",    "tonne",      "ton",    "kg",
      "mm",      "cm",       "km",         "m/s",        "mph",        "ppm",    "ppmv",
      "ppb",     "mwh",      "gwh",        "kwh",        "megawatt",   "gallon", "liter",
      "litre",   "barrel",   "hectare",    "acre",       "per ",       "index",  "births",
      "people",  "persons",  "jobs",       "hours",      "days",       "years",  "inches",
      "feet",    "miles",    "kilometres", "kilometers", "metres",     "meters"};
  for (const std::string& w : kWords) {
    if (lowered.find(w) != std::string::npos) return true;
  }
  return false;
}

// Words naming the same thing: equal, or one a prefix (4+ letters) of the other.
bool related_word(const std::string& a, const std::string& b) {
  if (a.size() < 3 || b.size() < 3) return false;
  if (a == b) return true;
  const std::string& s = a.size() < b.size() ? a : b;
  const std::string& l = a.size() < b.size() ? b : a;
  return s.size() >= 4 && l.starts_with(s);
}

// What a table's description says of each measure: "header: note;" glossaries, and units in
// parentheses after words of the header ("maximum temperature (degrees C)").
void describe_measures(std::vector<Measure>& measures, const std::string& description) {
  if (description.empty()) return;
  const std::string d = text::lower(description);
  for (Measure& m : measures) {
    if (m.column.empty()) continue;
    const std::string key = text::lower(m.label);
    // "hs_grad: percent of ...;" or "hs_grad (percent ...)"
    for (size_t at = d.find(key); at != std::string::npos; at = d.find(key, at + 1)) {
      const bool left = at == 0 || !std::isalnum(static_cast<unsigned char>(d[at - 1]));
      size_t after = at + key.size();
      if (!left || after >= d.size() || (d[after] != ':' && d[after] != '=')) continue;
      // "a, b, c: x, y, z" is a list glossary, read below.
      if (at >= 2 && d[at - 2] == ',' && d[at - 1] == ' ') continue;
      ++after;
      size_t end = after;
      while (end < d.size() && d[end] != ';' &&
             !(d[end] == '.' && (end + 1 == d.size() || d[end + 1] == ' '))) {
        ++end;
      }
      m.note = std::string(text::trim(description.substr(after, end - after)));
      break;
    }
    if (m.unit.empty() && !m.note.empty()) m.unit = unit_from_text(m.note);
  }
  // Without a glossary, the words around the measure's name in the description ("Annual miles
  // driven per capita"): what the question may call it.
  const std::vector<std::string> dwords = text::words(description);
  for (Measure& m : measures) {
    // Only for tables of a few measures: in a long list the words around one name are others'.
    if (m.column.empty() || !m.note.empty() || measures.size() > 4) continue;
    const std::vector<std::string> lw = text::words(m.label);
    if (lw.size() != 1 || lw[0].size() < 3) continue;
    for (size_t i = 0; i < dwords.size(); ++i) {
      if (dwords[i] != lw[0]) continue;
      std::string around;
      for (size_t k = i >= 3 ? i - 3 : 0; k < dwords.size() && k <= i + 3; ++k)
        around += (around.empty() ? "" : " ") + dwords[k];
      m.context = around;
      break;
    }
  }
  // A list glossary: "realgdp, realcons, realinv: real GDP, personal consumption, investment".
  size_t clause_start = 0;
  while (clause_start < description.size()) {
    size_t clause_end = description.find(';', clause_start);
    if (clause_end == std::string::npos) clause_end = description.size();
    const std::string clause = description.substr(clause_start, clause_end - clause_start);
    clause_start = clause_end + 1;
    const size_t colon = clause.find(':');
    if (colon == std::string::npos) continue;
    auto split = [](const std::string& list) {
      std::vector<std::string> out;
      size_t start = 0;
      while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        std::string item(text::trim(list.substr(start, comma - start)));
        if (item.starts_with("and ")) item = item.substr(4);
        if (!item.empty()) out.push_back(item);
        start = comma + 1;
      }
      return out;
    };
    auto measure_named = [&](const std::string& n) -> Measure* {
      for (Measure& m : measures) {
        if (!m.column.empty() && text::lower(m.label) == text::lower(n)) return &m;
      }
      return nullptr;
    };
    // The names: the run of measure names just before the colon ("... (year, quarter).
    // realgdp, realcons, realinv").
    const std::vector<std::string> left = split(clause.substr(0, colon));
    std::vector<Measure*> ms;
    for (size_t k = left.size(); k-- > 0;) {
      const std::vector<std::string> ws = text::words(left[k]);
      Measure* m = measure_named(left[k]);
      if (!m && !ws.empty() && k + 1 < left.size() + 1) {
        const size_t sp = left[k].find_last_of(" .");
        if (sp != std::string::npos) m = measure_named(left[k].substr(sp + 1));
        if (m) {
          ms.insert(ms.begin(), m);
          break;  // a name glued to the text before it ends the run
        }
      }
      if (!m) break;
      ms.insert(ms.begin(), m);
    }
    if (ms.size() < 2) continue;
    std::vector<std::string> notes = split(clause.substr(colon + 1));
    if (notes.size() < ms.size()) continue;
    // A trailing shared part ("in billions of chained 2005 dollars") is cut into the last item.
    for (size_t i = 0; i < ms.size(); ++i) ms[i]->note = notes[i];
    if (ms.back()->unit.empty()) {
      const std::string tail = clause.substr(colon + 1);
      const std::string unit = unit_from_text(
          tail.substr(tail.find(notes[ms.size() - 1]) + notes[ms.size() - 1].size()));
      for (Measure* m : ms) {
        if (m->unit.empty()) m->unit = unit;
      }
    }
  }
  // Units in parentheses after a word of the measure's name.
  const std::vector<std::string> dwords_all = text::words(description);
  for (size_t open = d.find('('); open != std::string::npos; open = d.find('(', open + 1)) {
    const size_t close = d.find(')', open);
    if (close == std::string::npos) break;
    std::string inside = description.substr(open + 1, close - open - 1);
    if (const size_t comma = inside.find(','); comma != std::string::npos)
      inside = inside.substr(0, comma);
    if (!unit_like(text::lower(inside)) || inside.size() > 40) continue;
    const std::vector<std::string> before =
        text::words(d.substr(open > 40 ? open - 40 : 0, std::min<size_t>(open, 40)));
    for (Measure& m : measures) {
      if (!m.unit.empty() || m.column.empty()) continue;
      bool hit = false;
      for (const std::string& w : text::words(m.label)) {
        for (size_t k = before.size() > 3 ? before.size() - 3 : 0; k < before.size(); ++k) {
          hit = hit || related_word(w, before[k]);
        }
      }
      if (hit) m.unit = normalize_unit(inside);
    }
  }
  // One unit for the table: "in thousand megawatthours", "in thousands of jobs".
  std::string table_unit;
  for (size_t at = d.find("in "); at != std::string::npos; at = d.find("in ", at + 1)) {
    if (at > 0 && std::isalnum(static_cast<unsigned char>(d[at - 1]))) continue;
    size_t end = at + 3;
    while (end < d.size() && d[end] != ',' && d[end] != '.' && d[end] != ';' && d[end] != '(' &&
           d[end] != ')')
      ++end;
    const std::string phrase = std::string(text::trim(description.substr(at + 3, end - at - 3)));
    const std::string lp = text::lower(phrase);
    if (phrase.empty() || phrase.size() > 40 || text::words(phrase).size() > 5) continue;
    static const std::vector<std::string> kLeads = {
        "thousand",   "million", "billion",  "degrees",   "percent",  "dollars",
        "us dollars", "tonnes",  "tons",     "parts per", "megawatt", "gigawatt",
        "kilowatt",   "mm",      "millimet", "inches",    "kilogram", "metric"};
    if (std::any_of(kLeads.begin(), kLeads.end(),
                    [&](const std::string& w) { return lp.starts_with(w); })) {
      table_unit = lp.starts_with("parts per million") ? "ppm" : normalize_unit(phrase);
      break;
    }
  }
  if (!table_unit.empty()) {
    for (Measure& m : measures) {
      if (m.unit.empty()) m.unit = table_unit;
    }
  }
}

struct ColumnStats {
  size_t present = 0;
  size_t numbers = 0;
  std::set<std::string> distinct;  // text of present cells (capped)
  bool distinct_capped = false;
  double min = 0, max = 0;
  bool integral = true;
  double text_length = 0;  // mean length of text cells
};

}  // namespace

const char* grain_name(Grain grain) {
  switch (grain) {
    case Grain::kYear:
      return "year";
    case Grain::kQuarter:
      return "quarter";
    case Grain::kMonth:
      return "month";
    case Grain::kDay:
      return "day";
    case Grain::kNone:
      break;
  }
  return "none";
}

const char* role_name(Role role) {
  switch (role) {
    case Role::kTime:
      return "time";
    case Role::kEntity:
      return "entity";
    case Role::kMeasure:
      return "measure";
    case Role::kIdentifier:
      return "identifier";
    case Role::kOther:
      break;
  }
  return "other";
}

const char* month_name(int month) {
  return month >= 1 && month <= 12 ? kMonthNames[static_cast<size_t>(month - 1)] : "";
}

int year_of(Grain grain, int64_t period) {
  switch (grain) {
    case Grain::kYear:
      return static_cast<int>(period);
    case Grain::kQuarter:
      return static_cast<int>(floor_div(period, 4));
    case Grain::kMonth:
      return static_cast<int>(floor_div(period, 12));
    case Grain::kDay:
      return static_cast<int>(calendar::civil_from_days(period).y);
    case Grain::kNone:
      break;
  }
  return 0;
}

int month_of(Grain grain, int64_t period) {
  switch (grain) {
    case Grain::kQuarter:
      return static_cast<int>(period - 4 * floor_div(period, 4)) * 3 + 1;
    case Grain::kMonth:
      return static_cast<int>(period - 12 * floor_div(period, 12)) + 1;
    case Grain::kDay:
      return calendar::civil_from_days(period).m;
    default:
      break;
  }
  return 0;
}

int64_t coarsen(Grain from, Grain to, int64_t period) {
  if (from == to) return period;
  const int y = year_of(from, period);
  const int m = month_of(from, period);
  switch (to) {
    case Grain::kYear:
      return y;
    case Grain::kQuarter:
      return int64_t{y} * 4 + (m - 1) / 3;
    case Grain::kMonth:
      return int64_t{y} * 12 + m - 1;
    default:
      break;
  }
  return period;
}

double period_year(Grain grain, int64_t period) {
  switch (grain) {
    case Grain::kYear:
      return static_cast<double>(period);
    case Grain::kQuarter:
      return static_cast<double>(period) / 4.0;
    case Grain::kMonth:
      return static_cast<double>(period) / 12.0;
    case Grain::kDay:
      return 1970.0 + static_cast<double>(period) / 365.2425;
    case Grain::kNone:
      break;
  }
  return 0.0;
}

std::string period_label(Grain grain, int64_t period) {
  const int y = year_of(grain, period);
  switch (grain) {
    case Grain::kYear:
      return std::to_string(y);
    case Grain::kQuarter:
      return "Q" + std::to_string((month_of(grain, period) - 1) / 3 + 1) + " " + std::to_string(y);
    case Grain::kMonth:
      return std::string(month_name(month_of(grain, period))) + " " + std::to_string(y);
    case Grain::kDay: {
      const calendar::CivilDate cd = calendar::civil_from_days(period);
      return std::to_string(cd.d) + " " + month_name(cd.m) + " " + std::to_string(cd.y);
    }
    case Grain::kNone:
      break;
  }
  return "";
}

std::string unit_from_text(const std::string& raw) {
  const std::string l = text::lower(raw);
  if (l.starts_with("percent") || l.starts_with("percentage") || l.find("(%)") != std::string::npos)
    return "%";
  // "3-month Treasury bill rate, percent": a closing "percent" is the unit too.
  if (text::has_word(l, "percent") && l.find("per ") == std::string::npos) return "%";
  if (const size_t per = l.find("per "); per != std::string::npos) {
    // "per 100,000 population", "births per woman", "dollars per gallon"
    size_t start = per;
    if (per > 0) {
      const size_t prev = l.rfind(' ', per - 2);
      const std::string word = l.substr(prev == std::string::npos ? 0 : prev + 1,
                                        per - 1 - (prev == std::string::npos ? 0 : prev + 1));
      if (unit_like(word)) start = prev == std::string::npos ? 0 : prev + 1;
    }
    size_t end = l.find_first_of(",;(.", per);
    if (end == std::string::npos) end = l.size();
    // "per 100,000": the comma inside a number does not end the unit.
    while (end < l.size() && l[end] == ',' && end + 1 < l.size() &&
           std::isdigit(static_cast<unsigned char>(l[end + 1]))) {
      end = l.find_first_of(",;(.", end + 1);
      if (end == std::string::npos) end = l.size();
    }
    const std::string phrase = std::string(text::trim(raw.substr(start, end - start)));
    if (text::words(phrase).size() <= 5) return normalize_unit(phrase);
  }
  if (const size_t open = l.find('('); open != std::string::npos) {
    const size_t close = l.find(')', open);
    if (close != std::string::npos && unit_like(l.substr(open + 1, close - open - 1)) &&
        close - open < 40) {
      return normalize_unit(raw.substr(open + 1, close - open - 1));
    }
  }
  return "";
}

std::string period_sql(Grain grain) {
  switch (grain) {
    case Grain::kYear:
      return "year";
    case Grain::kQuarter:
      return "(year * 4 + (month - 1) / 3)";
    case Grain::kMonth:
      return "(year * 12 + month - 1)";
    case Grain::kDay:
      return "CAST(julianday(period_date) - 2440587.5 AS INTEGER)";
    case Grain::kNone:
      break;
  }
  return "0";
}

namespace {

struct Profile {
  std::vector<ColumnStats> stats;
  std::vector<ColumnRole> roles;
};

QueryResult read_table(const std::filesystem::path& db_path, const TableInfo& info,
                       size_t max_rows) {
  Limits limits;
  limits.max_rows = max_rows;
  limits.max_ms = 20000;
  limits.max_result_bytes = std::max<size_t>(limits.max_result_bytes, size_t{256} << 20);
  std::string cols;
  for (const ColumnInfo& c : info.columns) cols += (cols.empty() ? "" : ", ") + quote_id(c.name);
  return run_readonly(db_path, "SELECT " + cols + " FROM " + quote_id(info.name), limits);
}

ColumnStats column_stats(const QueryResult& data, size_t c) {
  ColumnStats s;
  double length = 0;
  size_t texts = 0;
  for (const json& row : data.rows) {
    const json& cell = row.at(c);
    if (cell.is_null()) continue;
    ++s.present;
    if (cell.is_number()) {
      const double v = cell.get<double>();
      if (s.numbers == 0) s.min = s.max = v;
      s.min = std::min(s.min, v);
      s.max = std::max(s.max, v);
      s.integral = s.integral && std::floor(v) == v;
      ++s.numbers;
    } else if (cell.is_string()) {
      length += static_cast<double>(cell.get_ref<const std::string&>().size());
      ++texts;
    }
    if (s.distinct.size() < 5000) {
      s.distinct.insert(cell_string(cell));
    } else {
      s.distinct_capped = true;
    }
  }
  s.text_length = texts ? length / static_cast<double>(texts) : 0;
  return s;
}

// Integers written as dates, 19580329: every value a valid yyyymmdd.
bool yyyymmdd_column(const QueryResult& data, size_t c) {
  for (const json& row : data.rows) {
    const json& cell = row.at(c);
    if (cell.is_null()) continue;
    if (!cell.is_number_integer()) return false;
    const int64_t v = cell.get<int64_t>();
    const int64_t m = v / 100 % 100, d = v % 100;
    if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  }
  return true;
}

bool id_like_name(const std::string& header) {
  const std::string h = text::lower(header);
  return name_has(h, {"id", "code", "codes", "fips", "iso", "iso2", "iso3", "abbr", "abbreviation",
                      "key", "uuid", "zip", "postcode", "index", "no"}) ||
         h.ends_with("_id") || (h.ends_with("id") && h.size() <= 4);
}

// Column roles for the long reading of a table (wide columns are handled by the caller).
Profile profile_columns(const TableInfo& info, const QueryResult& data) {
  Profile p;
  const size_t rows = data.rows.size();
  for (size_t c = 0; c < info.columns.size(); ++c) {
    const ColumnInfo& col = info.columns[c];
    ColumnStats s = column_stats(data, c);
    ColumnRole r{col.name, col.header, Role::kOther, ""};
    const size_t distinct = s.distinct.size();
    const bool all_distinct = !s.distinct_capped && distinct == s.present && s.present == rows;
    if (s.present == 0) {
      r.why = "empty";
    } else if (col.type == "DATE") {
      r.role = Role::kTime;
      r.why = "dates";
    } else if ((col.type == "INTEGER" || col.type == "REAL") && s.integral && s.min >= 1000 &&
               s.max <= 2200 && year_like_name(col.header)) {
      r.role = Role::kTime;
      r.why = "values are years";
    } else if (col.type == "TEXT") {
      size_t periods = 0;
      for (const std::string& v : s.distinct) periods += parse_text_period(v).has_value();
      if (periods == distinct && distinct >= 2) {
        r.role = Role::kTime;
        r.why = "month or quarter labels";
      } else if (distinct == 1) {
        r.why = "one value";
      } else if (all_distinct && (id_like_name(col.header) || s.text_length <= 3.0)) {
        r.role = Role::kIdentifier;
        r.why = "distinct codes";
      } else if (id_like_name(col.header)) {
        r.role = Role::kIdentifier;
        r.why = "named as a code";
      } else {
        r.role = Role::kEntity;
        r.why = std::to_string(distinct) + " distinct names";
      }
    } else if (col.type == "INTEGER" || col.type == "REAL") {
      const bool consecutive =
          s.integral && all_distinct && rows >= 3 && s.max - s.min + 1 == static_cast<double>(rows);
      if ((id_like_name(col.header) && s.integral) || (consecutive && s.min <= 1)) {
        r.role = Role::kIdentifier;
        r.why = consecutive ? "row numbers" : "named as a code";
      } else if (text::lower(col.header) == "month" && s.integral && s.min >= 1 && s.max <= 12) {
        r.role = Role::kOther;
        r.why = "month of the year";
      } else if ((text::lower(col.header) == "quarter" || text::lower(col.header) == "qtr") &&
                 s.integral && s.min >= 1 && s.max <= 4) {
        r.role = Role::kOther;
        r.why = "quarter of the year";
      } else if (s.integral && s.min >= 10000101 && s.max <= 22001231 && yyyymmdd_column(data, c)) {
        r.role = Role::kTime;
        r.why = "dates as yyyymmdd";
      } else {
        r.role = Role::kMeasure;
        r.why = "numbers";
      }
    }
    p.stats.push_back(std::move(s));
    p.roles.push_back(std::move(r));
  }
  return p;
}

}  // namespace

std::vector<std::string> entity_candidates(const std::filesystem::path& db_path,
                                           const TableInfo& info) {
  const QueryResult data = read_table(db_path, info, 20000);
  const Profile p = profile_columns(info, data);
  std::vector<std::string> out;
  for (const ColumnRole& r : p.roles) {
    if (r.role == Role::kEntity) out.push_back(r.name);
  }
  return out;
}

Frame load_frame(const std::filesystem::path& db_path, const TableInfo& info,
                 const std::string& entity_hint, size_t max_rows) {
  const QueryResult data = read_table(db_path, info, max_rows);
  Profile p = profile_columns(info, data);
  Frame f;
  f.table = info.name;
  f.title = info.title;
  f.description = info.description;
  f.source = std::filesystem::path(info.source_path).filename().string();
  f.truncated = data.truncated;
  const size_t ncol = info.columns.size();

  // Wide layouts: columns whose headers are years, or months beside a year column.
  std::vector<std::pair<size_t, int>> year_columns, month_columns;
  for (size_t c = 0; c < ncol; ++c) {
    const ColumnInfo& col = info.columns[c];
    const bool numeric_or_empty =
        col.type == "INTEGER" || col.type == "REAL" || p.stats[c].numbers == p.stats[c].present;
    if (!numeric_or_empty) continue;
    if (std::optional<int> y = header_year(col.header)) {
      year_columns.push_back({c, *y});
    } else if (const int m = text::month_from_name(std::string(text::trim(col.header)));
               m > 0 && col.header.size() <= 9) {
      month_columns.push_back({c, m});
    }
  }
  std::set<int> months_seen;
  for (const auto& [c, m] : month_columns) months_seen.insert(m);
  std::optional<size_t> year_col;
  for (size_t c = 0; c < ncol; ++c) {
    if (p.roles[c].role == Role::kTime && p.roles[c].why == "values are years") year_col = c;
  }
  if (!year_col) {
    // A wide month table's year column may be called anything: integral years, all distinct.
    for (size_t c = 0; c < ncol && months_seen.size() >= 6; ++c) {
      const ColumnStats& s = p.stats[c];
      if (s.numbers == s.present && s.present > 0 && s.integral && s.min >= 1000 && s.max <= 2200 &&
          s.distinct.size() == s.present) {
        year_col = c;
        p.roles[c].role = Role::kTime;
        p.roles[c].why = "values are years";
      }
    }
  }

  std::string select_time;  // period_date, year, month
  std::vector<std::string> value_columns;
  // For wide layouts: the SELECT branches of a UNION ALL, one per wide column.
  std::vector<std::pair<std::string, std::string>> wide_branches;  // (time select, value expr)
  std::string measure_label;

  auto pick_entity = [&](bool prefer_labels) -> std::optional<size_t> {
    std::optional<size_t> best;
    for (size_t c = 0; c < ncol; ++c) {
      if (p.roles[c].role != Role::kEntity) continue;
      if (!entity_hint.empty() && info.columns[c].name == entity_hint) return c;
      const size_t d = p.stats[c].distinct.size();
      if (!prefer_labels && d > 300) continue;
      if (!best) {
        best = c;
        continue;
      }
      const ColumnStats& b = p.stats[*best];
      // Entities are names: more distinct values first (below 300), then longer text.
      if (d > b.distinct.size() ||
          (d == b.distinct.size() && p.stats[c].text_length > b.text_length))
        best = c;
    }
    return best;
  };

  // With no name column, a column of distinct codes ("AL", "AK") names the rows.
  auto pick_entity_or_code = [&](bool prefer_labels) -> std::optional<size_t> {
    if (std::optional<size_t> e = pick_entity(prefer_labels)) return e;
    for (size_t c = 0; c < ncol; ++c) {
      if (p.roles[c].role == Role::kIdentifier && info.columns[c].type == "TEXT") {
        p.roles[c].role = Role::kEntity;
        p.roles[c].why = "distinct codes, the only names of the rows";
        return c;
      }
    }
    return std::nullopt;
  };

  std::optional<size_t> entity_col;
  if (year_columns.size() >= 3) {
    f.layout = "wide-year";
    f.grain = Grain::kYear;
    f.time_label = "year";
    for (auto& [c, y] : year_columns) {
      p.roles[c].role = Role::kMeasure;
      p.roles[c].why = "values of year " + std::to_string(y);
    }
    // A constant text column names the indicator ("Fertility rate, total (births per woman)").
    for (size_t c = 0; c < ncol; ++c) {
      if (info.columns[c].type == "TEXT" && p.stats[c].distinct.size() == 1 &&
          text::lower(info.columns[c].header).find("code") == std::string::npos &&
          p.stats[c].text_length > measure_label.size()) {
        measure_label = *p.stats[c].distinct.begin();
      }
    }
    entity_col = pick_entity_or_code(true);
    std::sort(year_columns.begin(), year_columns.end(),
              [](const auto& a, const auto& b) { return a.second < b.second; });
    for (auto& [c, y] : year_columns) {
      wide_branches.push_back(
          {"NULL AS period_date, " + std::to_string(y) + " AS year, NULL AS month",
           quote_id(info.columns[c].name)});
    }
  } else if (months_seen.size() >= 6 && year_col) {
    f.layout = "wide-month";
    f.grain = Grain::kMonth;
    f.time_label = info.columns[*year_col].header;
    for (auto& [c, m] : month_columns) {
      p.roles[c].role = Role::kMeasure;
      p.roles[c].why = std::string("values of ") + month_name(m);
    }
    entity_col = pick_entity(false);
    std::sort(month_columns.begin(), month_columns.end(),
              [](const auto& a, const auto& b) { return a.second < b.second; });
    for (auto& [c, m] : month_columns) {
      wide_branches.push_back({"NULL AS period_date, " + quote_id(info.columns[*year_col].name) +
                                   " AS year, " + std::to_string(m) + " AS month",
                               quote_id(info.columns[c].name)});
    }
  } else {
    // Long: one time column (dates, years, month labels; or a year and a month column).
    std::optional<size_t> time_col, month_col;
    for (size_t c = 0; c < ncol; ++c) {
      if (p.roles[c].role == Role::kTime && (!time_col || info.columns[c].type == "DATE")) {
        time_col = c;
      }
      if (p.roles[c].why == "month of the year" || p.roles[c].why == "quarter of the year" ||
          (info.columns[c].type == "TEXT" && text::lower(info.columns[c].header) == "month")) {
        month_col = c;
      }
    }
    for (size_t c = 0; c < ncol; ++c) {
      if (p.roles[c].role == Role::kTime && time_col && c != *time_col) {
        p.roles[c].role = Role::kOther;
        p.roles[c].why = "a second time column";
      }
    }
    if (time_col) {
      const ColumnInfo& col = info.columns[*time_col];
      const std::string q = quote_id(col.name);
      f.time_label = col.header;
      if (col.type == "DATE") {
        bool all_jan1 = true, all_first = true;
        for (const std::string& d : p.stats[*time_col].distinct) {
          all_first = all_first && d.size() >= 10 && d.substr(8, 2) == "01";
          all_jan1 = all_jan1 && all_first && d.substr(5, 2) == "01";
        }
        f.grain = all_jan1 ? Grain::kYear : all_first ? Grain::kMonth : Grain::kDay;
        select_time = q + " AS period_date, CAST(substr(" + q + ", 1, 4) AS INTEGER) AS year, " +
                      "CAST(substr(" + q + ", 6, 2) AS INTEGER) AS month";
      } else if (p.roles[*time_col].why == "dates as yyyymmdd") {
        f.grain = Grain::kDay;
        select_time = "substr(" + q + ", 1, 4) || '-' || substr(" + q +
                      ", 5, 2) || '-' || substr(" + q + ", 7, 2) AS period_date, " + q +
                      " / 10000 AS year, " + q + " / 100 % 100 AS month";
        bool all_first = true, all_jan1 = true;
        for (const std::string& d : p.stats[*time_col].distinct) {
          all_first = all_first && d.size() == 8 && d.substr(6, 2) == "01";
          all_jan1 = all_jan1 && all_first && d.substr(4, 2) == "01";
        }
        f.grain = all_jan1 ? Grain::kYear : all_first ? Grain::kMonth : Grain::kDay;
      } else if (p.roles[*time_col].why == "values are years") {
        f.grain = Grain::kYear;
        std::string month = "NULL";
        if (month_col) {
          const std::string mq = quote_id(info.columns[*month_col].name);
          const bool quarter = p.roles[*month_col].why == "quarter of the year";
          month = info.columns[*month_col].type == "TEXT" ? month_name_sql(mq)
                  : quarter                               ? "(" + mq + " * 3 - 2)"
                                                          : mq;
          f.grain = quarter ? Grain::kQuarter : Grain::kMonth;
          p.roles[*month_col].role = Role::kTime;
          p.roles[*month_col].why =
              std::string(quarter ? "quarter" : "month") + " of the year, with the year column";
        }
        select_time = "NULL AS period_date, " + q + " AS year, " + month + " AS month";
      } else {
        // Month or quarter labels; every value parsed with the same format.
        std::optional<TextPeriod> first = parse_text_period(*p.stats[*time_col].distinct.begin());
        f.grain = first->grain;
        for (const std::string& v : p.stats[*time_col].distinct) {
          std::optional<TextPeriod> tp = parse_text_period(v);
          if (tp->grain != f.grain) f.grain = Grain::kMonth;  // mixed: months hold quarters
        }
        switch (first->format) {
          case 1:
            select_time = "NULL AS period_date, CAST(substr(" + q +
                          ", 1, 4) AS INTEGER) AS year, " + "CAST(substr(" + q +
                          ", 6, 2) AS INTEGER) AS month";
            break;
          case 2:
            select_time = "NULL AS period_date, CAST(substr(" + q + ", -4) AS INTEGER) AS year, " +
                          month_name_sql(q) + " AS month";
            break;
          case 3:
            select_time = "NULL AS period_date, CAST(substr(" + q +
                          ", 1, 4) AS INTEGER) AS year, " + "CAST(substr(" + q +
                          ", -1) AS INTEGER) * 3 - 2 AS month";
            break;
          case 5:
            // The day of a date-time: hours and minutes are aggregated into it.
            select_time =
                "replace(substr(" + q + ", 1, 10), '/', '-') AS period_date, CAST(substr(" + q +
                ", 1, 4) AS INTEGER) AS year, CAST(substr(" + q + ", 6, 2) AS INTEGER) AS month";
            break;
          default:
            select_time = "NULL AS period_date, CAST(substr(" + q + ", -4) AS INTEGER) AS year, " +
                          "CAST(substr(" + q + ", 2, 1) AS INTEGER) * 3 - 2 AS month";
            break;
        }
      }
    } else {
      select_time = "NULL AS period_date, NULL AS year, NULL AS month";
    }
    // With a time column, a text column is a dimension only when periods repeat across its
    // values; when every row has its own period, it only annotates the rows.
    if (time_col && p.stats[*time_col].distinct.size() == p.stats[*time_col].present &&
        p.stats[*time_col].present == data.rows.size()) {
      for (size_t c = 0; c < ncol; ++c) {
        if (p.roles[c].role == Role::kEntity) {
          p.roles[c].role = Role::kOther;
          p.roles[c].why = "annotates rows (one row per period)";
        }
      }
    }
    entity_col = time_col ? pick_entity(false) : pick_entity_or_code(true);
    f.layout = time_col ? (entity_col ? "long" : "series") : "cross-section";
    for (size_t c = 0; c < ncol; ++c) {
      if (p.roles[c].role == Role::kMeasure) value_columns.push_back(info.columns[c].name);
    }
  }
  if (entity_col) {
    f.entity_label = info.columns[*entity_col].header;
    f.entity_column = info.columns[*entity_col].name;
  }
  const std::string entity_select =
      entity_col ? "CAST(" + quote_id(info.columns[*entity_col].name) + " AS TEXT) AS entity"
                 : "NULL AS entity";

  // Measures and the long SQL.
  if (!wide_branches.empty()) {
    Measure m;
    m.label = measure_label.empty() ? info.title : measure_label;
    if (measure_label.empty()) {
      // A title names the whole table: "Monthly sea surface temperature ..., 1950-2010" loses
      // its period and its "monthly".
      std::string l = m.label;
      if (const size_t comma = l.rfind(','); comma != std::string::npos) {
        const std::string tail = text::lower(l.substr(comma + 1));
        if (std::any_of(tail.begin(), tail.end(),
                        [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
          l = l.substr(0, comma);
      }
      for (const char* w : {"Monthly ", "monthly ", "Annual ", "annual ", "Yearly ", "yearly "}) {
        if (l.starts_with(w)) l = l.substr(std::string(w).size());
      }
      m.label = std::string(text::trim(l));
    }
    m.unit = unit_in_parentheses(m.label);
    if (m.unit.empty()) {
      std::vector<Measure> one = {m};
      one[0].column = "value";
      describe_measures(one, info.description);
      m.unit = one[0].unit;
    }
    m.sql_name = "v0";
    f.measures.push_back(m);
    std::string sql;
    for (const auto& [time, value] : wide_branches) {
      sql += (sql.empty() ? "" : " UNION ALL ") + std::string("SELECT ") + time + ", " +
             entity_select + ", " + value + " AS v0 FROM " + quote_id(info.name);
    }
    f.long_sql = sql;
  } else {
    std::string cols;
    for (size_t i = 0; i < value_columns.size(); ++i) {
      Measure m;
      for (const ColumnInfo& c : info.columns) {
        if (c.name == value_columns[i]) {
          m.label = c.header.empty() ? c.name : c.header;
          m.unit = c.unit;
        }
      }
      m.sql_name = "v" + std::to_string(i);
      m.column = value_columns[i];
      f.measures.push_back(m);
      cols += ", " + quote_id(value_columns[i]) + " AS " + m.sql_name;
    }
    describe_measures(f.measures, info.description);
    for (Measure& m : f.measures) {
      const bool code = m.label.find(' ') == std::string::npos && m.label.size() <= 12;
      std::string name = m.note;
      for (const char* cut : {" (", ", ", " in ", " per "}) {
        const size_t at = name.find(cut);
        if (at != std::string::npos) name = name.substr(0, at);
      }
      name = std::string(text::trim(name));
      // Only a name that says more than the header: not one holding the header's own word
      // ("murders" for murder) and not a phrase cut mid-way ("percent of the population living").
      const std::vector<std::string> nw = text::words(name);
      bool repeats = false;
      for (const std::string& w : text::words(m.label)) {
        for (const std::string& x : nw) {
          const size_t shorter = std::min(w.size(), x.size()),
                       longer = std::max(w.size(), x.size());
          repeats = repeats || (w.size() >= 3 && (x.starts_with(w) || w.starts_with(x)) &&
                                shorter * 5 >= longer * 4);
        }
      }
      const std::string last = nw.empty() ? "" : nw.back();
      const bool cut =
          last.ends_with("ing") || last == "of" || last == "with" || last == "the" || last == "a";
      if (code && !name.empty() && name.size() <= 40 && nw.size() <= 5 && !repeats && !cut &&
          text::lower(name) != text::lower(m.label)) {
        m.label = name + " (" + m.label + ")";
      }
    }
    f.long_sql =
        "SELECT " + select_time + ", " + entity_select + cols + " FROM " + quote_id(info.name);
  }
  if (f.measures.empty()) {
    throw FrameError("table " + info.name + " has no numeric measure to analyse");
  }
  f.columns = p.roles;
  if (entity_col) p.roles[*entity_col].role = Role::kEntity;

  // Observations, from the long SQL itself: the frame reads exactly what facts' SQL reads.
  Limits limits;
  limits.max_rows = max_rows * std::max<size_t>(1, wide_branches.size());
  limits.max_ms = 20000;
  limits.max_result_bytes = size_t{512} << 20;
  const QueryResult rows = run_readonly(db_path, f.long_sql, limits);
  f.truncated = f.truncated || rows.truncated;
  std::map<std::string, int32_t> entity_index;
  std::vector<std::vector<double>> measure_values(f.measures.size());
  for (const json& row : rows.rows) {
    Observation o;
    const json& date = row.at(0);
    const json& year = row.at(1);
    const json& month = row.at(2);
    if (f.grain != Grain::kNone) {
      if (f.grain == Grain::kDay) {
        if (!date.is_string()) continue;
        const std::string& d = date.get_ref<const std::string&>();
        if (d.size() < 10) continue;
        o.period = calendar::days_from_civil(std::stoi(d.substr(0, 4)), std::stoi(d.substr(5, 2)),
                                             std::stoi(d.substr(8, 2)));
      } else {
        if (!year.is_number()) continue;
        const int y = year.get<int>();
        const int mo = month.is_number() ? month.get<int>() : 1;
        if (f.grain != Grain::kYear && (mo < 1 || mo > 12)) continue;
        o.period = f.grain == Grain::kYear      ? y
                   : f.grain == Grain::kQuarter ? int64_t{y} * 4 + (mo - 1) / 3
                                                : int64_t{y} * 12 + mo - 1;
      }
    }
    if (entity_col) {
      const std::string name = cell_string(row.at(3));
      if (name.empty()) continue;
      auto [it, inserted] = entity_index.try_emplace(name, static_cast<int32_t>(f.entities.size()));
      if (inserted) f.entities.push_back(name);
      o.entity = it->second;
    }
    bool any = false;
    for (size_t m = 0; m < f.measures.size(); ++m) {
      const json& cell = row.at(4 + m);
      const double v = is_number(cell) ? to_double(cell) : std::nan("");
      any = any || std::isfinite(v);
      o.values.push_back(std::isfinite(v) ? v : std::nan(""));
      if (std::isfinite(v)) measure_values[m].push_back(v);
    }
    if (any) f.rows.push_back(std::move(o));
  }
  // Codes named in the description: "AAPL Apple", "Apple (AAPL)".
  f.entity_aliases.assign(f.entities.size(), "");
  for (size_t e = 0; e < f.entities.size(); ++e) {
    const std::string& code = f.entities[e];
    const bool is_code =
        code.size() >= 2 && code.size() <= 6 && std::all_of(code.begin(), code.end(), [](char c) {
          return std::isupper(static_cast<unsigned char>(c)) ||
                 std::isdigit(static_cast<unsigned char>(c));
        });
    if (!is_code) continue;
    const std::string& d = info.description;
    for (size_t at = d.find(code); at != std::string::npos; at = d.find(code, at + 1)) {
      const size_t end = at + code.size();
      if ((at > 0 && std::isalnum(static_cast<unsigned char>(d[at - 1]))) ||
          (end < d.size() && std::isalnum(static_cast<unsigned char>(d[end]))))
        continue;
      // "AAPL Apple": the capitalized words after the code.
      std::string alias;
      size_t i = end;
      while (i < d.size() && d[i] == ' ') ++i;
      while (i < d.size() && std::isupper(static_cast<unsigned char>(d[i]))) {
        size_t j = i;
        while (j < d.size() &&
               (std::isalpha(static_cast<unsigned char>(d[j])) || d[j] == '.' || d[j] == '&'))
          ++j;
        const std::string word = d.substr(i, j - i);
        bool another_code = false;
        for (const std::string& other : f.entities) another_code = another_code || other == word;
        if (another_code) break;
        alias += (alias.empty() ? "" : " ") + word;
        i = j;
        while (i < d.size() && d[i] == ' ') ++i;
        if (text::words(alias).size() >= 3) break;
      }
      if (!alias.empty() && alias != code) {
        f.entity_aliases[e] = alias;
        break;
      }
      // "Apple (AAPL)": the capitalized words before "(CODE)".
      if (at >= 2 && d[at - 1] == '(') {
        size_t k = at - 1;
        while (k > 0 && d[k - 1] == ' ') --k;
        size_t b = k;
        while (b > 0 && (std::isalpha(static_cast<unsigned char>(d[b - 1])) || d[b - 1] == ' ') &&
               k - b < 40)
          --b;
        std::string before = std::string(text::trim(d.substr(b, k - b)));
        const std::vector<std::string> ws = text::words(before);
        if (!ws.empty() && std::isupper(static_cast<unsigned char>(before[0]))) {
          f.entity_aliases[e] = before;
          break;
        }
      }
    }
  }
  for (size_t m = 0; m < f.measures.size(); ++m) {
    const Additivity a = additivity(f.measures[m].label + " " + f.measures[m].note,
                                    f.measures[m].unit, measure_values[m]);
    f.measures[m].extensive = a.extensive;
    f.measures[m].flow = a.flow && f.grain != Grain::kNone;
  }
  return f;
}

}  // namespace kdr::hka::analysis

namespace kdr::hka::analysis {

namespace {

// Columns that are sums of other columns (a total, a sector made of its industries): for
// each column, a subset of the columns no larger than it that adds up to it on every row.
// For each of `measures`, the indices (into `measures`) of the columns that sum to it; empty
// when none do.
std::vector<std::vector<size_t>> aggregate_columns(const Frame& f,
                                                   const std::vector<size_t>& measures) {
  std::vector<std::vector<size_t>> children(measures.size());
  if (f.rows.empty()) return children;
  // Rows where every one of these measures has a value.
  std::vector<const Observation*> rows;
  for (const Observation& o : f.rows) {
    bool all = true;
    for (size_t m : measures) all = all && std::isfinite(o.values[m]);
    if (all) rows.push_back(&o);
  }
  if (rows.empty()) return children;
  const Observation& first = *rows.front();
  for (size_t i = 0; i < measures.size(); ++i) {
    const double target = first.values[measures[i]];
    if (!(target > 0)) continue;
    std::vector<size_t> cand;
    for (size_t j = 0; j < measures.size(); ++j) {
      if (j != i && first.values[measures[j]] >= 0 && first.values[measures[j]] < target)
        cand.push_back(j);
    }
    if (cand.size() < 2) continue;
    if (cand.size() > 20) {
      std::sort(cand.begin(), cand.end(), [&](size_t a, size_t b) {
        return first.values[measures[a]] > first.values[measures[b]];
      });
      cand.resize(20);
    }
    const uint32_t n = static_cast<uint32_t>(cand.size());
    for (uint32_t mask = 1; mask < (1u << n) && children[i].empty(); ++mask) {
      if (__builtin_popcount(mask) < 2) continue;
      double sum = 0;
      for (uint32_t k = 0; k < n; ++k) {
        if (mask & (1u << k)) sum += first.values[measures[cand[k]]];
      }
      if (std::fabs(sum - target) > 0.002 * target) continue;
      bool every = true;
      for (const Observation* o : rows) {
        double s = 0;
        for (uint32_t k = 0; k < n; ++k) {
          if (mask & (1u << k)) s += o->values[measures[cand[k]]];
        }
        const double t = o->values[measures[i]];
        every = every && std::fabs(s - t) <= 0.005 * std::fabs(t) + 1e-9;
        if (!every) break;
      }

      if (every) {
        for (uint32_t k = 0; k < n; ++k) {
          if (mask & (1u << k)) children[i].push_back(cand[k]);
        }
      }
    }
  }
  return children;
}

}  // namespace

std::optional<Frame> columns_as_entities(const Frame& f, const std::vector<size_t>& named) {
  if (!f.entities.empty() || f.grain == Grain::kNone || f.measures.size() < 2) return std::nullopt;
  std::vector<size_t> parts;
  for (size_t m = 0; m < f.measures.size(); ++m) {
    if (f.measures[m].extensive && !f.measures[m].column.empty()) parts.push_back(m);
  }
  if (parts.size() < 2) return std::nullopt;
  for (size_t m : parts) {
    if (f.measures[m].unit != f.measures[parts.front()].unit) return std::nullopt;
  }
  const std::vector<std::vector<size_t>> children = aggregate_columns(f, parts);
  // Columns are parts of one thing when one of them sums others, when they share a unit the
  // description gives, or when the question names them together.
  const bool sums =
      std::any_of(children.begin(), children.end(), [](const auto& c) { return !c.empty(); });
  if (!sums && f.measures[parts.front()].unit.empty() && named.size() < 2) return std::nullopt;
  std::vector<size_t> named_parts;
  for (size_t m : named) {
    const auto it = std::find(parts.begin(), parts.end(), m);
    if (it != parts.end()) named_parts.push_back(static_cast<size_t>(it - parts.begin()));
  }
  std::vector<size_t> leaves;
  if (named_parts.size() >= 2) {
    // A named column that is the sum of the other named ones is their total, not a part.
    for (size_t i : named_parts) {
      bool total = named_parts.size() >= 3;
      for (const Observation& o : f.rows) {
        if (!total) break;
        double sum = 0;
        for (size_t j : named_parts) {
          if (j != i) sum += o.values[parts[j]];
        }
        const double t = o.values[parts[i]];
        if (std::isfinite(sum) && std::isfinite(t))
          total = std::fabs(sum - t) <= 0.005 * std::fabs(t) + 1e-9;
      }
      if (!total) leaves.push_back(parts[i]);
    }
  } else if (named_parts.size() == 1 && !children[named_parts[0]].empty()) {
    for (size_t i : children[named_parts[0]]) leaves.push_back(parts[i]);
  } else {
    for (size_t i = 0; i < parts.size(); ++i) {
      const std::string l = text::lower(f.measures[parts[i]].label);
      const bool total_name =
          text::has_word(l, "total") || text::has_word(l, "all") || text::has_word(l, "overall");
      if (children[i].empty() && !total_name) leaves.push_back(parts[i]);
    }
  }
  if (leaves.size() < 2) return std::nullopt;
  Frame out;
  out.table = f.table;
  out.title = f.title;
  out.description = f.description;
  out.source = f.source;
  out.layout = "wide-columns";
  out.grain = f.grain;
  out.time_label = f.time_label;
  out.entity_label = "category";
  out.columns = f.columns;
  out.truncated = f.truncated;
  Measure m;
  std::string label = f.title;
  if (const size_t comma = label.rfind(','); comma != std::string::npos) {
    const std::string tail = label.substr(comma + 1);
    if (std::any_of(tail.begin(), tail.end(),
                    [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      label = label.substr(0, comma);
  }
  for (const std::string w :
       {"monthly ", "annual ", "yearly ", "weekly ", "daily ", "quarterly "}) {
    const size_t at = text::lower(label).find(w);
    if (at != std::string::npos && (at == 0 || label[at - 1] == ' ')) label.erase(at, w.size());
  }
  m.label = std::string(text::trim(label));
  m.unit = f.measures[leaves.front()].unit;
  m.extensive = true;
  m.flow = std::any_of(leaves.begin(), leaves.end(), [&](size_t i) { return f.measures[i].flow; });
  m.sql_name = "v0";
  out.measures.push_back(m);
  // long_sql: one branch per leaf column over the original long SQL.
  std::string sql;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Measure& leaf = f.measures[leaves[i]];
    std::string name = leaf.label;
    for (char& c : name) {
      if (c == '_') c = ' ';
    }
    out.entities.push_back(name);
    std::string quoted = "'";
    for (char c : name) {
      quoted += c;
      if (c == '\'') quoted += '\'';
    }
    quoted += "'";
    sql += (sql.empty() ? "" : " UNION ALL ") + std::string("SELECT period_date, year, month, ") +
           quoted + " AS entity, " + leaf.sql_name + " AS v0 FROM (" + f.long_sql + ")";
  }
  out.long_sql = sql;
  for (const Observation& o : f.rows) {
    for (size_t i = 0; i < leaves.size(); ++i) {
      const double v = o.values[leaves[i]];
      if (!std::isfinite(v)) continue;
      Observation x;
      x.period = o.period;
      x.entity = static_cast<int32_t>(i);
      x.values = {v};
      out.rows.push_back(std::move(x));
    }
  }
  return out;
}

}  // namespace kdr::hka::analysis
