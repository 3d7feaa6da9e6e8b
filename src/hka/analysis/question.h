// What a question asks, read without a model: the kinds of analysis it wants (change over
// time, growth, association, mix, seasonality, extremes ...), the periods it names, and its
// content words; resolved against a frame, the entities and measures it names ("Korea" finds
// "Korea, Rep."). Facts are ranked by relevance to the question and their significance.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hka/analysis/facts.h"
#include "hka/analysis/frame.h"
#include "hka/knowledge/table_store.h"

namespace kdr::hka::analysis {

struct QuestionProfile {
  std::string text;
  // The whole question when `text` is one part of it: entities and measures the part does
  // not name are looked up there.
  std::string context;
  std::vector<std::string> terms;         // content words, lower case, stop words removed
  std::set<std::string> kinds;            // as Focus::kinds
  std::optional<int> year_from, year_to;  // the period it names (equal for one year)
  // Months it names with their year ("January 2006", "March 2010"), as 12 * year + month - 1.
  std::vector<int64_t> months;
  // Sub-periods it compares: explicit ranges ("1960-1970", "from 1990 to 2000", "the 1980s"),
  // else consecutive years when it names three or more.
  std::vector<std::pair<int, int>> ranges;
  // Names it leaves out ("leaving out the District of Columbia", "excluding aggregates").
  std::vector<std::string> excluded;
};

QuestionProfile profile_question(const std::string& question);

// The entities and measures of `frame` the question names, and its period and kinds.
Focus resolve_focus(const Frame& frame, const QuestionProfile& q);

// Whether `name` (an entity or measure) is named by the text's words: all the words of its
// head (before a comma or parenthesis) appear, singular and plural alike ("Korea, Rep." in
// "South Korea", "Renewables" in "renewable generation").
bool names(const std::vector<std::string>& text_words, const std::string& name);

// The fact types that answer a kind of question, the most direct first ("mix": mix, then
// proportion; "growth": difference, acceleration, trend). Empty for an unknown kind.
const std::vector<std::string>& answer_types(const std::string& kind);

// The kinds in the order a report answers them.
const std::vector<std::string>& kinds_in_order();

// Whether `fact` answers `kind` directly (a rank answers "association" only when it ranks
// correlations, and "change" only when it ranks changes).
bool answers(const analysis::Fact& fact, const std::string& kind);

// Whether an entity's name is a group of others (World Bank style aggregates: "World",
// "High income", "Euro area", "Sub-Saharan Africa (all income levels)", "OECD members").
bool is_aggregate_name(const std::string& name);

// Relevance of a fact to the question (0..1): the kinds it serves, the entities, measures and
// periods it shares with the question, the question's words in its table.
double fact_relevance(const Fact& fact, const QuestionProfile& q);

// Facts ordered by relevance x (0.5 + 0.5 significance), highest first; sets Fact::relevance.
// `table_weight` (0..1 by table name) scales the relevance of each table's facts.
void rank_facts(std::vector<Fact>& facts, const QuestionProfile& q,
                const std::map<std::string, double>& table_weight = {});

// How much of the question a table covers (0..1, relative to the best of `tables`): its
// title, description, column headers and the entities it holds that the question names.
std::map<std::string, double> table_weights(const std::vector<TableInfo>& tables,
                                            const QuestionProfile& q);

}  // namespace kdr::hka::analysis
