// Charts: the spec subset is parsed or refused naming the field, the data drawn is the query
// result (each row once), the figure check names every problem, and rendering yields a safe
// SVG and a PNG of the requested size with the data visible in the palette's colours.
#include "hka/chart/chart.h"

#include <cairo.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

// fontconfig (loaded by cairo for text) keeps parsed configuration that LeakSanitizer reports
// as leaked at exit; it is allocated once per process and is not ours to free.
extern "C" const char* __lsan_default_suppressions() { return "leak:libfontconfig.so\n"; }

namespace kdr::hka {
namespace {

using nlohmann::json;

QueryResult make_result(std::vector<std::string> columns, const json& rows) {
  QueryResult r;
  r.columns = std::move(columns);
  for (const auto& row : rows) r.rows.push_back(row);
  return r;
}

json bar_spec() {
  return json::parse(R"js({"mark": "bar", "title": "Sales by region",
    "encoding": {"x": {"field": "region", "type": "nominal", "title": "Region"},
                 "y": {"field": "sales", "type": "quantitative", "title": "Sales (USD)"}}})js");
}

QueryResult region_sales() {
  return make_result({"region", "sales"},
                     json::parse(R"([["North", 120], ["South", 80.5], ["East", 42],
                                     ["West", 99]])"));
}

// prefix followed by n ("g3"); GCC 12 warns falsely (-Wrestrict) on "g" + std::to_string(n).
std::string numbered(const char* prefix, unsigned long n) {
  std::string out = prefix;
  out += std::to_string(n);
  return out;
}

// Random generator whose seed is printed, so a failure can be replayed.
std::mt19937 seeded_rng() {
  const unsigned seed = std::random_device{}();
  std::cout << "[ seed     ] " << seed << "\n";
  return std::mt19937(seed);
}

std::string parse_error(const json& spec) {
  try {
    parse_chart_spec(spec);
  } catch (const ChartError& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << spec.dump();
  return "";
}

std::string problems_text(const FigureCheck& check) {
  std::string out;
  for (const auto& p : check.problems) out += p + "\n";
  return out;
}

bool has_problem(const FigureCheck& check, const std::string& needle) {
  for (const auto& p : check.problems)
    if (p.find(needle) != std::string::npos) return true;
  return false;
}

// ---------------------------------------------------------------------------------------
// Parsing

TEST(ChartSpecTest, ParsesBarWithTitles) {
  const ChartSpec s = parse_chart_spec(bar_spec());
  EXPECT_EQ(s.mark, "bar");
  EXPECT_EQ(s.title, "Sales by region");
  EXPECT_EQ(s.x_field, "region");
  EXPECT_EQ(s.x_type, "nominal");
  EXPECT_EQ(s.x_title, "Region");
  EXPECT_EQ(s.y_field, "sales");
  EXPECT_EQ(s.y_title, "Sales (USD)");
  EXPECT_EQ(s.color_field, "");
}

TEST(ChartSpecTest, AcceptsMarkObjectAndAxisTitleAndLeavesXTypeToTheData) {
  const ChartSpec s = parse_chart_spec(json::parse(R"js({"mark": {"type": "line"}, "title": "T",
    "encoding": {"x": {"field": "m", "axis": {"title": "Month"}},
                 "y": {"field": "v", "axis": {"title": "Value (kg)"}},
                 "color": {"field": "c"}}})js"));
  EXPECT_EQ(s.mark, "line");
  EXPECT_EQ(s.x_type, "");
  EXPECT_EQ(s.x_title, "Month");
  EXPECT_EQ(s.y_title, "Value (kg)");
  EXPECT_EQ(s.color_field, "c");
}

TEST(ChartSpecTest, PieTakesThetaAndColor) {
  const ChartSpec s = parse_chart_spec(json::parse(R"({"mark": "pie", "title": "Share",
    "encoding": {"theta": {"field": "n", "title": "Orders"}, "color": {"field": "kind"}}})"));
  EXPECT_EQ(s.mark, "pie");
  EXPECT_EQ(s.x_field, "kind");
  EXPECT_EQ(s.y_field, "n");
  EXPECT_EQ(s.y_title, "Orders");
  EXPECT_EQ(s.color_field, "");
  EXPECT_EQ(s.x_title, "");
}

TEST(ChartSpecTest, PieFallsBackToYAndX) {
  const ChartSpec s = parse_chart_spec(
      json::parse(R"({"mark": "pie", "encoding": {"y": {"field": "n"}, "x": {"field": "kind"}}})"));
  EXPECT_EQ(s.x_field, "kind");
  EXPECT_EQ(s.y_field, "n");
}

TEST(ChartSpecTest, RoundTripsThroughJson) {
  auto rng = seeded_rng();
  const char* marks[] = {"bar", "line", "pie", "scatter"};
  const char* types[] = {"nominal", "ordinal", "quantitative", "temporal", ""};
  for (int i = 0; i < 50; ++i) {
    ChartSpec s;
    s.mark = marks[rng() % 4];
    s.title = numbered("title ", rng() % 100);
    s.x_field = numbered("x", rng() % 10);
    s.y_field = numbered("y", rng() % 10);
    s.y_title = rng() % 2 ? "Value (USD)" : "";
    if (s.mark == "pie") {
      s.x_type = "nominal";
    } else {
      s.x_type = types[rng() % 5];
      s.x_title = rng() % 2 ? "X axis" : "";
      s.color_field = rng() % 2 ? "group" : "";
    }
    const ChartSpec back = parse_chart_spec(to_json(s));
    EXPECT_EQ(back.mark, s.mark);
    EXPECT_EQ(back.title, s.title);
    EXPECT_EQ(back.x_field, s.x_field);
    EXPECT_EQ(back.x_type, s.x_type);
    EXPECT_EQ(back.x_title, s.x_title);
    EXPECT_EQ(back.y_field, s.y_field);
    EXPECT_EQ(back.y_title, s.y_title);
    EXPECT_EQ(back.color_field, s.color_field);
  }
}

TEST(ChartSpecTest, ErrorsNameTheField) {
  struct Case {
    const char* spec;
    const char* error;
  };
  const Case cases[] = {
      {R"([1, 2])", "spec: must be a JSON object"},
      {R"({"encoding": {}})", "mark: missing"},
      {R"({"mark": "area", "encoding": {}})", "mark: 'area' is not one of bar, line, pie, scatter"},
      {R"({"mark": 3, "encoding": {}})", "mark: must be a string"},
      {R"({"mark": {"color": "red"}, "encoding": {}})", "mark.type: missing"},
      {R"({"mark": "bar", "title": 5, "encoding": {}})", "title: must be a string"},
      {R"({"mark": "bar"})", "encoding: missing"},
      {R"({"mark": "bar", "encoding": []})", "encoding: must be an object"},
      {R"({"mark": "bar", "encoding": {"y": {"field": "v"}}})", "encoding.x.field: missing"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k"}}})", "encoding.y.field: missing"},
      {R"({"mark": "bar", "encoding": {"x": {"type": "nominal"}, "y": {"field": "v"}}})",
       "encoding.x.field: missing"},
      {R"({"mark": "bar", "encoding": {"x": {"field": 1}, "y": {"field": "v"}}})",
       "encoding.x.field: must be a string"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k", "type": "geo"}, "y": {"field": "v"}}})",
       "encoding.x.type: 'geo' is not one of"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k"}, "y": {"field": "v", "type": "nominal"}}})",
       "encoding.y.type"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k", "title": 7}, "y": {"field": "v"}}})",
       "encoding.x.title: must be a string"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k"}, "y": {"field": "v", "aggregate": "sum"}}})",
       "encoding.y.aggregate: not supported"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k"}, "y": {"field": "v"}, "size": {"field": "s"}}})",
       "encoding.size: not supported"},
      {R"({"mark": "bar", "encoding": {"x": {"field": "k"}, "y": {"field": "v"}, "color": {}}})",
       "encoding.color.field: missing"},
      {R"({"mark": "bar", "data": {"values": []}, "encoding": {}})", "data: not accepted"},
      {R"({"mark": "bar", "transform": [], "encoding": {}})", "transform: not supported"},
      {R"({"mark": "pie", "encoding": {"color": {"field": "k"}}})",
       "encoding.theta.field: missing"},
      {R"({"mark": "pie", "encoding": {"theta": {"field": "v"}}})",
       "encoding.color.field: missing"},
      {R"({"mark": "line", "encoding": {"theta": {"field": "v"}, "x": {"field": "k"}, "y": {"field": "v"}}})",
       "encoding.theta"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.spec);
    const std::string error = parse_error(json::parse(c.spec));
    EXPECT_EQ(error.rfind(c.error, 0), 0u) << error;
  }
}

// ---------------------------------------------------------------------------------------
// Data

TEST(ChartDataTest, SeriesInOrderOfFirstAppearance) {
  ChartSpec s = parse_chart_spec(json::parse(R"({"mark": "line", "title": "T",
    "encoding": {"x": {"field": "m", "title": "M"}, "y": {"field": "v", "title": "V"},
                 "color": {"field": "c"}}})"));
  const QueryResult r = make_result(
      {"m", "c", "v"},
      json::parse(R"([["Jan", "b", 1], ["Jan", "a", 2], ["Feb", "b", 3], ["Feb", "c", 4]])"));
  const ChartData d = chart_data(s, r);
  ASSERT_EQ(d.series.size(), 3u);
  EXPECT_EQ(d.series[0].name, "b");
  EXPECT_EQ(d.series[1].name, "a");
  EXPECT_EQ(d.series[2].name, "c");
  EXPECT_EQ(d.series[0].x, (std::vector<std::string>{"Jan", "Feb"}));
  EXPECT_EQ(d.series[0].y, (std::vector<double>{1, 3}));
  // Categories are indexed across series: Feb is category 1 in every series.
  EXPECT_EQ(d.series[0].x_num, (std::vector<double>{0, 1}));
  EXPECT_EQ(d.series[2].x_num, (std::vector<double>{1}));
}

TEST(ChartDataTest, RandomRowsLandInTheirSeriesInOrder) {
  auto rng = seeded_rng();
  ChartSpec s;
  s.mark = "line", s.title = "T", s.x_field = "x", s.x_type = "quantitative", s.x_title = "X";
  s.y_field = "y", s.y_title = "Y", s.color_field = "g";
  QueryResult r;
  r.columns = {"g", "x", "y"};
  std::vector<std::string> expected_order;
  std::vector<std::vector<double>> expected_y;
  for (int i = 0; i < 200; ++i) {
    const std::string g = numbered("g", rng() % 7);
    const double y = std::uniform_real_distribution<double>(-1e6, 1e6)(rng);
    r.rows.push_back(json::array({g, i, y}));
    auto it = std::find(expected_order.begin(), expected_order.end(), g);
    if (it == expected_order.end()) {
      expected_order.push_back(g);
      expected_y.emplace_back();
      it = expected_order.end() - 1;
    }
    expected_y[static_cast<std::size_t>(it - expected_order.begin())].push_back(y);
  }
  const ChartData d = chart_data(s, r);
  ASSERT_EQ(d.series.size(), expected_order.size());
  for (std::size_t i = 0; i < d.series.size(); ++i) {
    EXPECT_EQ(d.series[i].name, expected_order[i]);
    EXPECT_EQ(d.series[i].y, expected_y[i]);
  }
}

TEST(ChartDataTest, NoColorSeriesIsNamedByTheYTitle) {
  const ChartData d = chart_data(parse_chart_spec(bar_spec()), region_sales());
  ASSERT_EQ(d.series.size(), 1u);
  EXPECT_EQ(d.series[0].name, "Sales (USD)");
  EXPECT_EQ(d.series[0].x, (std::vector<std::string>{"North", "South", "East", "West"}));
  EXPECT_EQ(d.series[0].y, (std::vector<double>{120, 80.5, 42, 99}));
  EXPECT_EQ(d.series[0].x_num, (std::vector<double>{0, 1, 2, 3}));
}

TEST(ChartDataTest, TemporalXIsDaysSinceEpoch) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.mark = "line", s.x_type = "temporal";
  const QueryResult r = make_result(
      {"region", "sales"},
      json::parse(
          R"([["1970-01-02", 1], ["2000-03-01", 2], ["2024-02", 3], ["2021", 4], [1999, 5]])"));
  const ChartData d = chart_data(s, r);
  ASSERT_EQ(d.series.size(), 1u);
  EXPECT_EQ(d.series[0].x_num, (std::vector<double>{1, 11017, 19754, 18628, 10592}));
  EXPECT_EQ(d.series[0].x[4], "1999");
}

TEST(ChartDataTest, XWithoutTypeIsInferredFromTheData) {
  ChartSpec s = parse_chart_spec(
      json::parse(R"({"mark": "line", "encoding": {"x": {"field": "x"}, "y": {"field": "y"}}})"));
  ASSERT_EQ(s.x_type, "");
  auto x_num = [&](const json& rows) {
    return chart_data(s, make_result({"x", "y"}, rows)).series.at(0).x_num;
  };
  EXPECT_EQ(x_num(json::parse(R"([[10, 1], [2.5, 2]])")), (std::vector<double>{10, 2.5}));
  EXPECT_EQ(x_num(json::parse(R"([["1970-01-03", 1], ["1970-02", 2]])")),
            (std::vector<double>{2, 31}));
  EXPECT_EQ(x_num(json::parse(R"([["b", 1], ["a", 2], [3, 3]])")), (std::vector<double>{0, 1, 2}));
  s.mark = "bar";  // bars are categories whatever the x
  EXPECT_EQ(x_num(json::parse(R"([[10, 1], [2.5, 2]])")), (std::vector<double>{0, 1}));
}

TEST(ChartDataTest, QuantitativeXIsTheNumber) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.mark = "scatter", s.x_type = "quantitative";
  const QueryResult r =
      make_result({"region", "sales"}, json::parse(R"([[2.5, 1], [-3, 2], [1e9, 3]])"));
  const ChartData d = chart_data(s, r);
  EXPECT_EQ(d.series[0].x_num, (std::vector<double>{2.5, -3, 1e9}));
  EXPECT_EQ(d.series[0].x, (std::vector<std::string>{"2.5", "-3", "1000000000"}));
}

