// What a fact looks like as a chart and as rows of a table (after Calliope: one chart type
// per fact type): a line of the series for changes and trends, lines of shares for mixes,
// bars for ranks, a scatter for associations, the months for a seasonal cycle.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "hka/analysis/facts.h"
#include "hka/analysis/frame.h"

namespace kdr::hka::analysis {

// The chart of `fact` (with the other facts of its section, whose entities join a line
// chart of the same table and measure), its data computed from `frame` with the SQL of the
// fact's series. nullopt for types without a chart (value, distribution, outlier, query).
std::optional<FactChart> fact_chart(const Frame& frame, const Fact& fact,
                                    const std::vector<const Fact*>& companions = {});

// Rows of a key-figures table for a fact: {entity, period, what, value as written}. Each row
// names its entity and period so that a reader (and a checker) can bind the number.
std::vector<std::vector<std::string>> fact_rows(const Fact& fact);

}  // namespace kdr::hka::analysis
