// Charts of the research agent: a Vega-Lite subset written by the coder model, checked
// against the query result it plots, and rendered to SVG and PNG.
//
// Accepted spec (anything else is a ChartError naming the field):
//   {"mark": "bar" | "line" | "pie" | "scatter"  (or {"type": ...}),
//    "title": "...",
//    "encoding": {
//      "x":     {"field": COL, "type": "nominal|ordinal|quantitative|temporal", "title": "..."},
//      "y":     {"field": COL, "type": "quantitative", "title": "... (unit)"},
//      "color": {"field": COL}          // optional: one series per value (multi-line, grouped bar)
//      "theta": {"field": COL}          // pie: the value column ("x" or "color" names slices)
//    }}
// A multi-line chart is mark "line" with a color field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "hka/knowledge/sql_guard.h"

namespace kdr::hka {

class ChartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ChartSpec {
  std::string mark;  // "bar", "line", "pie" or "scatter"
  std::string title;
  std::string x_field;      // category / x column (pie: the slice label column)
  std::string x_type;       // nominal, ordinal, quantitative or temporal
  std::string x_title;      // axis label (empty for pie)
  std::string y_field;      // value column (pie: theta)
  std::string y_title;      // axis label, with its unit
  std::string color_field;  // empty: one series
};

// Throws ChartError naming the field that is missing or wrong ("encoding.y.field: missing").
ChartSpec parse_chart_spec(const nlohmann::json& spec);
nlohmann::json to_json(const ChartSpec& spec);

// The data a chart draws, taken from the query result: one series per color value (in order
// of first appearance), each point (x label or number, y value) from one row.
struct ChartSeries {
  std::string name;            // the color value; the y title when there is no color field
  std::vector<std::string> x;  // x as text, as in the result
  std::vector<double> x_num;   // x as a number (quantitative / temporal as days), else index
  std::vector<double> y;
};
struct ChartData {
  std::vector<ChartSeries> series;
};

// Throws ChartError when a field is not a result column or a value cannot be plotted.
ChartData chart_data(const ChartSpec& spec, const QueryResult& result);

// The deterministic figure check. Problems are short sentences the coder model can act on:
// the result is empty; a field is not a column; a y (or theta) value is null, not a number
// or not finite; a title or axis label is missing; more than 10 series; a pie has negative
// values or more than 12 slices; the data drawn differs from the query result (every row must
// be drawn exactly once with its values).
struct FigureCheck {
  bool ok = true;
  std::vector<std::string> problems;
};
FigureCheck check_chart(const ChartSpec& spec, const QueryResult& result);

struct RenderedChart {
  std::string svg;  // a standalone SVG document (no scripts, no external references)
  std::string png;  // PNG bytes of the same drawing
  ChartData data;   // what was drawn
};

// Draws the chart (axes with ticks and labels, legend when there are several series, title).
// Throws ChartError when check_chart() fails.
RenderedChart render_chart(const ChartSpec& spec, const QueryResult& result, int width = 800,
                           int height = 480);

}  // namespace kdr::hka