TEST(ChartDataTest, UnknownFieldOrTextValueThrows) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.y_field = "revenue";
  EXPECT_THROW(chart_data(s, region_sales()), ChartError);
  s = parse_chart_spec(bar_spec());
  const QueryResult r = make_result({"region", "sales"}, json::parse(R"([["N", "12"]])"));
  EXPECT_THROW(chart_data(s, r), ChartError);
}

// ---------------------------------------------------------------------------------------
// The figure check

TEST(ChartCheckTest, ValidChartHasNoProblems) {
  const FigureCheck c = check_chart(parse_chart_spec(bar_spec()), region_sales());
  EXPECT_TRUE(c.ok) << problems_text(c);
  EXPECT_TRUE(c.problems.empty());
}

TEST(ChartCheckTest, EmptyResult) {
  const FigureCheck c =
      check_chart(parse_chart_spec(bar_spec()), make_result({"region", "sales"}, json::array()));
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "no rows")) << problems_text(c);
}

TEST(ChartCheckTest, TruncatedResult) {
  QueryResult r = region_sales();
  r.truncated = true;
  const FigureCheck c = check_chart(parse_chart_spec(bar_spec()), r);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "row limit")) << problems_text(c);
}

TEST(ChartCheckTest, UnknownField) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.x_field = "country";
  const FigureCheck c = check_chart(s, region_sales());
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "encoding.x.field 'country' is not a column")) << problems_text(c);
  EXPECT_TRUE(has_problem(c, "region, sales")) << problems_text(c);
}

