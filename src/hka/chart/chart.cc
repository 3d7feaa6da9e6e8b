// Charts of the research agent: spec parsing, the figure check and rendering.
//
// Why cairo directly rather than a plotting library: we considered PLplot (Debian
// libplplot-dev). Every PLplot call acts on a "current stream" held in library globals
// (plsstrm selects it), so it is not reentrant and two reports could not draw at once. Its
// output goes through device drivers that Debian ships as run-time loaded modules in separate
// packages, mostly writing to files (the memory devices give raster images; extcairo draws
// into a caller's cairo context, which is what we use anyway). Its axes are numeric only
// (category names need a labelling callback) and it has arcs but no pie chart, so we would
// have rebuilt most of the layout ourselves. cairo is a maintained 2-D library whose SVG and
// image surfaces take the same drawing calls: one drawing function below produces both the
// SVG and the PNG, reentrant and without files.
#include "hka/chart/chart.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <numbers>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "hka/calendar.h"
#include "hka/text.h"

namespace kdr::hka {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxSeries = 10;
constexpr std::size_t kMaxSlices = 12;

// ---------------------------------------------------------------------------------------
// Spec parsing

const json* member(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string string_member(const json& object, const char* key, const std::string& path,
                          bool required) {
  const json* value = member(object, key);
  if (value == nullptr) {
    if (required) throw ChartError(path + ": missing");
    return "";
  }
  if (!value->is_string()) throw ChartError(path + ": must be a string, got " + value->dump());
  return value->get<std::string>();
}

// A field definition: {"field", "type", "title", "axis": {"title"}}; transforms are refused
// because the query is where the data is shaped.
struct FieldDef {
  std::string field, type, title;
};

FieldDef parse_field_def(const json& encoding, const char* channel, bool required) {
  const std::string path = std::string("encoding.") + channel;
  const json* def = member(encoding, channel);
  if (def == nullptr) {
    if (required) throw ChartError(path + ".field: missing");
    return {};
  }
  if (!def->is_object()) throw ChartError(path + ": must be an object like {\"field\": ...}");
  for (const auto& [key, value] : def->items()) {
    static const std::set<std::string> kAccepted = {"field",  "type",  "title", "axis",
                                                    "legend", "scale", "format"};
    if (kAccepted.count(key) != 0) continue;
    if (key == "aggregate" || key == "bin" || key == "timeUnit" || key == "stack")
      throw ChartError(path + "." + key + ": not supported; compute it in the SQL query");
    if (key == "sort")
      throw ChartError(path + ".sort: not supported; order the rows with ORDER BY in the query");
    throw ChartError(path + "." + key +
                     ": not supported (accepted: field, type, title, axis.title)");
  }
  FieldDef out;
  out.field = string_member(*def, "field", path + ".field", true);
  if (out.field.empty()) throw ChartError(path + ".field: empty");
  out.type = string_member(*def, "type", path + ".type", false);
  static const std::set<std::string> kTypes = {"nominal", "ordinal", "quantitative", "temporal"};
  if (!out.type.empty() && kTypes.count(out.type) == 0)
    throw ChartError(path + ".type: '" + out.type +
                     "' is not one of nominal, ordinal, quantitative, temporal");
  out.title = string_member(*def, "title", path + ".title", false);
  if (const json* axis = member(*def, "axis"); axis != nullptr && out.title.empty()) {
    if (!axis->is_object()) throw ChartError(path + ".axis: must be an object");
    out.title = string_member(*axis, "title", path + ".axis.title", false);
  }
  return out;
}

std::string parse_mark(const json& spec) {
  const json* mark = member(spec, "mark");
  if (mark == nullptr) throw ChartError("mark: missing");
  std::string type;
  if (mark->is_string()) {
    type = mark->get<std::string>();
  } else if (mark->is_object()) {
    type = string_member(*mark, "type", "mark.type", true);
  } else {
    throw ChartError("mark: must be a string or {\"type\": ...}, got " + mark->dump());
  }
  if (type == "point" || type == "circle") type = "scatter";
  if (type == "arc") type = "pie";
  if (type != "bar" && type != "line" && type != "pie" && type != "scatter")
    throw ChartError("mark: '" + type + "' is not one of bar, line, pie, scatter");
  return type;
}

std::string parse_title(const json& spec) {
  const json* title = member(spec, "title");
  if (title == nullptr) return "";
  if (title->is_object()) return string_member(*title, "text", "title.text", false);
  if (!title->is_string()) throw ChartError("title: must be a string, got " + title->dump());
  return title->get<std::string>();
}

// ---------------------------------------------------------------------------------------
// Values of the query result

std::string number_text(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

std::string cell_text(const json& cell) {
  return cell.is_null() ? "null" : text::format_cell(cell);
}

std::optional<double> cell_number(const json& cell) {
  if (cell.is_number()) return cell.get<double>();
  return std::nullopt;
}

using calendar::days_from_civil;
using Civil = calendar::CivilDate;
Civil civil_from_days(long z) { return calendar::civil_from_days(z); }

bool is_leap(long y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
unsigned days_in_month(long y, unsigned m) {
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

bool read_digits(std::string_view s, std::size_t pos, std::size_t n, unsigned* out) {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  *out = v;
  return true;
}

// ISO dates: yyyy, yyyy-mm, yyyy-mm-dd, optionally followed by "T" or " " and hh:mm[:ss...].
std::optional<double> parse_iso_days(std::string_view s) {
  unsigned y = 0, m = 1, d = 1;
  if (!read_digits(s, 0, 4, &y)) return std::nullopt;
  std::size_t pos = 4;
  if (pos < s.size() && s[pos] == '-') {
    if (!read_digits(s, 5, 2, &m) || m < 1 || m > 12) return std::nullopt;
    pos = 7;
    if (pos < s.size() && s[pos] == '-') {
      if (!read_digits(s, 8, 2, &d) || d < 1 || d > days_in_month(y, m)) return std::nullopt;
      pos = 10;
    }
  }
  double fraction = 0;
  if (pos < s.size()) {
    unsigned hh = 0, mm = 0, ss = 0;
    if (pos != 10 || (s[pos] != 'T' && s[pos] != ' ')) return std::nullopt;
    if (!read_digits(s, pos + 1, 2, &hh) || s.size() < pos + 6 || s[pos + 3] != ':' ||
        !read_digits(s, pos + 4, 2, &mm) || hh > 23 || mm > 59)
      return std::nullopt;
    if (s.size() >= pos + 9 && s[pos + 6] == ':') read_digits(s, pos + 7, 2, &ss);
    fraction = (hh * 3600.0 + mm * 60.0 + std::min(ss, 59u)) / 86400.0;
  }
  return static_cast<double>(days_from_civil(y, m, d)) + fraction;
}

std::optional<double> temporal_days(const json& cell) {
  if (cell.is_string()) return parse_iso_days(cell.get<std::string>());
  if (cell.is_number_integer()) {  // a bare year
    const auto year = cell.get<std::int64_t>();
    if (year >= 0 && year <= 9999) return static_cast<double>(days_from_civil(year, 1, 1));
  }
  return std::nullopt;
}

std::string rows_text(const std::vector<std::size_t>& rows) {
  std::string out = rows.size() == 1 ? "row " : "rows ";
  const std::size_t shown = std::min<std::size_t>(rows.size(), 3);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i > 0) out += (i + 1 == shown && rows.size() == shown) ? " and " : ", ";
    out += std::to_string(rows[i] + 1);
  }
  if (rows.size() > shown) out += " and " + std::to_string(rows.size() - shown) + " more";
  return out;
}

std::string columns_text(const QueryResult& result) {
  std::string out;
  for (const auto& c : result.columns) out += (out.empty() ? "" : ", ") + c;
  return out.empty() ? "none" : out;
}

// One pass over the result that both chart_data() and check_chart() use: it builds the
// series and records every reason a value cannot be plotted.
struct Extraction {
  ChartData data;
  std::vector<std::string> problems;                     // fields and values that cannot be plotted
  std::vector<std::vector<std::size_t>> rows_of_series;  // per series, per point: its row
  std::string x_type;         // the spec's, or inferred from the data when the spec has none
  bool continuous_x = false;  // x_num is the x value (else a category index)
};

// An x without a type is nominal for a bar or pie and for text; numbers are quantitative and
// ISO dates temporal.
std::string infer_x_type(const ChartSpec& spec, const QueryResult& result, std::size_t x_col) {
  if (spec.mark == "bar" || spec.mark == "pie") return "nominal";
  bool numbers = true, dates = true, any = false;
  for (const json& row : result.rows) {
    if (!row.is_array() || row.size() <= x_col || row[x_col].is_null()) continue;
    const json& cell = row[x_col];
    any = true;
    numbers = numbers && cell.is_number();
    dates = dates && cell.is_string() && cell.get_ref<const std::string&>().size() >= 7 &&
            parse_iso_days(cell.get_ref<const std::string&>()).has_value();
  }
  return !any ? "nominal" : numbers ? "quantitative" : dates ? "temporal" : "nominal";
}

Extraction extract(const ChartSpec& spec, const QueryResult& result) {
  Extraction ex;
  const bool pie = spec.mark == "pie";
  auto column = [&](const std::string& field, const std::string& what) -> std::optional<size_t> {
    for (std::size_t i = 0; i < result.columns.size(); ++i)
      if (result.columns[i] == field) return i;
    ex.problems.push_back(what + " '" + field + "' is not a column of the result (columns: " +
                          columns_text(result) + "); use one of them.");
    return std::nullopt;
  };
  const auto x_col = column(spec.x_field, pie ? "The slice field" : "encoding.x.field");
  const auto y_col = column(spec.y_field, pie ? "encoding.theta.field" : "encoding.y.field");
  std::optional<std::size_t> color_col;
  if (!spec.color_field.empty()) color_col = column(spec.color_field, "encoding.color.field");
  ex.x_type = spec.x_type;
  if (!x_col || !y_col || (!spec.color_field.empty() && !color_col)) return ex;
  if (ex.x_type.empty()) ex.x_type = infer_x_type(spec, result, *x_col);
  // Bars and slices sit on categories whatever the x type; lines and points at their x.
  const bool placed_by_x = spec.mark == "line" || spec.mark == "scatter";
  ex.continuous_x = placed_by_x && (ex.x_type == "quantitative" || ex.x_type == "temporal");

  std::vector<std::size_t> null_y, text_y, nonfinite_y, null_x, bad_x, null_color, short_rows;
  std::string text_y_example, bad_x_example;
  std::map<std::string, std::size_t> series_index;
  std::map<std::string, double> category_index;
  const std::string default_name = spec.y_title.empty() ? spec.y_field : spec.y_title;
  const std::size_t needed = std::max({*x_col, *y_col, color_col.value_or(0)}) + 1;
  for (std::size_t r = 0; r < result.rows.size(); ++r) {
    const json& row = result.rows[r];
    if (!row.is_array() || row.size() < needed) {
      short_rows.push_back(r);
      continue;
    }
    bool ok = true;
    const json& y_cell = row[*y_col];
    double y = 0;
    if (y_cell.is_null()) {
      null_y.push_back(r), ok = false;
    } else if (!y_cell.is_number()) {
      if (text_y.empty()) text_y_example = cell_text(y_cell);
      text_y.push_back(r), ok = false;
    } else {
      y = y_cell.get<double>();
      if (!std::isfinite(y)) nonfinite_y.push_back(r), ok = false;
    }
    const json& x_cell = row[*x_col];
    std::string x_text = cell_text(x_cell);
    double x_num = 0;
    if (x_cell.is_null()) {
      null_x.push_back(r), ok = false;
    } else if (ex.x_type == "quantitative" && placed_by_x) {
      const auto v = cell_number(x_cell);
      if (!v || !std::isfinite(*v)) {
        if (bad_x.empty()) bad_x_example = x_text;
        bad_x.push_back(r), ok = false;
      } else {
        x_num = *v;
      }
    } else if (ex.x_type == "temporal" && placed_by_x) {
      const auto v = temporal_days(x_cell);
      if (!v) {
        if (bad_x.empty()) bad_x_example = x_text;
        bad_x.push_back(r), ok = false;
      } else {
        x_num = *v;
      }
    } else {
      auto [it, added] = category_index.emplace(x_text, static_cast<double>(category_index.size()));
      x_num = it->second;
    }
    std::string name = default_name;
    if (color_col) {
      const json& c = row[*color_col];
      if (c.is_null()) null_color.push_back(r), ok = false;
      name = cell_text(c);
    }
    if (!ok) continue;
    auto [it, added] = series_index.emplace(name, ex.data.series.size());
    if (added) {
      ex.data.series.push_back({name, {}, {}, {}});
      ex.rows_of_series.emplace_back();
    }
    ChartSeries& s = ex.data.series[it->second];
    s.x.push_back(std::move(x_text));
    s.x_num.push_back(x_num);
    s.y.push_back(y);
    ex.rows_of_series[it->second].push_back(r);
  }
  const std::string y_name = "'" + spec.y_field + "'";
  if (!short_rows.empty())
    ex.problems.push_back("The result has malformed " + rows_text(short_rows) +
                          " (fewer cells than columns); rerun the query.");
  if (!null_y.empty())
    ex.problems.push_back("The value column " + y_name + " is null in " + rows_text(null_y) +
                          "; filter them (WHERE " + spec.y_field +
                          " IS NOT NULL) or COALESCE them in the query.");
  if (!text_y.empty())
    ex.problems.push_back("The value column " + y_name + " holds text, not numbers ('" +
                          text_y_example + "' in " + rows_text(text_y) +
                          "); plot a numeric column or CAST it in the query.");
  if (!nonfinite_y.empty())
    ex.problems.push_back("The value column " + y_name + " is not finite (NaN or infinity) in " +
                          rows_text(nonfinite_y) + "; fix the division or filter those rows.");
  if (!null_x.empty())
    ex.problems.push_back("The " + std::string(pie ? "slice" : "x") + " column '" + spec.x_field +
                          "' is null in " + rows_text(null_x) +
                          "; filter or label those rows in the query.");
  if (!bad_x.empty())
    ex.problems.push_back("encoding.x.type is " + ex.x_type + " but '" + spec.x_field +
                          "' holds '" + bad_x_example + "' in " + rows_text(bad_x) + "; " +
                          (ex.x_type == "temporal" ? "use ISO dates (yyyy-mm-dd, yyyy-mm or yyyy)"
                                                   : "use type nominal or a numeric column") +
                          ".");
  if (!null_color.empty())
    ex.problems.push_back("The color column '" + spec.color_field + "' is null in " +
                          rows_text(null_color) + "; label them with COALESCE or filter them.");
  return ex;
}

// ---------------------------------------------------------------------------------------
// Axis ticks and number formats

double nice_step(double raw) {
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

struct Ticks {
  double lo = 0, hi = 1;  // the axis domain
  double step = 1;
  std::vector<double> values;
};

// Ticks at multiples of 1, 2 or 5 x 10^k; the domain is widened to the outer ticks.
// Halves are used where a difference could overflow (values near the double limit).
Ticks nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    const double d = lo != 0 ? std::abs(lo) * 0.5 : 1.0;
    lo -= d, hi += d;
  }
  const double center = lo / 2 + hi / 2;
  if (hi / 2 - lo / 2 < std::abs(center) * 1e-9) {  // too close to tell apart in a label
    const double d = std::abs(center) * 1e-6;
    lo = center - d, hi = center + d;
  }
  Ticks t;
  t.step = nice_step(hi / target - lo / target);
  const double first = std::floor(lo / t.step + 1e-9) * t.step;
  const double last = std::ceil(hi / t.step - 1e-9) * t.step;
  t.lo = std::isfinite(first) ? std::min(first, lo) : lo;
  t.hi = std::isfinite(last) ? std::max(last, hi) : hi;
  for (double k = std::ceil(t.lo / t.step - 1e-9); t.values.size() < 40; k += 1) {
    double v = k * t.step;
    if (!std::isfinite(v) || v > t.hi + t.step * 1e-9) break;
    if (std::abs(v) < t.step * 1e-9) v = 0;
    t.values.push_back(v);
  }
  return t;
}

std::string with_separators(const std::string& s) {
  const std::size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
  const std::size_t end = std::min(s.find('.'), s.size());
  std::string out = s.substr(0, start);
  for (std::size_t i = start; i < end; ++i) {
    if (i > start && (end - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out + s.substr(end);
}

std::string fixed(double v, int decimals) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(decimals, 0, 12), v);
  return buf;
}

std::string scientific(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*e", std::clamp(digits, 0, 6), v);
  std::string s = buf;  // 1.5e+07 -> 1.5e7, 2e-05 -> 2e-5
  const std::size_t e = s.find('e');
  std::string mantissa = s.substr(0, e), exponent = s.substr(e + 1);
  const bool negative = exponent[0] == '-';
  exponent = exponent.substr(1);
  exponent.erase(0, std::min(exponent.find_first_not_of('0'), exponent.size() - 1));
  return mantissa + "e" + (negative ? "-" : "") + exponent;
}

int decimals_for(double step) {
  return std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
}

// Tick labels share one format so that they line up: thousands separators below a million,
// M / B / T above, scientific notation for the very large and the very small.
std::vector<std::string> tick_labels(const Ticks& t) {
  double max_abs = 0;
  for (double v : t.values) max_abs = std::max(max_abs, std::abs(v));
  std::vector<std::string> out;
  for (double v : t.values) {
    if (v == 0 || max_abs == 0) {
      out.push_back("0");
    } else if (max_abs >= 1e15 || max_abs < 1e-3) {
      const int digits =
          static_cast<int>(std::floor(std::log10(max_abs)) - std::floor(std::log10(t.step)));
      out.push_back(scientific(v, digits));
    } else if (max_abs >= 1e6) {
      const double unit = max_abs >= 1e12 ? 1e12 : max_abs >= 1e9 ? 1e9 : 1e6;
      const char* suffix = unit == 1e12 ? "T" : unit == 1e9 ? "B" : "M";
      out.push_back(with_separators(fixed(v / unit, decimals_for(t.step / unit))) + suffix);
    } else {
      out.push_back(with_separators(fixed(v, decimals_for(t.step))));
    }
  }
  return out;
}

std::string trim_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// A single value (pie legend): 1,234.5 / 12.35M / 1.2e-7.
std::string value_text(double v) {
  const double a = std::abs(v);
  if (v == 0) return "0";
  if (a >= 1e15 || a < 1e-3) return scientific(v, 2);
  if (a >= 1e6) {
    const double unit = a >= 1e12 ? 1e12 : a >= 1e9 ? 1e9 : 1e6;
    return trim_zeros(fixed(v / unit, 2)) + (unit == 1e12 ? "T" : unit == 1e9 ? "B" : "M");
  }
  if (a < 1) return trim_zeros(fixed(v, 3));
  return with_separators(trim_zeros(fixed(v, 2)));
}

std::string percent_text(double pct) {
  if (pct > 0 && pct < 1) return "<1%";
  return fixed(pct, pct < 10 ? 1 : 0) + "%";
}

// Date ticks: years, months or days depending on the span.
struct DateTicks {
  std::vector<double> values;
  std::vector<std::string> labels;
};

DateTicks date_ticks(double lo, double hi, int target) {
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  DateTicks out;
  const double span = hi - lo;
  target = std::max(target, 2);
  const Civil a = civil_from_days(static_cast<long>(std::floor(lo)));
  const Civil b = civil_from_days(static_cast<long>(std::floor(hi)));
  if (span >= 365.0 * 3) {
    const long step = std::max(1L, static_cast<long>(nice_step(double(b.y - a.y) / target)));
    for (long y = (a.y + step - 1) / step * step; y <= b.y; y += step) {
      const double d = static_cast<double>(days_from_civil(y, 1, 1));
      if (d < lo || d > hi) continue;
      out.values.push_back(d);
      out.labels.push_back(std::to_string(y));
    }
  } else if (span >= 60) {
    const long m0 = a.y * 12 + (a.m - 1), m1 = b.y * 12 + (b.m - 1);
    long step = 12;
    for (long s : {1L, 2L, 3L, 6L, 12L})
      if ((m1 - m0) / s <= target) {
        step = s;
        break;
      }
    for (long m = (m0 + step - 1) / step * step; m <= m1; m += step) {
      const long y = m / 12;
      const unsigned month = static_cast<unsigned>(m % 12) + 1;
      const double d = static_cast<double>(days_from_civil(y, month, 1));
      if (d < lo || d > hi) continue;
      out.values.push_back(d);
      out.labels.push_back(std::string(kMonths[month - 1]) + " " + std::to_string(y));
    }
  } else {
    long step = 28;
    for (long s : {1L, 2L, 7L, 14L, 28L})
      if (span / static_cast<double>(s) <= target) {
        step = s;
        break;
      }
    for (long d = static_cast<long>(std::ceil(lo)); d <= hi && out.values.size() < 40; d += step) {
      const Civil c = civil_from_days(d);
      out.values.push_back(static_cast<double>(d));
      out.labels.push_back(std::to_string(c.y) + "-" + (c.m < 10 ? "0" : "") + std::to_string(c.m) +
                           "-" + (c.d < 10 ? "0" : "") + std::to_string(c.d));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Drawing

struct Rgb {
  double r, g, b;
};
constexpr Rgb hex(unsigned v) {
  return {((v >> 16) & 0xff) / 255.0, ((v >> 8) & 0xff) / 255.0, (v & 0xff) / 255.0};
}
// Okabe-Ito (colour-blind safe), then four colours of Paul Tol's muted scheme for pies with
// up to 12 slices.
constexpr Rgb kPalette[] = {hex(0x0072B2), hex(0xE69F00), hex(0x009E73), hex(0xD55E00),
                            hex(0x56B4E9), hex(0xCC79A7), hex(0xF0E442), hex(0x000000),
                            hex(0x999999), hex(0x882255), hex(0x44AA99), hex(0xDDCC77)};
constexpr std::size_t kPaletteSize = sizeof kPalette / sizeof kPalette[0];
const Rgb& palette(std::size_t i) { return kPalette[i % kPaletteSize]; }

void set_color(cairo_t* cr, const Rgb& c, double alpha = 1) {
  cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

// cairo refuses invalid UTF-8 (and then stops drawing), so text from the data is repaired:
// invalid bytes become U+FFFD and control characters spaces.
std::string clean_text(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool valid = n > 0 && i + n <= s.size() && !(n == 2 && c < 0xC2);
    for (std::size_t k = 1; valid && k < n; ++k)
      valid = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (valid && n == 3) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (valid && n == 4) {
      const auto c1 = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90) && c <= 0xF4;
    }
    if (!valid) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else if (n == 1 && (c < 0x20 || c == 0x7F)) {
      out += ' ';
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
    if (out.size() > 400) break;  // no label needs more
  }
  return out;
}

enum class Weight { kNormal, kBold };

void use_font(cairo_t* cr, double size, Weight weight = Weight::kNormal) {
  cairo_select_font_face(
      cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
      weight == Weight::kBold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

double line_height(cairo_t* cr) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  return fe.ascent + fe.descent;
}

// The longest prefix (in whole code points) that fits max_width with an ellipsis.
std::string fit_text(cairo_t* cr, const std::string& s, double max_width) {
  if (text_width(cr, s) <= max_width) return s;
  std::vector<std::size_t> cuts;  // byte offsets of code point starts
  for (std::size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) cuts.push_back(i);
  auto prefix = [&](std::size_t n) { return s.substr(0, n < cuts.size() ? cuts[n] : s.size()); };
  std::size_t lo = 0, hi = cuts.empty() ? 0 : cuts.size() - 1;  // code points kept
  while (lo < hi) {
    const std::size_t mid = (lo + hi + 1) / 2;
    if (text_width(cr, prefix(mid) + "\xE2\x80\xA6") <= max_width)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo == 0) return "\xE2\x80\xA6";
  const std::size_t end = cuts[lo];
  std::string out = s.substr(0, end);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out + "\xE2\x80\xA6";
}

enum class VAlign { kTop, kMiddle, kBaseline, kBottom };

// Draws text with its anchor at (x, y): h_align 0 left, 0.5 centre, 1 right; rotated by
// angle (radians) around the anchor.
void draw_text(cairo_t* cr, const std::string& s, double x, double y, double h_align,
               VAlign v_align, double angle = 0) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  const double dy = v_align == VAlign::kTop      ? fe.ascent
                    : v_align == VAlign::kMiddle ? (fe.ascent - fe.descent) / 2
                    : v_align == VAlign::kBottom ? -fe.descent
                                                 : 0;
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  cairo_move_to(cr, -text_width(cr, s) * h_align, dy);
  cairo_show_text(cr, s.c_str());
  cairo_restore(cr);
}

// Maps a value of [lo, hi] linearly onto [a, b] (pixels); halves avoid overflow.
struct Scale {
  double lo, hi, a, b;
  double operator()(double v) const { return a + (v / 2 - lo / 2) / (hi / 2 - lo / 2) * (b - a); }
};

double crisp(double v) { return std::round(v - 0.5) + 0.5; }

struct Layout {
  double s;  // scale of fonts and strokes relative to an 800 x 480 chart
  double pad, title_size, label_size, tick_size;
};

void draw_legend_entry(cairo_t* cr, const std::string& mark, const Rgb& color, double x, double y,
                       double s) {
  if (mark == "line") {
    set_color(cr, color);
    cairo_set_line_width(cr, 2.2 * s);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + 16 * s, y);
    cairo_stroke(cr);
    cairo_arc(cr, x + 8 * s, y, 3.2 * s, 0, 2 * std::numbers::pi);
    cairo_fill(cr);
  } else if (mark == "scatter") {
    set_color(cr, color);
    cairo_arc(cr, x + 8 * s, y, 4.5 * s, 0, 2 * std::numbers::pi);
    cairo_fill(cr);
  } else {
    set_color(cr, color);
    cairo_rectangle(cr, x + 2 * s, y - 6 * s, 12 * s, 12 * s);
    cairo_fill(cr);
  }
}

void draw_pie(cairo_t* cr, const ChartSpec& spec, const ChartData& data, double width,
              double height, double top, const Layout& L) {
  const double s = L.s;
  const ChartSeries& series = data.series.at(0);
  double total = 0;
  for (double v : series.y) total += v;
  // Legend on the right: swatch, label and percentage.
  use_font(cr, L.label_size);
  std::vector<std::string> labels;
  double legend_text_w = 0;
  for (std::size_t i = 0; i < series.y.size(); ++i) {
    const std::string pct = percent_text(100 * series.y[i] / total);
    const std::string name = fit_text(cr, clean_text(series.x[i]), width * 0.28);
    labels.push_back(name + "  " + pct + " (" + value_text(series.y[i]) + ")");
    legend_text_w = std::max(legend_text_w, text_width(cr, labels.back()));
  }
  const double legend_w = std::min(legend_text_w, width * 0.42) + 24 * s + L.pad;
  const double row_h = std::max(L.label_size * 1.6, 16 * s);
  const double x0 = L.pad, x1 = width - L.pad - legend_w, y0 = top, y1 = height - L.pad;
  const double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const double r = std::max(10.0, std::min(x1 - x0, y1 - y0) / 2 - 6 * s);
  double angle = -std::numbers::pi / 2;
  for (std::size_t i = 0; i < series.y.size(); ++i) {
    const double a = 2 * std::numbers::pi * series.y[i] / total;
    if (a > 0) {
      cairo_move_to(cr, cx, cy);
      cairo_arc(cr, cx, cy, r, angle, angle + a);
      cairo_close_path(cr);
      set_color(cr, palette(i));
      cairo_fill_preserve(cr);
      cairo_set_source_rgb(cr, 1, 1, 1);
      cairo_set_line_width(cr, 1.5 * s);
      cairo_stroke(cr);
    }
    if (a > 0.25) {  // room for the percentage inside the slice
      const Rgb& c = palette(i);
      const double luminance = 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b;
      if (luminance < 0.5)
        cairo_set_source_rgb(cr, 1, 1, 1);
      else
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
      use_font(cr, L.label_size, Weight::kBold);
      const double mid = angle + a / 2;
      draw_text(cr, percent_text(100 * series.y[i] / total), cx + 0.66 * r * std::cos(mid),
                cy + 0.66 * r * std::sin(mid), 0.5, VAlign::kMiddle);
    }
    angle += a;
  }
  // Legend, vertically centred beside the pie, headed by the value's title.
  double ly = cy - row_h * (static_cast<double>(labels.size()) - 1) / 2;
  const double lx = width - L.pad - legend_w + L.pad;
  const std::string head = clean_text(spec.y_title);
  if (!head.empty()) {
    use_font(cr, L.label_size, Weight::kBold);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    ly += row_h / 2;
    draw_text(cr, fit_text(cr, head, legend_w - L.pad), lx, ly - row_h, 0, VAlign::kMiddle);
  }
  use_font(cr, L.label_size);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    draw_legend_entry(cr, "bar", palette(i), lx, ly, s);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    draw_text(cr, fit_text(cr, labels[i], legend_w - L.pad - 24 * s), lx + 22 * s, ly, 0,
              VAlign::kMiddle);
    ly += row_h;
  }
}

void draw_chart(cairo_t* cr, const ChartSpec& spec, const ChartData& data, double width,
                double height) {
  const double s = std::clamp(std::min(width / 800, height / 480), 0.7, 3.0);
  const Layout L{s, 14 * s, 17 * s, 12.5 * s, 11.5 * s};
  const double pi = std::numbers::pi;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);

  // Title.
  double top = L.pad;
  if (const std::string title = clean_text(spec.title); !title.empty()) {
    use_font(cr, L.title_size, Weight::kBold);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    draw_text(cr, fit_text(cr, title, width - 2 * L.pad), width / 2, top, 0.5, VAlign::kTop);
    top += line_height(cr) + 12 * s;
  }
  if (spec.mark == "pie") {
    draw_pie(cr, spec, data, width, height, top, L);
    return;
  }

  // Legend width (several series only).
  const bool legend = data.series.size() > 1;
  std::vector<std::string> names;
  double legend_w = 0;
  if (legend) {
    use_font(cr, L.label_size);
    double w = 0;
    for (const auto& series : data.series) {
      names.push_back(fit_text(cr, clean_text(series.name), width * 0.22));
      w = std::max(w, text_width(cr, names.back()));
    }
    legend_w = w + 24 * s + L.pad;
  }

  // Value axis ticks; bars always start from zero.
  double y_min = INFINITY, y_max = -INFINITY;
  for (const auto& series : data.series)
    for (double v : series.y) y_min = std::min(y_min, v), y_max = std::max(y_max, v);
  if (!(y_min <= y_max)) y_min = 0, y_max = 1;
  if (spec.mark == "bar") y_min = std::min(y_min, 0.0), y_max = std::max(y_max, 0.0);
  const int y_target = std::clamp(static_cast<int>((height - top - 80 * s) / (48 * s)), 2, 8);
  const Ticks y_ticks = nice_ticks(y_min, y_max, y_target);
  const std::vector<std::string> y_labels = tick_labels(y_ticks);
  use_font(cr, L.tick_size);
  double y_label_w = 0;
  for (const auto& l : y_labels) y_label_w = std::max(y_label_w, text_width(cr, l));
  const double tick_h = line_height(cr);
  use_font(cr, L.label_size);
  const double title_h = line_height(cr);
  const std::string y_title = clean_text(spec.y_title), x_title = clean_text(spec.x_title);

  const double x0 = L.pad + (y_title.empty() ? 0 : title_h + 8 * s) + y_label_w + 8 * s;
  // Room on the right for the legend, or for half of the last x tick label.
  const bool categorical =
      spec.mark == "bar" || (spec.x_type != "quantitative" && spec.x_type != "temporal");
  const double x1 = width - L.pad - std::max(legend_w, categorical ? 8 * s : 30 * s);
  const double plot_w = std::max(x1 - x0, 10.0);

  // x axis: categories (bands) or a continuous scale.
  std::vector<std::string> categories;
  std::vector<double> x_tick_pos;  // continuous: tick values
  std::vector<std::string> x_tick_labels;
  double x_lo = 0, x_hi = 1;
  bool rotate = false;
  std::size_t every = 1;
  double x_label_h = tick_h;
  use_font(cr, L.tick_size);
  if (categorical) {
    for (const auto& series : data.series)
      for (std::size_t i = 0; i < series.x.size(); ++i) {
        const auto index = static_cast<std::size_t>(series.x_num[i]);
        if (index >= categories.size()) categories.resize(index + 1);
        categories[index] = series.x[i];
      }
    const double band = plot_w / static_cast<double>(std::max<std::size_t>(categories.size(), 1));
    double max_w = 0;
    for (auto& c : categories) {
      c = fit_text(cr, clean_text(c), 170 * s);
      max_w = std::max(max_w, text_width(cr, c));
    }
    if (max_w > band * 0.92) {
      rotate = true;
      // Each label ends at its tick and runs down-left: it may not cross the left edge.
      const double allowed = height * 0.24 / std::sin(pi / 4);
      max_w = 0;
      for (std::size_t i = 0; i < categories.size(); ++i) {
        const double px = x0 + band * (static_cast<double>(i) + 0.5);
        const double room = (px - 4 * s) / std::cos(pi / 4) - tick_h;
        categories[i] = fit_text(cr, categories[i], std::min(allowed, std::max(room, 0.0)));
        max_w = std::max(max_w, text_width(cr, categories[i]));
      }
      x_label_h = (max_w + tick_h) * std::sin(pi / 4);
      every = static_cast<std::size_t>(std::ceil(tick_h * 1.15 / (band * std::sin(pi / 4))));
      every = std::max<std::size_t>(every, 1);
    }
  } else {
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& series : data.series)
      for (double v : series.x_num) lo = std::min(lo, v), hi = std::max(hi, v);
    if (!(lo <= hi)) lo = 0, hi = 1;
    // Whole numbers from 1000 to 3000 are years: no thousands separator, no fractions.
    bool years = spec.x_type == "quantitative";
    for (const auto& series : data.series)
      for (double v : series.x_num) years = years && v == std::round(v) && v >= 1000 && v <= 3000;
    for (int target = std::clamp(static_cast<int>(plot_w / (95 * s)), 2, 10); target >= 1;
         --target) {
      x_tick_pos.clear(), x_tick_labels.clear();
      if (spec.x_type == "temporal") {
        if (hi - lo < 1) lo -= 1, hi += 1;
        const double margin = (hi - lo) * 0.03;
        x_lo = lo - margin, x_hi = hi + margin;
        DateTicks d = date_ticks(x_lo, x_hi, target);
        x_tick_pos = std::move(d.values), x_tick_labels = std::move(d.labels);
      } else {
        const Ticks t = nice_ticks(lo, hi, target);
        x_lo = t.lo, x_hi = t.hi;
        x_tick_pos = t.values, x_tick_labels = tick_labels(t);
        if (years) {
          x_tick_pos.clear(), x_tick_labels.clear();
          for (double v : t.values)
            if (v == std::round(v)) x_tick_pos.push_back(v), x_tick_labels.push_back(fixed(v, 0));
        }
      }
      double widest = 0;
      for (const auto& l : x_tick_labels) widest = std::max(widest, text_width(cr, l));
      if (widest * 1.3 * static_cast<double>(x_tick_labels.size()) <= plot_w) break;
    }
  }

  const double tick_len = 5 * s;
  const double y1 =
      height - L.pad - (x_title.empty() ? 0 : title_h + 6 * s) - x_label_h - tick_len - 4 * s;
  const double y0 = top + tick_h / 2;
  const double plot_h = std::max(y1 - y0, 10.0);
  const Scale ys{y_ticks.lo, y_ticks.hi, y0 + plot_h, y0};
  const double band = plot_w / static_cast<double>(std::max<std::size_t>(categories.size(), 1));
  auto x_pos = [&](double x_num) {
    return categorical ? x0 + band * (x_num + 0.5) : Scale{x_lo, x_hi, x0, x0 + plot_w}(x_num);
  };

  // Grid lines and the zero line.
  cairo_set_line_width(cr, 1 * s);
  for (double v : y_ticks.values) {
    const double py = crisp(ys(v));
    if (v == 0 && y_ticks.lo < 0)
      cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
    else
      cairo_set_source_rgb(cr, 0.89, 0.89, 0.89);
    cairo_move_to(cr, x0, py);
    cairo_line_to(cr, x0 + plot_w, py);
    cairo_stroke(cr);
  }

  // Data, clipped to the plot area (with room for markers on its edges).
  cairo_save(cr);
  cairo_rectangle(cr, x0 - 8 * s, y0 - 8 * s, plot_w + 16 * s, plot_h + 16 * s);
  cairo_clip(cr);
  const std::size_t n_series = data.series.size();
  if (spec.mark == "bar") {
    const double group_w = band * 0.8;
    const double bar_w = group_w / static_cast<double>(n_series);
    const double base = ys(0);
    for (std::size_t si = 0; si < n_series; ++si) {
      const ChartSeries& series = data.series[si];
      set_color(cr, palette(si));
      for (std::size_t i = 0; i < series.y.size(); ++i) {
        const double left =
            x0 + band * (series.x_num[i] + 0.5) - group_w / 2 + bar_w * static_cast<double>(si);
        double top_y = ys(series.y[i]);
        if (series.y[i] != 0 && std::abs(top_y - base) < 1)
          top_y = base + (series.y[i] > 0 ? -1 : 1);
        const double gap = n_series > 1 ? std::min(bar_w * 0.08, 2 * s) : 0;
        cairo_rectangle(cr, left + gap / 2, std::min(base, top_y), std::max(bar_w - gap, 0.5),
                        std::abs(base - top_y));
        cairo_fill(cr);
      }
    }
  } else {
    for (std::size_t si = 0; si < n_series; ++si) {
      const ChartSeries& series = data.series[si];
      std::vector<std::size_t> order(series.y.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return series.x_num[a] < series.x_num[b];
      });
      const double n = static_cast<double>(order.size());
      if (spec.mark == "line") {
        set_color(cr, palette(si));
        cairo_set_line_width(cr, 2.2 * s);
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
        for (std::size_t k = 0; k < order.size(); ++k) {
          const double px = x_pos(series.x_num[order[k]]), py = ys(series.y[order[k]]);
          if (k == 0)
            cairo_move_to(cr, px, py);
          else
            cairo_line_to(cr, px, py);
        }
        cairo_stroke(cr);
      }
      const double radius = spec.mark == "line" ? (n <= 60    ? 3.4
                                                   : n <= 200 ? 2.0
                                                              : 1.2) *
                                                      s
                                                : (n <= 200 ? 4.5 : 3.0) * s;
      for (std::size_t i : order) {
        cairo_arc(cr, x_pos(series.x_num[i]), ys(series.y[i]), radius, 0, 2 * pi);
        set_color(cr, palette(si));
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_set_line_width(cr, 0.9 * s);
        cairo_stroke(cr);
      }
    }
  }
  cairo_restore(cr);

  // Axes, ticks and tick labels.
  cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
  cairo_set_line_width(cr, 1 * s);
  const double axis_y = crisp(y0 + plot_h), axis_x = crisp(x0);
  cairo_move_to(cr, axis_x, y0);
  cairo_line_to(cr, axis_x, axis_y);
  cairo_line_to(cr, x0 + plot_w, axis_y);
  cairo_stroke(cr);
  use_font(cr, L.tick_size);
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  for (std::size_t i = 0; i < y_ticks.values.size(); ++i)
    draw_text(cr, y_labels[i], x0 - 7 * s, ys(y_ticks.values[i]), 1, VAlign::kMiddle);
  const double label_y = axis_y + tick_len + 3 * s;
  if (categorical) {
    for (std::size_t i = 0; i < categories.size(); i += every) {
      const double px = x0 + band * (static_cast<double>(i) + 0.5);
      cairo_move_to(cr, crisp(px), axis_y);
      cairo_line_to(cr, crisp(px), axis_y + tick_len);
      cairo_stroke(cr);
      if (rotate)
        draw_text(cr, categories[i], px + tick_h * 0.3, label_y, 1, VAlign::kTop, -pi / 4);
      else
        draw_text(cr, categories[i], px, label_y, 0.5, VAlign::kTop);
    }
  } else {
    const Scale xs{x_lo, x_hi, x0, x0 + plot_w};
    for (std::size_t i = 0; i < x_tick_pos.size(); ++i) {
      const double px = xs(x_tick_pos[i]);
      cairo_move_to(cr, crisp(px), axis_y);
      cairo_line_to(cr, crisp(px), axis_y + tick_len);
      cairo_stroke(cr);
      draw_text(cr, x_tick_labels[i], px, label_y, 0.5, VAlign::kTop);
    }
  }

  // Axis titles.
  use_font(cr, L.label_size);
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  if (!x_title.empty())
    draw_text(cr, fit_text(cr, x_title, plot_w), x0 + plot_w / 2, height - L.pad, 0.5,
              VAlign::kBottom);
  if (!y_title.empty())
    draw_text(cr, fit_text(cr, y_title, plot_h), L.pad, y0 + plot_h / 2, 0.5, VAlign::kTop,
              -pi / 2);

  // Legend.
  if (legend) {
    const double row_h = std::max(L.label_size * 1.6, 16 * s);
    const double lx = x0 + plot_w + L.pad;
    double ly = y0 + row_h / 2;
    for (std::size_t i = 0; i < names.size(); ++i) {
      draw_legend_entry(cr, spec.mark, palette(i), lx, ly, s);
      cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
      draw_text(cr, names[i], lx + 22 * s, ly, 0, VAlign::kMiddle);
      ly += row_h;
    }
  }
}

cairo_status_t append_to_string(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

struct SurfaceDeleter {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct ContextDeleter {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
using Surface = std::unique_ptr<cairo_surface_t, SurfaceDeleter>;
using Context = std::unique_ptr<cairo_t, ContextDeleter>;

void draw_on(cairo_surface_t* surface, const ChartSpec& spec, const ChartData& data, int width,
             int height) {
  Context cr(cairo_create(surface));
  draw_chart(cr.get(), spec, data, width, height);
  if (cairo_status(cr.get()) != CAIRO_STATUS_SUCCESS)
    throw ChartError(std::string("drawing failed: ") +
                     cairo_status_to_string(cairo_status(cr.get())));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Public functions

ChartSpec parse_chart_spec(const json& spec) {
  if (!spec.is_object()) throw ChartError("spec: must be a JSON object");
  for (const auto& [key, value] : spec.items()) {
    static const std::set<std::string> kAccepted = {
        "mark",   "title",  "encoding", "$schema", "description", "width",
        "height", "config", "autosize", "padding", "background"};
    if (kAccepted.count(key) != 0) continue;
    if (key == "data")
      throw ChartError("data: not accepted; the chart plots the query result, leave data out");
    if (key == "transform")
      throw ChartError("transform: not supported; compute it in the SQL query");
    throw ChartError(key + ": not supported (accepted: mark, title, encoding)");
  }
  ChartSpec out;
  out.mark = parse_mark(spec);
  out.title = parse_title(spec);
  const json* encoding = member(spec, "encoding");
  if (encoding == nullptr) throw ChartError("encoding: missing");
  if (!encoding->is_object()) throw ChartError("encoding: must be an object");
  for (const auto& [key, value] : encoding->items()) {
    if (key == "x" || key == "y" || key == "color" || key == "theta" || key == "tooltip") continue;
    throw ChartError("encoding." + key + ": not supported (channels: x, y, color, theta)");
  }
  if (out.mark == "pie") {
    const FieldDef theta = parse_field_def(*encoding, "theta", false);
    const FieldDef y = parse_field_def(*encoding, "y", false);
    const FieldDef& value = theta.field.empty() ? y : theta;
    if (value.field.empty()) throw ChartError("encoding.theta.field: missing");
    const FieldDef color = parse_field_def(*encoding, "color", false);
    const FieldDef x = parse_field_def(*encoding, "x", false);
    const FieldDef& label = color.field.empty() ? x : color;
    if (label.field.empty())
      throw ChartError("encoding.color.field: missing (a pie names its slices with color)");
    out.x_field = label.field;
    out.x_type = "nominal";
    out.y_field = value.field;
    out.y_title = value.title;
    return out;
  }
  if (member(*encoding, "theta") != nullptr)
    throw ChartError("encoding.theta: only a pie uses theta; use encoding.y");
  const FieldDef x = parse_field_def(*encoding, "x", true);
  const FieldDef y = parse_field_def(*encoding, "y", true);
  if (!y.type.empty() && y.type != "quantitative")
    throw ChartError("encoding.y.type: '" + y.type + "' is not supported; y must be quantitative");
  const FieldDef color = parse_field_def(*encoding, "color", false);
  out.x_field = x.field;
  out.x_type = x.type;  // empty: inferred from the data
  out.x_title = x.title;
  out.y_field = y.field;
  out.y_title = y.title;
  out.color_field = color.field;
  return out;
}

json to_json(const ChartSpec& spec) {
  json out = {{"mark", spec.mark}};
  if (!spec.title.empty()) out["title"] = spec.title;
  json encoding = json::object();
  if (spec.mark == "pie") {
    encoding["theta"] = {{"field", spec.y_field}, {"type", "quantitative"}};
    if (!spec.y_title.empty()) encoding["theta"]["title"] = spec.y_title;
    encoding["color"] = {{"field", spec.x_field}, {"type", "nominal"}};
  } else {
    encoding["x"] = {{"field", spec.x_field}};
    if (!spec.x_type.empty()) encoding["x"]["type"] = spec.x_type;
    if (!spec.x_title.empty()) encoding["x"]["title"] = spec.x_title;
    encoding["y"] = {{"field", spec.y_field}, {"type", "quantitative"}};
    if (!spec.y_title.empty()) encoding["y"]["title"] = spec.y_title;
    if (!spec.color_field.empty())
      encoding["color"] = {{"field", spec.color_field}, {"type", "nominal"}};
  }
  out["encoding"] = std::move(encoding);
  return out;
}

ChartData chart_data(const ChartSpec& spec, const QueryResult& result) {
  Extraction ex = extract(spec, result);
  if (!ex.problems.empty()) throw ChartError(ex.problems.front());
  return std::move(ex.data);
}

FigureCheck check_chart(const ChartSpec& spec, const QueryResult& result) {
  FigureCheck check;
  auto& problems = check.problems;
  const bool pie = spec.mark == "pie";
  auto blank = [](const std::string& s) {
    return s.find_first_not_of(" \t\r\n") == std::string::npos;
  };
  if (blank(spec.title)) problems.push_back("The chart has no title: add \"title\".");
  if (!pie && blank(spec.x_title))
    problems.push_back("The x axis has no label: add encoding.x.title.");
  if (!pie && blank(spec.y_title))
    problems.push_back(
        "The y axis has no label: add encoding.y.title with the unit, e.g. \"Revenue (USD)\".");
  if (result.rows.empty())
    problems.push_back(
        "The query returned no rows, so there is nothing to plot: fix the query first.");
  if (result.truncated)
    problems.push_back(
        "The query result was cut at the row limit, so the chart would not show all of it: "
        "aggregate or filter in the query.");

  Extraction ex = extract(spec, result);
  problems.insert(problems.end(), ex.problems.begin(), ex.problems.end());
  const auto& series = ex.data.series;
  if (series.size() > kMaxSeries)
    problems.push_back("The chart has " + std::to_string(series.size()) + " series (values of '" +
                       spec.color_field + "'), too many to tell apart: keep at most " +
                       std::to_string(kMaxSeries) + " (e.g. the top ones plus 'Other').");
  if (pie && !series.empty()) {
    const ChartSeries& slices = series.front();
    std::vector<std::size_t> negative;
    double total = 0;
    for (std::size_t i = 0; i < slices.y.size(); ++i) {
      if (slices.y[i] < 0) negative.push_back(ex.rows_of_series[0][i]);
      total += slices.y[i];
    }
    if (!negative.empty())
      problems.push_back("A pie cannot show negative values (" + rows_text(negative) +
                         "): use a bar chart.");
    else if (!(total > 0))
      problems.push_back("The pie's values sum to zero: there is nothing to divide.");
    if (slices.y.size() > kMaxSlices)
      problems.push_back("A pie with " + std::to_string(slices.y.size()) +
                         " slices is unreadable: keep at most " + std::to_string(kMaxSlices) +
                         " (group the rest as 'Other') or use a bar chart.");
  }

  // Every row drawn exactly once: two rows at the same position of one series hide each other
  // (a bar drawn over a bar, a line that doubles back, two slices with one name).
  if (spec.mark != "scatter") {
    std::vector<std::string> duplicates;
    std::size_t duplicate_count = 0;
    for (std::size_t si = 0; si < series.size(); ++si) {
      // Positions: the category, or the number for a continuous x ("2024-01" = "2024-01-01").
      const bool continuous = ex.continuous_x;
      std::map<std::string, std::size_t> first_row;
      for (std::size_t i = 0; i < series[si].x.size(); ++i) {
        const std::size_t row = ex.rows_of_series[si][i];
        auto [it, added] =
            first_row.emplace(continuous ? number_text(series[si].x_num[i]) : series[si].x[i], row);
        if (added) continue;
        if (++duplicate_count > 2) continue;
        std::string where =
            pie ? "the slice '" + series[si].x[i] + "'"
                : "x '" + series[si].x[i] + "'" +
                      (spec.color_field.empty() ? std::string()
                                                : " in series '" + series[si].name + "'");
        duplicates.push_back("rows " + std::to_string(it->second + 1) + " and " +
                             std::to_string(row + 1) + " both draw " + where);
      }
    }
    if (duplicate_count > 0) {
      std::string text;
      for (const auto& d : duplicates) text += (text.empty() ? "" : "; ") + d;
      if (duplicate_count > duplicates.size())
        text += " (and " + std::to_string(duplicate_count - duplicates.size()) + " more)";
      problems.push_back("Rows are hidden: " + text +
                         ". Aggregate them in the query (GROUP BY) or split them with a color "
                         "field.");
    }
  }
  // The drawing must account for every row once with its values.
  if (ex.problems.empty() && !result.rows.empty()) {
    std::vector<int> drawn(result.rows.size(), 0);
    bool same = true;
    const auto y_col = std::find(result.columns.begin(), result.columns.end(), spec.y_field) -
                       result.columns.begin();
    for (std::size_t si = 0; si < series.size(); ++si)
      for (std::size_t i = 0; i < series[si].y.size(); ++i) {
        const std::size_t row = ex.rows_of_series[si][i];
        ++drawn[row];
        same = same &&
               result.rows[row][static_cast<std::size_t>(y_col)].get<double>() == series[si].y[i];
      }
    if (!same || std::any_of(drawn.begin(), drawn.end(), [](int n) { return n != 1; }))
      problems.push_back("The data drawn differs from the query result; simplify the chart.");
  }
  check.ok = problems.empty();
  return check;
}

RenderedChart render_chart(const ChartSpec& spec, const QueryResult& result, int width,
                           int height) {
  if (width < 200 || height < 150 || width > 8000 || height > 8000)
    throw ChartError("chart size " + std::to_string(width) + "x" + std::to_string(height) +
                     " is outside 200x150 .. 8000x8000");
  const FigureCheck check = check_chart(spec, result);
  if (!check.ok) {
    std::string text;
    for (const auto& p : check.problems) text += (text.empty() ? "" : " ") + p;
    throw ChartError(text);
  }
  Extraction ex = extract(spec, result);
  ChartSpec drawn = spec;
  drawn.x_type = ex.x_type;
  RenderedChart out;
  out.data = std::move(ex.data);
  {
    Surface svg(cairo_svg_surface_create_for_stream(append_to_string, &out.svg, width, height));
    draw_on(svg.get(), drawn, out.data, width, height);
    cairo_surface_finish(svg.get());
    if (cairo_surface_status(svg.get()) != CAIRO_STATUS_SUCCESS)
      throw ChartError("SVG output failed");
  }
  Surface image(cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height));
  draw_on(image.get(), drawn, out.data, width, height);
  cairo_surface_flush(image.get());
  if (cairo_surface_write_to_png_stream(image.get(), append_to_string, &out.png) !=
      CAIRO_STATUS_SUCCESS)
    throw ChartError("PNG output failed");
  return out;
}

}  // namespace kdr::hka
