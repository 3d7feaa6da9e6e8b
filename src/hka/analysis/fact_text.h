// One sentence per fact type, in plain English, with units and the rounding the data supports.
// The report uses them where the model's prose is missing or cannot be backed, and the
// abstract and conclusion are assembled from them.
#pragma once
#include <string>

#include "hka/analysis/facts.h"

namespace kdr::hka::analysis {

// The sentence stating `fact` (no citation marker).
std::string fact_sentence(const Fact& fact);

// A value with its unit as people write it: "35,361 thousand MWh", "12.3%", "$1,234",
// "+4.5 percentage points".
std::string format_value(double value, const std::string& unit, bool sign = false);

// A measure's label as it reads in a sentence: "net_generation" -> "net generation";
// "Fertility rate, total (births per woman)" -> "fertility rate, total".
std::string measure_phrase(const std::string& label, const std::string& unit);

// "p < 0.001" or "p = 0.034".
std::string p_text(double p);

}  // namespace kdr::hka::analysis