TEST(ChartCheckTest, NonNumericAndNullY) {
  const QueryResult r = make_result(
      {"region", "sales"}, json::parse(R"([["N", "lots"], ["S", null], ["E", 3], ["W", "x"]])"));
  const FigureCheck c = check_chart(parse_chart_spec(bar_spec()), r);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "holds text, not numbers ('lots' in rows 1 and 4)"))
      << problems_text(c);
  EXPECT_TRUE(has_problem(c, "is null in row 2")) << problems_text(c);
}

TEST(ChartCheckTest, NonFiniteY) {
  QueryResult r = region_sales();
  r.rows[1][1] = std::numeric_limits<double>::quiet_NaN();
  r.rows[3][1] = std::numeric_limits<double>::infinity();
  const FigureCheck c = check_chart(parse_chart_spec(bar_spec()), r);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "not finite (NaN or infinity) in rows 2 and 4")) << problems_text(c);
}

TEST(ChartCheckTest, MissingTitles) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.title = "  ", s.x_title = "", s.y_title = "";
  const FigureCheck c = check_chart(s, region_sales());
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "no title")) << problems_text(c);
  EXPECT_TRUE(has_problem(c, "encoding.x.title")) << problems_text(c);
  EXPECT_TRUE(has_problem(c, "encoding.y.title")) << problems_text(c);
  EXPECT_EQ(c.problems.size(), 3u) << problems_text(c);
}

