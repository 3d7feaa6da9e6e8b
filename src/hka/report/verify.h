// Verification bound to claims: each number in the prose is checked against the evidence its
// own sentence cites, each cited document passage against the sentence it supports.
//
// Rules, per sentence (sentences.h says where one ends; a list item, a table row, a caption is
// one too):
//   - The evidence of a sentence: the facts it cites (their values, the years of their periods,
//     their n and rank values), the cells of the query results it cites, the numbers of the
//     passages it cites. A sentence citing nothing that resolves: the facts (cited anywhere or
//     not) whose mentions it names, and nothing else. The question is never evidence.
//   - A number matches a value as rounded to the digits written ("3.4 million" to 0.05 million;
//     "1,437 thousand MWh" against 1,437 in "thousand MWh"); a percentage matches a value in
//     "%" or "pp", or a fraction (unit "", in [0, 1]) times 100. A minus sign needs a negative
//     value, a plus sign a positive one; an unsigned number matches a negative change only in a
//     clause that says it fell ("fell", "declined", "a decrease", "lower", "4.3 ... below");
//     "fell by -4.1" (a fall of a fall) does not verify.
//   - Direction words agree with the value: "rose" with a fact that fell (Fact::direction for a
//     level, the sign of a change) is unverified; the nearest direction word before the number
//     in its clause counts ("A rose from X to Y while B fell from Z to W"), or a comparative
//     right after it ("16.7% lower").
//   - The value's entity (FactValue::entity, else Fact::entity; for a fact about one column of
//     a wide table, that column) must be named: by the sentence, or, when the sentence names
//     several entities of the evidence's tables, by the name before the parenthesis the number
//     stands in ("Renewables (38.8%)"), else the stretch between the neighbouring numbers, else
//     the name nearest before the number. A fact's measures that are entities of its table
//     ("single" where measures are ranked) must be named before the number or in its clause.
//   - A value with a period written next to it ("1,437 in 2001", "in 1976 (1.74)", "January
//     340", a clause opening "In 2017,") must be that period's value; a change followed by a
//     range ("+25% a year from 2001 to 2009") must be the change over that range. An unsigned
//     level written right next to one period is never a value of no single period (a change, a
//     shift): "shifted from 35.3% in 2001" with 35.3 the shift in points is flagged, "... to
//     38.8% in 2017 (+35.3 percentage points)" and "6,032 less in 2017 than in 2001" are not.
//   - A year (a bare integer 1000-2200, as frames read years) must be the year of a period of the
//   evidence ("March
//     2009" the month too); a range ("2001-2017", "from 2001 to 2017", "between 2001 and
//     2017") must be a span of a cited fact.
//   - "p < 0.001" needs a fact whose p-value is below the bound; "r = 0.62", "ρ = 0.58",
//     "R² = 0.93", "p = 0.02", "ranking 3" must be the value of that name.
//   - Digits inside a name of the evidence ("per 100,000 population", "Niño 1+2") are part of
//     the name.
//   - Failing a direct match (and only for a number the evidence does not hold with another
//     sign, entity or period), a number written with two significant digits or more may be the
//     difference, ratio or percent change of two comparable values of the evidence: one unit,
//     and one name (two entities' shares, periods the sentence names) or two levels of one
//     entity (first and last).
//   - A document citation is supported when the passage holds at least half of the sentence's
//     content words (four letters or more, stop words out, singular and plural alike) or every
//     number the sentence states.
// Private to report/.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hka/report/citations.h"
#include "hka/report/report.h"

namespace kdr::hka::report {

// The key a citation item stands for: a reference number ("3") read through the references, or
// a key as written; "" when it stands for nothing.
using KeyOf = std::function<std::string(const std::string& item)>;

class Verifier {
 public:
  explicit Verifier(const Citable& citable);
  ~Verifier();

  // Checks every number of one block of prose (a section's text, a caption), in order.
  void check_numbers(std::string_view text, const std::string& section, const KeyOf& key_of,
                     std::vector<NumberCheck>& out) const;

  // Sets `supported` and `reason` of a resolved citation of a passage (not a fact or a query
  // result) from the sentence it stands in.
  void check_support(CitationCheck& citation) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Fills the counts and verification.json of `report` from its checks.
void summarize(FinalReport& report, const std::vector<FigureRef>& figure_refs);

// "N numbers checked: V verified, U unverified. C citations: X unresolved and removed, Y
// unsupported." as the Verification section opens.
std::string verification_summary(const FinalReport& report);

}  // namespace kdr::hka::report