TEST(ChartCheckTest, TooManySeries) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.mark = "line", s.color_field = "product";
  QueryResult r;
  r.columns = {"region", "product", "sales"};
  for (int p = 0; p < 11; ++p) r.rows.push_back(json::array({"N", numbered("p", p), p}));
  const FigureCheck c = check_chart(s, r);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "11 series")) << problems_text(c);
  r.rows.pop_back();
  EXPECT_TRUE(check_chart(s, r).ok) << problems_text(check_chart(s, r));
}

TEST(ChartCheckTest, PieNegativeTooManySlicesAndZeroSum) {
  const ChartSpec s = parse_chart_spec(json::parse(R"({"mark": "pie", "title": "Share",
    "encoding": {"theta": {"field": "sales"}, "color": {"field": "region"}}})"));
  QueryResult r = region_sales();
  EXPECT_TRUE(check_chart(s, r).ok);
  r.rows[2][1] = -4;
  FigureCheck c = check_chart(s, r);
  EXPECT_TRUE(has_problem(c, "negative values (row 3)")) << problems_text(c);
  r.rows.clear();
  for (int i = 0; i < 13; ++i) r.rows.push_back(json::array({numbered("k", i), 1}));
  c = check_chart(s, r);
  EXPECT_TRUE(has_problem(c, "13 slices")) << problems_text(c);
  r = make_result({"region", "sales"}, json::parse(R"([["a", 0], ["b", 0]])"));
  c = check_chart(s, r);
  EXPECT_TRUE(has_problem(c, "sum to zero")) << problems_text(c);
}

TEST(ChartCheckTest, DuplicatePositionHidesARow) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.mark = "line";
  const QueryResult r =
      make_result({"region", "sales"}, json::parse(R"([["N", 1], ["S", 2], ["N", 3], ["E", 4]])"));
  const FigureCheck c = check_chart(s, r);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "rows 1 and 3 both draw x 'N'")) << problems_text(c);
  EXPECT_TRUE(has_problem(c, "GROUP BY")) << problems_text(c);
  s.mark = "bar";
  EXPECT_FALSE(check_chart(s, r).ok);
  s.mark = "scatter";  // both points are drawn
  EXPECT_TRUE(check_chart(s, r).ok) << problems_text(check_chart(s, r));
}

TEST(ChartCheckTest, SameDateWrittenTwoWaysHidesARow) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.mark = "line", s.x_type = "temporal";
  const QueryResult r = make_result(
      {"region", "sales"}, json::parse(R"([["2024-01", 1], ["2024-02", 2], ["2024-01-01", 3]])"));
  const FigureCheck c = check_chart(s, r);
  EXPECT_TRUE(has_problem(c, "rows 1 and 3 both draw x '2024-01-01'")) << problems_text(c);
}

TEST(ChartCheckTest, SameXInDifferentSeriesIsFine) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.color_field = "year";
  const QueryResult r = make_result(
      {"region", "year", "sales"},
      json::parse(R"([["N", 2023, 1], ["N", 2024, 2], ["S", 2023, 3], ["S", 2024, -4]])"));
  EXPECT_TRUE(check_chart(s, r).ok) << problems_text(check_chart(s, r));
  ChartSpec dup = s;
  dup.color_field = "";
  EXPECT_FALSE(check_chart(dup, r).ok);
}

TEST(ChartCheckTest, BadTemporalValues) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.mark = "line", s.x_type = "temporal";
  const QueryResult r = make_result(
      {"region", "sales"}, json::parse(R"([["2024-01-31", 1], ["2024-02-30", 2], ["soon", 3]])"));
  const FigureCheck c = check_chart(s, r);
  EXPECT_FALSE(c.ok);
  EXPECT_TRUE(has_problem(c, "'2024-02-30' in rows 2 and 3")) << problems_text(c);
}

// ---------------------------------------------------------------------------------------
// Rendering

struct Image {
  int width = 0, height = 0;
  std::vector<std::uint32_t> rgb;  // 0xRRGGBB per pixel
  std::uint32_t at(int x, int y) const {
    return rgb[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
               static_cast<std::size_t>(x)];
  }
};

struct PngReader {
  const std::string* bytes;
  std::size_t pos = 0;
};

cairo_status_t read_png(void* closure, unsigned char* data, unsigned int length) {
  auto* r = static_cast<PngReader*>(closure);
  if (r->pos + length > r->bytes->size()) return CAIRO_STATUS_READ_ERROR;
  std::copy_n(r->bytes->data() + r->pos, length, data);
  r->pos += length;
  return CAIRO_STATUS_SUCCESS;
}

Image decode_png(const std::string& png) {
  PngReader reader{&png};
  cairo_surface_t* s = cairo_image_surface_create_from_png_stream(read_png, &reader);
  Image img;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    img.width = cairo_image_surface_get_width(s);
    img.height = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x) {
        std::uint32_t px;
        std::memcpy(&px, data + y * stride + x * 4, 4);
        img.rgb.push_back(px & 0xFFFFFF);
      }
  }
  cairo_surface_destroy(s);
  return img;
}

std::size_t count_color(const Image& img, std::uint32_t color) {
  std::size_t n = 0;
  for (auto px : img.rgb) n += px == color;
  return n;
}

// The middle half of the image, where the plot is, holds drawn (non-white) pixels.
std::size_t drawn_pixels_in_middle(const Image& img) {
  std::size_t n = 0;
  for (int y = img.height / 4; y < img.height * 3 / 4; ++y)
    for (int x = img.width / 4; x < img.width * 3 / 4; ++x) n += img.at(x, y) != 0xFFFFFF;
  return n;
}

void expect_safe_svg(const std::string& svg) {
  ASSERT_FALSE(svg.empty());
  EXPECT_TRUE(svg.rfind("<?xml", 0) == 0 || svg.rfind("<svg", 0) == 0) << svg.substr(0, 80);
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // Every reference is internal (cairo's glyph definitions): href="#...".
  for (std::size_t pos = svg.find("href=\""); pos != std::string::npos;
       pos = svg.find("href=\"", pos + 1))
    EXPECT_EQ(svg[pos + 6], '#') << svg.substr(pos, 60);
}

void expect_valid_render(const RenderedChart& out, int width, int height) {
  expect_safe_svg(out.svg);
  ASSERT_GE(out.png.size(), 8u);
  EXPECT_EQ(out.png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const Image img = decode_png(out.png);
  EXPECT_EQ(img.width, width);
  EXPECT_EQ(img.height, height);
  EXPECT_GT(drawn_pixels_in_middle(img), 500u);
}

constexpr std::uint32_t kFirstPaletteColor = 0x0072B2;
constexpr std::uint32_t kSecondPaletteColor = 0xE69F00;

TEST(ChartRenderTest, BarChartUsesThePalette) {
  const RenderedChart out = render_chart(parse_chart_spec(bar_spec()), region_sales());
  expect_valid_render(out, 800, 480);
  const Image img = decode_png(out.png);
  EXPECT_GT(count_color(img, kFirstPaletteColor), 2000u);
  ASSERT_EQ(out.data.series.size(), 1u);
  EXPECT_EQ(out.data.series[0].y.size(), 4u);
}

TEST(ChartRenderTest, GroupedBarsWithNegativeValues) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.color_field = "year";
  const QueryResult r = make_result(
      {"region", "year", "sales"},
      json::parse(R"([["North", "2023", 1200], ["North", "2024", -300], ["South", "2023", 800],
                      ["South", "2024", 950], ["East", "2023", -1500], ["East", "2024", 400]])"));
  const RenderedChart out = render_chart(s, r, 640, 400);
  expect_valid_render(out, 640, 400);
  const Image img = decode_png(out.png);
  EXPECT_GT(count_color(img, kFirstPaletteColor), 500u);
  EXPECT_GT(count_color(img, kSecondPaletteColor), 500u);
}

TEST(ChartRenderTest, BarsSitOnCategoriesWhateverTheXType) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.x_type = "quantitative";
  const QueryResult r =
      make_result({"region", "sales"}, json::parse(R"([[1e12, 1], [-5, 2], [1e12, 3]])"));
  const ChartData d = chart_data(s, r);
  EXPECT_EQ(d.series.at(0).x_num, (std::vector<double>{0, 1, 0}));
  EXPECT_FALSE(check_chart(s, r).ok);  // rows 1 and 3 share a bar
  const QueryResult distinct =
      make_result({"region", "sales"}, json::parse(R"([[1e12, 1], [-5, 2], [7, 3]])"));
  expect_valid_render(render_chart(s, distinct), 800, 480);
}

TEST(ChartRenderTest, MultiLineChart) {
  ChartSpec s = parse_chart_spec(json::parse(R"js({"mark": "line", "title": "Monthly revenue",
    "encoding": {"x": {"field": "month", "type": "temporal", "title": "Month"},
                 "y": {"field": "revenue", "title": "Revenue (USD)"},
                 "color": {"field": "store"}}})js"));
  QueryResult r;
  r.columns = {"month", "store", "revenue"};
  for (int m = 1; m <= 12; ++m)
    for (const char* store : {"Berlin", "Paris", "Rome"}) {
      const std::string month = "2024-" + std::string(m < 10 ? "0" : "") + std::to_string(m);
      r.rows.push_back(json::array({month, store, 1000.0 * m + 37 * (store[0] - 'A')}));
    }
  const RenderedChart out = render_chart(s, r);
  expect_valid_render(out, 800, 480);
  const Image img = decode_png(out.png);
  EXPECT_GT(count_color(img, kFirstPaletteColor), 100u);
  EXPECT_EQ(out.data.series.size(), 3u);
}

TEST(ChartRenderTest, ScatterChart) {
  auto rng = seeded_rng();
  ChartSpec s = parse_chart_spec(json::parse(R"js({"mark": "point", "title": "Price vs size",
    "encoding": {"x": {"field": "size", "type": "quantitative", "title": "Size (m²)"},
                 "y": {"field": "price", "title": "Price (EUR)"}}})js"));
  EXPECT_EQ(s.mark, "scatter");
  QueryResult r;
  r.columns = {"size", "price"};
  std::normal_distribution<double> noise(0, 20000);
  for (int i = 0; i < 150; ++i) {
    const double size = 20 + static_cast<double>(rng() % 180);
    r.rows.push_back(json::array({size, 3000 * size + noise(rng)}));
  }
  const RenderedChart out = render_chart(s, r);
  expect_valid_render(out, 800, 480);
  EXPECT_GT(count_color(decode_png(out.png), kFirstPaletteColor), 100u);
}

TEST(ChartRenderTest, PieChart) {
  const ChartSpec s = parse_chart_spec(json::parse(R"js({"mark": "pie", "title": "Sales share",
    "encoding": {"theta": {"field": "sales", "title": "Sales (USD)"},
                 "color": {"field": "region"}}})js"));
  const RenderedChart out = render_chart(s, region_sales(), 600, 400);
  expect_valid_render(out, 600, 400);
  const Image img = decode_png(out.png);
  EXPECT_GT(count_color(img, kFirstPaletteColor), 2000u);
  EXPECT_GT(count_color(img, kSecondPaletteColor), 2000u);
}

TEST(ChartRenderTest, HugeTinyAndLongValuesStillRender) {
  const std::string long_label(300, 'L');
  const double values[] = {1e300, -1e300, 1e-300, 5e-320, 123456789012.0, 0};
  for (double big : values) {
    SCOPED_TRACE(big);
    ChartSpec s = parse_chart_spec(bar_spec());
    s.title = "A very long title " + std::string(200, 'T');
    const QueryResult r = make_result(
        {"region", "sales"},
        json::array({json::array({long_label, big}), json::array({"b\xff\xfe", big / 3}),
                     json::array({"ünïcødé ✓ " + long_label, 0.0})}));
    const RenderedChart out = render_chart(s, r, 400, 300);
    expect_safe_svg(out.svg);
    const Image img = decode_png(out.png);
    EXPECT_EQ(img.width, 400);
    EXPECT_EQ(img.height, 300);
  }
}

TEST(ChartRenderTest, RandomChartsRender) {
  auto rng = seeded_rng();
  const char* marks[] = {"bar", "line", "scatter", "pie"};
  for (int i = 0; i < 12; ++i) {
    const std::string mark = marks[i % 4];
    const ChartSpec s =
        parse_chart_spec({{"mark", mark},
                          {"title", numbered("Random ", static_cast<unsigned long>(i))},
                          {"encoding",
                           {{"x",
                             {{"field", "x"},
                              {"type", mark == "scatter" ? "quantitative" : "nominal"},
                              {"title", "X"}}},
                            {"y", {{"field", "y"}, {"title", "Y (units)"}}}}}});
    const int n = 1 + static_cast<int>(rng() % (s.mark == "pie" ? 12 : 120));
    const double magnitude = std::pow(10.0, static_cast<double>(rng() % 30) - 12);
    QueryResult r;
    r.columns = {"x", "y"};
    for (int k = 0; k < n; ++k) {
      double y = std::uniform_real_distribution<double>(s.mark == "pie" ? 0.01 : -1, 1)(rng);
      r.rows.push_back(
          json::array({s.mark == "scatter" ? json(k * magnitude) : json(numbered("category ", k)),
                       y * magnitude}));
    }
    std::ostringstream trace;
    trace << mark << " n=" << n << " magnitude=" << magnitude;
    SCOPED_TRACE(trace.str());
    const RenderedChart out = render_chart(s, r, 500 + static_cast<int>(rng() % 500),
                                           300 + static_cast<int>(rng() % 300));
    expect_safe_svg(out.svg);
    const Image img = decode_png(out.png);
    EXPECT_GT(drawn_pixels_in_middle(img), 100u);
    std::size_t points = 0;
    for (const auto& series : out.data.series) points += series.y.size();
    EXPECT_EQ(points, r.rows.size());
  }
}

TEST(ChartRenderTest, RefusesWhatTheCheckRefuses) {
  ChartSpec s = parse_chart_spec(bar_spec());
  s.title = "";
  try {
    render_chart(s, region_sales());
    ADD_FAILURE() << "rendered a chart without a title";
  } catch (const ChartError& e) {
    EXPECT_NE(std::string(e.what()).find("no title"), std::string::npos) << e.what();
  }
  EXPECT_THROW(render_chart(parse_chart_spec(bar_spec()), region_sales(), 10, 10), ChartError);
}

}  // namespace
}  // namespace kdr::hka
