// The claim checker (verify.h has the rules): the evidence indexed once per report
// (evidence.h), then each block of prose read sentence by sentence.
#include "hka/report/verify.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <span>
#include <tuple>
#include <unordered_map>

#include "hka/analysis/question.h"
#include "hka/report/evidence.h"
#include "hka/report/numbers.h"
#include "hka/report/sentences.h"
#include "hka/text.h"

namespace kdr::hka::report {
namespace {

using analysis::Fact;
using analysis::FactValue;

std::string plain(double v) { return text::format_cell(nlohmann::json(v)); }

// ---------------------------------------------------------------------------------------------
// Words of a clause

// Verbs and nouns of change: they speak of a value's direction and of a fact's.
int change_word(std::string_view w) {
  static const std::array<std::string_view, 33> kFall = {
      "fell",     "fall",      "falls",      "fallen",   "falling",   "declined",   "decline",
      "declines", "declining", "decreased",  "decrease", "decreases", "decreasing", "dropped",
      "drop",     "drops",     "lost",       "lose",     "loses",     "losing",     "shrank",
      "shrunk",   "shrinks",   "contracted", "slumped",  "plunged",   "plummeted",  "tumbled",
      "sank",     "slid",      "dipped",     "shed",     "halved"};
  static const std::array<std::string_view, 25> kRise = {
      "rose",      "rise",       "rises",  "risen",   "rising", "increased", "increase",
      "increases", "increasing", "grew",   "grow",    "grows",  "grown",     "growing",
      "gained",    "gain",       "gains",  "climbed", "jumped", "surged",    "expanded",
      "doubled",   "tripled",    "soared", "added"};
  if (std::find(kFall.begin(), kFall.end(), w) != kFall.end()) return -1;
  if (std::find(kRise.begin(), kRise.end(), w) != kRise.end()) return 1;
  return 0;
}

// Comparatives: they speak of a change's sign only ("16.7% lower", "down 3%").
int comparative_word(std::string_view w, bool after_number) {
  if (w == "lower" || w == "down") return -1;
  if (w == "higher" || w == "up") return 1;
  if (!after_number) return 0;
  if (w == "less" || w == "fewer" || w == "smaller") return -1;
  if (w == "more" || w == "larger" || w == "bigger") return 1;
  return 0;
}

struct WordAt {
  std::string_view word;  // in the lower-cased text
  size_t pos;
};

// ASCII words of lowered[b, e).
std::vector<WordAt> words_at(std::string_view lowered, size_t b, size_t e) {
  std::vector<WordAt> out;
  size_t i = b;
  while (i < e) {
    if (!is_alpha(lowered[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < e && is_alpha(lowered[j])) ++j;
    out.push_back({lowered.substr(i, j - i), i});
    i = j;
  }
  return out;
}

struct Direction {
  int sign = 0;           // +1 says rose, -1 says fell
  bool change = false;    // said by a verb or noun of change (else by a comparative)
  bool adjacent = false;  // the word comes right before the number ("fell 3%", "a decrease of 3")
};

// The statistic a label before a number names: "r = 0.62", "ρ = 0.58", "R² = 0.93", "p = 0.02".
std::string statistic_label(std::string_view text, size_t begin, size_t number_begin) {
  size_t i = number_begin;
  while (i > begin && is_blank(text[i - 1])) --i;
  // "ranking 3 of 51", "ranked 2": a rank.
  for (std::string_view word : {"ranking", "ranked", "rank", "ranks"}) {
    if (i >= begin + word.size() &&
        text::lower(text.substr(i - word.size(), word.size())) == word &&
        (i - word.size() == begin || !is_alpha(text[i - word.size() - 1]))) {
      return "rank";
    }
  }
  if (i == begin || text[i - 1] != '=') return "";
  --i;
  while (i > begin && is_blank(text[i - 1])) --i;
  size_t b = i;
  while (b > begin && (is_alnum(text[b - 1]) || static_cast<unsigned char>(text[b - 1]) >= 0x80)) {
    --b;
  }
  const std::string label = text::lower(text.substr(b, i - b));
  if (label == "r") return "r";
  if (label == "\xCF\x81" || label == "rho") return "rho";
  if (label == "r\xC2\xB2" || label == "r2") return "r2";
  if (label == "p") return "p_value";
  return "";
}

// ---------------------------------------------------------------------------------------------
// A sentence and its evidence

struct Sentence {
  std::string_view text;     // the block
  std::string_view lowered;  // the block, lower case
  size_t begin = 0, end = 0;
  std::string one_line;
  std::vector<std::string> words;
  std::vector<WordAt> word_index;  // its ASCII words with their offsets, for words_in()
  bool cited = false;              // cites something that resolves
  bool cites_facts = false;        // ... a fact among them
  std::vector<const FactEvidence*> facts;
  std::vector<const SourceEvidence*> sources;
  std::vector<const WrittenNumber*> numbers;
  // Per number: the name of the evidence its digits are part of ("per 100,000 population"),
  // with its fact; null when none.
  std::vector<std::pair<const FactEvidence*, const std::string*>> in_name;
  // Words of the facts' units ("births per woman"): they never name an entity ("per" is not
  // "Peru").
  const std::vector<std::string>* unit_words = nullptr;
  std::vector<std::string> naming_words;    // the sentence's words less unit words
  std::vector<std::string> entities;        // of the evidence's tables, distinct
  std::vector<std::string> named_entities;  // those the sentence names
  // Per number: the index of the other end of a period range it is part of ("2001-2017",
  // "from 2001 to 2017", "between 2001 and 2017"), or -1.
  std::vector<int64_t> range_partner;
};

// The words of the sentence that start in [b, e).
std::span<const WordAt> words_in(const Sentence& s, size_t b, size_t e) {
  const auto by_pos = [](const WordAt& w, size_t pos) { return w.pos < pos; };
  const auto first = std::lower_bound(s.word_index.begin(), s.word_index.end(), b, by_pos);
  const auto last = std::lower_bound(first, s.word_index.end(), e, by_pos);
  return {first, last};
}

struct Outcome {
  bool verified = false;
  std::string fact_key, source_key, how, reason;
};

// The month or quarter word right before `pos` (after blanks): where it starts, else `pos`.
size_t before_period_word(std::string_view lowered, size_t floor, size_t pos) {
  size_t i = pos;
  while (i > floor && is_blank(lowered[i - 1])) --i;
  size_t b = i;
  while (b > floor && is_alnum(lowered[b - 1])) --b;
  const std::string_view w = lowered.substr(b, i - b);
  const bool quarter = w.size() == 2 && w[0] == 'q' && w[1] >= '1' && w[1] <= '4';
  const bool month = w.size() >= 3 && is_alpha(w[0]) && text::month_from_name(w) > 0;
  return quarter || month ? b : pos;
}

// Whether a word may name an entity: not a function word ("and" is no part of "Finland") nor a
// short word of the facts' units ("per" in "births per woman" is not "Peru"); names() reads a
// word of four letters or less as a possible abbreviation of a longer one.
bool can_name(const std::string& w, const std::vector<std::string>& unit_words) {
  static const std::array<std::string_view, 24> kFunctionWords = {
      "a",  "an", "and", "are", "as",   "at",   "by",  "for",  "from", "in",  "is",   "it",
      "of", "on", "or",  "per", "than", "that", "the", "then", "to",   "was", "were", "with"};
  if (std::find(kFunctionWords.begin(), kFunctionWords.end(), w) != kFunctionWords.end()) {
    return false;
  }
  return w.size() > 4 || std::find(unit_words.begin(), unit_words.end(), w) == unit_words.end();
}

class SentenceChecker {
 public:
  explicit SentenceChecker(const Sentence& s) : s_(s) {}

  Outcome check(size_t index) const {
    const WrittenNumber& n = *s_.numbers[index];
    if (s_.in_name[index].second) return name_part(index);
    if (auto bound = p_bound(n)) return p_value(n, *bound);
    if (auto date = date_after_day(n)) return period_check(*date, "date ");
    if (is_year(n) && s_.range_partner[index] >= 0 && !s_.facts.empty()) {
      const size_t other = static_cast<size_t>(s_.range_partner[index]);
      return range_check(std::min(index, other), std::max(index, other));
    }
    if (is_year(n)) return period_check(year_as_written(n), "");
    return value_check(index);
  }

 private:
  // --- names, p-values, periods --------------------------------------------------------------

  Outcome name_part(size_t index) const {
    Outcome o;
    o.verified = true;
    o.fact_key = s_.in_name[index].first->fact->key;
    o.how = "part of the name \"" + *s_.in_name[index].second + "\"";
    return o;
  }

  struct Bound {
    std::string op;  // "<", "<=", ">"
  };

  // "p < 0.001", "p<0.05", "p ≤ 0.01", "p > 0.05".
  std::optional<Bound> p_bound(const WrittenNumber& n) const {
    size_t i = n.begin;
    auto skip_blanks = [&] {
      while (i > s_.begin && is_blank(s_.text[i - 1])) --i;
    };
    skip_blanks();
    Bound b;
    if (i >= s_.begin + 3 && s_.text.substr(i - 3, 3) == "\xE2\x89\xA4") {
      b.op = "<=";
      i -= 3;
    } else if (i > s_.begin && (s_.text[i - 1] == '<' || s_.text[i - 1] == '>')) {
      b.op = std::string(1, s_.text[i - 1]);
      --i;
    } else {
      return std::nullopt;
    }
    skip_blanks();
    if (i == s_.begin || s_.lowered[i - 1] != 'p') return std::nullopt;
    if (i - 1 > s_.begin && is_alnum(s_.text[i - 2])) return std::nullopt;
    return b;
  }

  Outcome p_value(const WrittenNumber& n, const Bound& b) const {
    Outcome o;
    for (const FactEvidence* f : s_.facts) {
      const double p = f->p_value;
      if (std::isnan(p)) continue;
      const bool holds = b.op == "<" ? p < n.value : b.op == "<=" ? p <= n.value : p > n.value;
      if (holds) {
        o.verified = true;
        o.fact_key = f->fact->key;
        o.how = "p-value " + plain(p) + (b.op == ">" ? " above " : " below ") + n.text;
        return o;
      }
    }
    o.reason =
        "no " + evidence_word() + " has a p-value " + (b.op == ">" ? "above " : "below ") + n.text;
    return o;
  }

  // A day of a date: "15 March 2009".
  std::optional<Period> date_after_day(const WrittenNumber& n) const {
    if (n.negative || n.plus || n.percent || n.has_scale || n.grouped || n.currency ||
        n.decimals > 0 || n.value < 1 || n.value > 31) {
      return std::nullopt;
    }
    const std::span<const WordAt> after = words_in(s_, n.end, std::min(s_.end, n.end + 16));
    if (after.empty() || after.front().pos != n.end + 1) return std::nullopt;
    const int month = text::month_from_name(after.front().word);
    if (month == 0 || after.front().word.size() < 3) return std::nullopt;
    const size_t year_at = after.front().pos + after.front().word.size() + 1;
    for (const WrittenNumber* m : s_.numbers) {
      if (m->begin == year_at && is_year(*m)) {
        Period p;
        p.day = static_cast<int>(n.value);
        p.month = month;
        p.year = static_cast<int>(m->value);
        return p;
      }
    }
    return std::nullopt;
  }

  // A year with the month, quarter or day written before it ("March 2009", "Q1 2009").
  Period year_as_written(const WrittenNumber& n) const {
    Period p;
    p.year = static_cast<int>(n.value);
    if (n.begin < s_.begin + 3 || !is_blank(s_.text[n.begin - 1])) return p;
    const size_t word_end = n.begin - 1;
    size_t b = word_end;
    while (b > s_.begin && is_alnum(s_.lowered[b - 1])) --b;
    const std::string_view word = s_.lowered.substr(b, word_end - b);
    if (word.size() == 2 && word[0] == 'q' && word[1] >= '1' && word[1] <= '4') {
      p.quarter = word[1] - '0';
    } else if (word.size() >= 3 && is_alpha(word[0])) {
      p.month = text::month_from_name(word);
    }
    return p;
  }

  Outcome period_check(const Period& stated, const std::string& what) const {
    Outcome o;
    for (const FactEvidence* f : s_.facts) {
      for (const Period& p : f->periods) {
        if (period_fits(stated, p)) {
          o.verified = true;
          o.fact_key = f->fact->key;
          o.how =
              (stated.month || stated.quarter || stated.day ? "period " : "year of the period ") +
              period_text(p);
          return o;
        }
      }
    }
    // A query result or a passage holding the year.
    if (stated.month == 0 && stated.quarter == 0 && stated.day == 0) {
      for (const SourceEvidence* s : s_.sources) {
        for (double y : s->years) {
          if (y == stated.year) {
            o.verified = true;
            o.source_key = s->source->key;
            o.how = s->source->kind == "table" ? "year in the result" : "year in the passage";
            return o;
          }
        }
      }
    }
    const bool bare = stated.month == 0 && stated.quarter == 0 && stated.day == 0;
    o.reason = (bare ? "year " : what) + period_text(stated) + " not in the " + evidence_noun();
    return o;
  }

  // A range of periods ("from 2001 to 2017") must be a span the evidence covers.
  Outcome range_check(size_t first, size_t last) const {
    const Period a = year_as_written(*s_.numbers[first]);
    const Period b = year_as_written(*s_.numbers[last]);
    Outcome o;
    for (const FactEvidence* f : s_.facts) {
      for (const auto& [from, to] : f->spans) {
        if (period_fits(a, from) && period_fits(b, to)) {
          o.verified = true;
          o.fact_key = f->fact->key;
          o.how = "period " + period_text(from) + " to " + period_text(to);
          return o;
        }
      }
    }
    if (!s_.sources.empty()) {
      const Outcome single = period_check(year_as_written(*s_.numbers[first]), "");
      if (single.verified) return period_check(year_as_written(*s_.numbers[last]), "");
    }
    o.reason =
        "period " + period_text(a) + " to " + period_text(b) + " not in the " + evidence_noun();
    return o;
  }

  // --- values --------------------------------------------------------------------------------

  struct Candidate {
    const Value* value = nullptr;
    int rank = 0;
    std::string how;
    std::string failure;  // why it does not count, "" when it does
  };

  // Whether n as written states v; the sign rule applied. `near` gets why a value equal in
  // magnitude does not count.
  std::optional<Candidate> numeric(const WrittenNumber& n, const Value& v, const Direction& d,
                                   std::string& near) const {
    struct Target {
      double value;
      std::string how;
    };
    std::vector<Target> targets;
    if (n.percent) {
      if (v.percent || v.any_unit) targets.push_back({v.value, ""});
      if ((v.unit.empty() || v.any_unit) && !v.percent && std::fabs(v.value) <= 1) {
        targets.push_back({v.value * 100, "percent of fraction"});
      }
    } else {
      targets.push_back({v.value, ""});
      if (v.unit_scale != 1) targets.push_back({v.value * v.unit_scale, ""});
      // A cell or passage in the units of the scale word written ("3.4 million" for 3.4).
      if (n.has_scale && v.any_unit) {
        targets.push_back({v.value * n.scale, "evidence in units of " + plain(n.scale)});
      }
    }
    std::optional<Candidate> best;
    for (const Target& t : targets) {
      const double eps = 1e-9 * std::max(1.0, std::fabs(t.value));
      auto close = [&](double x) -> int {
        const double diff = std::fabs(x - t.value);
        return diff <= eps ? 0 : diff <= n.half_step + eps ? 1 : -1;
      };
      int rank = -1;
      std::string how = t.how;
      if (n.negative) {
        rank = t.value < 0 ? close(n.value) : -1;
        if (rank < 0 && t.value > 0 && close(-n.value) >= 0) {
          near = "states " + n.text + ", the value is " + plain(t.value);
        }
      } else if (t.value >= 0 || n.plus) {
        rank = t.value >= 0 && !(n.plus && t.value == 0) ? close(n.value) : -1;
        if (rank < 0 && t.value < 0 && close(-n.value) >= 0) {
          near = "states " + n.text + ", the value is " + plain(t.value);
        }
      } else if (close(-n.value) >= 0) {
        // An unsigned number for a negative value: a fall, said so.
        if (v.kind != ValueKind::kChange && v.kind != ValueKind::kUnknown) {
          near = "states " + n.text + ", the value is " + plain(t.value);
        } else if (d.sign != -1) {
          near = "states " + n.text + " where the value is " + plain(t.value) +
                 " and no word says it fell";
        } else {
          rank = close(-n.value);
          how = how.empty() ? "a fall of " + plain(-t.value) : how + ", a fall";
        }
      }
      if (rank < 0) continue;
      if (t.how.empty() && how.empty()) how = rank == 0 ? "exact" : "rounded";
      if (!t.how.empty() && rank == 1 && how == t.how) how += ", rounded";
      if (v.unit_scale != 1 && t.value != v.value) how += ", in " + v.unit;
      if (!best || rank < best->rank) best = Candidate{&v, rank, how, ""};
    }
    return best;
  }

  Outcome value_check(size_t index) const {
    const WrittenNumber& n = *s_.numbers[index];
    const Direction d = direction(n);
    const std::optional<Period> bound = bound_period(index);
    const bool tight = tight_period(index).has_value();
    const std::string label = statistic_label(s_.text, s_.begin, n.begin);
    const std::optional<std::pair<Period, Period>> range = bound_range(index);
    std::optional<Candidate> best;
    std::optional<Candidate> first_failed;
    std::string near;
    auto consider = [&](const Value& v) {
      std::optional<Candidate> c = numeric(n, v, d, near);
      if (!c) return;
      c->failure = constraint_failure(n, v, d, bound, range, label);
      // "35.3% in 2001": a number written with a period of its own is a value of that period;
      // a value of no period (a change, a shift, a rate over a span) is not it.
      // (A signed number or one in percentage points states a change, which may follow a span:
      // "... to 38.8% in 2017 (+35.3 percentage points)".)
      // "6,032 thousand MWh less in 2017 than in 2001" compares two periods: a change too.
      bool compares = false;
      {
        const std::string after =
            text::lower(s_.text.substr(n.end, std::min<size_t>(40, s_.text.size() - n.end)));
        for (const char* w : {"less", "more", "fewer", "lower", "higher", "greater", "smaller",
                              "larger", "above", "below", "up", "down"}) {
          compares = compares || text::has_word(after, w);
        }
      }
      const bool level = !n.negative && !n.plus && !compares &&
                         n.text.find("percentage point") == std::string::npos &&
                         s_.text.compare(n.end, 19, " percentage points") != 0 &&
                         s_.text.compare(n.end, 18, " percentage point") != 0;
      if (c->failure.empty() && tight && level && v.fact && v.parsed_period.empty()) {
        c->failure = "the value " + plain(v.value) + " belongs to no single period, not " +
                     period_text(*bound);
      }
      if (!c->failure.empty()) {
        if (!first_failed || c->rank < first_failed->rank) first_failed = c;
        return;
      }
      if (!best || c->rank < best->rank) best = c;
    };
    for (const FactEvidence* f : s_.facts) {
      for (const Value& v : f->values) consider(v);
    }
    for (const SourceEvidence* s : s_.sources) {
      for (const Value& v : s->values) consider(v);
    }
    Outcome o;
    if (best) {
      o.verified = true;
      if (best->value->fact) o.fact_key = best->value->fact->key;
      if (best->value->source) o.source_key = best->value->source->key;
      o.how = best->how;
      return o;
    }
    // A derived number is only trusted for a number written with two significant digits or
    // more (among hundreds of pairs, "3" or "0.4" would match something by chance), and not
    // for a number the evidence holds with another sign, entity or period: that is the value
    // misstated, not a new one.
    if (!first_failed && near.empty() && label.empty() && !tight_period(index) && n.value != 0 &&
        n.half_step <= 0.05 * std::fabs(n.value)) {
      if (derived(n, d, o)) return o;
    }
    if (first_failed) {
      o.reason = first_failed->failure;
    } else if (!near.empty()) {
      o.reason = near;
    } else {
      o.reason = s_.facts.empty() && s_.sources.empty() && !s_.cited
                     ? "cites nothing and names no fact"
                     : "no " + evidence_word() + " holds " + n.text;
    }
    return o;
  }

  std::string constraint_failure(const WrittenNumber& n, const Value& v, const Direction& d,
                                 const std::optional<Period>& bound,
                                 const std::optional<std::pair<Period, Period>>& range,
                                 const std::string& label) const {
    if (!label.empty() && v.fact && v.kind != ValueKind::kUnknown && v.name != label) {
      return "the value " + plain(v.value) + " is the fact's " + v.name + ", not " + label;
    }
    if (!v.entity.empty() && !entity_named(n, v)) {
      return "names no entity of the " + std::string(v.fact ? "fact" : "source") + " (" + v.entity +
             ")";
    }
    // Named before the number or in its clause ("violent and single are correlated (r =
    // 0.81)", "District of Columbia stands out in single: 48%").
    if (!v.focus_measures.empty()) {
      const std::vector<std::string> words =
          text::words(s_.text.substr(s_.begin, clause_boundary_after(n.end) - s_.begin));
      for (const std::string& m : v.focus_measures) {
        if (!analysis::names(words, m)) return "names no measure of the fact (" + m + ")";
      }
    }
    int vd = 0;
    if (v.kind == ValueKind::kChange) vd = v.value > 0 ? 1 : v.value < 0 ? -1 : 0;
    if (v.kind == ValueKind::kLevel && d.change && v.fact) vd = v.fact->direction;
    if (d.sign != 0 && vd != 0 && d.sign != vd) {
      return d.sign > 0 ? "says rose, the fact fell" : "says fell, the fact rose";
    }
    // "fell by -4.1", "-4.3 below the median": a fall of a fall reads as a rise.
    if (v.kind == ValueKind::kChange && n.negative && d.sign < 0 && d.adjacent) {
      return "says fell by " + std::string(text::trim(n.text)) + ", a fall of a fall";
    }
    if (bound && !v.parsed_period.empty() && !period_fits(*bound, v.parsed_period)) {
      return "the value " + plain(v.value) + " is for " + v.period + ", not " + period_text(*bound);
    }
    if (range && v.span &&
        !(period_fits(range->first, v.span->first) && period_fits(range->second, v.span->second))) {
      return "the value " + plain(v.value) + " is for " + period_text(v.span->first) + " to " +
             period_text(v.span->second) + ", not " + period_text(range->first) + " to " +
             period_text(range->second);
    }
    return "";
  }

  // Difference, ratio and percent change of two values of the evidence, of one unit (facts)
  // or one column (query results).
  bool derived(const WrittenNumber& n, const Direction& d, Outcome& o) const {
    std::vector<std::vector<const Value*>> groups;
    std::vector<const Value*> fact_values;
    for (const FactEvidence* f : s_.facts) {
      for (const Value& v : f->values) {
        if (v.kind == ValueKind::kStatistic) continue;
        if (!v.entity.empty() && !entity_named(n, v)) continue;

        if (fact_values.size() < 200) fact_values.push_back(&v);
      }
    }
    groups.push_back(std::move(fact_values));
    for (const SourceEvidence* s : s_.sources) {
      for (const auto& column : s->columns) groups.push_back(column);
    }
    const double x = n.value;
    const double tol = n.half_step;
    for (const auto& vals : groups) {
      for (size_t i = 0; i < vals.size(); ++i) {
        for (size_t j = 0; j < vals.size(); ++j) {
          if (i == j || vals[i]->unit != vals[j]->unit || !comparable(*vals[i], *vals[j])) continue;
          // Two periods of one measure ("March" and "June" means): the sentence names both.
          if (vals[i]->name == vals[j]->name && vals[i]->period != vals[j]->period &&
              (!period_mentioned(*vals[i]) || !period_mentioned(*vals[j]))) {
            continue;
          }
          const double a = vals[i]->value;
          const double b = vals[j]->value;
          const double eps = 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)});
          // The sign rule, and direction words that agree with the derived number's sign.
          auto fits = [&](double dv) {
            if (n.negative) return dv < 0 && d.sign <= 0 && std::fabs(x - dv) <= tol + eps;
            if (n.plus) return dv > 0 && d.sign >= 0 && std::fabs(x - dv) <= tol + eps;
            if (d.sign < 0) return dv < 0 && std::fabs(x + dv) <= tol + eps;
            return dv >= 0 && std::fabs(x - dv) <= tol + eps;
          };
          auto found = [&](const std::string& what) {
            o.verified = true;
            const Value& va = *vals[i];
            const Value& vb = *vals[j];
            if (va.fact) o.fact_key = va.fact->key;
            if (va.source) o.source_key = va.source->key;
            std::string where;
            if (va.source) {
              where = " (" + va.name + ")";
            } else if (va.fact != vb.fact) {
              where = " (" + va.fact->key + ", " + vb.fact->key + ")";
            }
            o.how = what + plain(a) + " and " + plain(b) + where;
            return true;
          };
          const bool pct_unit = vals[i]->percent || vals[i]->any_unit;
          if ((!n.percent || pct_unit) && fits(a - b)) return found("difference of ");
          if (b == 0) continue;
          if (!n.percent && a / b > 0 && fits(a / b)) return found("ratio of ");
          if (n.percent && b > 0 && fits((a - b) / b * 100)) {
            return found("percent change between ");
          }
          if (n.percent && a / b > 0 && fits(a / b * 100)) return found("ratio as percent of ");
        }
      }
    }
    return false;
  }

  // Whether the sentence mentions the period of a value with one ("March", "2001"): a derived
  // number compares values the sentence names.
  bool period_mentioned(const Value& v) const {
    auto mentioned = [&](const Period& p) {
      if (p.year != 0) {
        const bool year =
            std::any_of(s_.numbers.begin(), s_.numbers.end(), [&](const WrittenNumber* m) {
              return is_year(*m) && static_cast<int>(m->value) == p.year;
            });
        if (!year) return false;
      }
      if (p.month != 0) {
        const bool month = std::any_of(s_.words.begin(), s_.words.end(), [&](const std::string& w) {
          return w.size() >= 3 && text::month_from_name(w) == p.month;
        });
        if (!month) return false;
      }
      return true;
    };
    if (v.span && v.period.size() > 0 && !v.parsed_period.year) {
      return mentioned(v.span->first) && mentioned(v.span->second);
    }
    return v.parsed_period.empty() || mentioned(v.parsed_period);
  }

  // Two values a derived number may compare: of one name (two shares, two entities' changes,
  // one column) or two levels of one entity (first and last: "grew 15-fold").
  static bool comparable(const Value& a, const Value& b) {
    if (a.name == b.name) return true;
    return a.kind == ValueKind::kLevel && b.kind == ValueKind::kLevel && a.entity == b.entity;
  }

  // --- where the number stands ---------------------------------------------------------------

  // Where the clause of a number starts: after ";" or ":", ", and", "while", "whereas", "but".
  size_t clause_start(size_t pos) const {
    size_t start = s_.begin;
    for (size_t i = pos; i > s_.begin; --i) {
      const char c = s_.text[i - 1];
      if (c == ';' || c == ':') {
        start = i;
        break;
      }
    }
    for (const WordAt& w : words_in(s_, start, pos)) {
      if (opens_clause(w)) start = w.pos;
    }
    return start;
  }

  // Where the clause of a number ends: before ";", ":", ", and", "while", "whereas", "but".
  size_t clause_end(size_t pos) const {
    const size_t end = clause_boundary_after(pos);
    for (const WordAt& w : words_in(s_, pos, end)) {
      if (opens_clause(w)) return w.pos;
    }
    return end;
  }

  bool opens_clause(const WordAt& w) const {
    return w.word == "while" || w.word == "whereas" || w.word == "but" ||
           (w.word == "and" && w.pos >= s_.begin + 2 && s_.text[w.pos - 2] == ',');
  }

  Direction direction(const WrittenNumber& n) const {
    Direction d;
    // A comparative right after the number ("16.7% lower", "20 points higher") speaks for it;
    // so does "above" or "below" a few words on ("4.3 standard deviations below the median").
    size_t stop = clause_boundary_after(n.end);
    for (const WrittenNumber* m : s_.numbers) {
      if (m->begin >= n.end) stop = std::min(stop, m->begin);
    }
    const std::span<const WordAt> after = words_in(s_, n.end, stop);
    for (size_t k = 0; k < after.size() && k < 3; ++k) {
      if (const int c = comparative_word(after[k].word, true); c != 0) {
        d.sign = c;
        d.adjacent = true;
        return d;
      }
    }
    for (size_t k = 0; k < after.size() && k < 5; ++k) {
      if (after[k].word == "above" || after[k].word == "below") {
        d.sign = after[k].word == "above" ? 1 : -1;
        d.adjacent = true;
        return d;
      }
    }
    const std::span<const WordAt> before = words_in(s_, clause_start(n.begin), n.begin);
    size_t between = 0;  // words between the direction word and the number
    for (auto it = before.rbegin(); it != before.rend(); ++it, ++between) {
      if (const int c = change_word(it->word); c != 0) {
        d.sign = c;
        d.change = true;
        d.adjacent = between == 0 ||
                     (between == 1 && (before.back().word == "by" || before.back().word == "of"));
        // Nothing but blanks and the words counted between the word and the number.
        if (d.adjacent) {
          const size_t word_end = it->pos + it->word.size();
          const std::string_view gap = s_.lowered.substr(word_end, n.begin - word_end);
          d.adjacent = gap.find_first_of("(),;:") == std::string_view::npos;
        }
        return d;
      }
      if (const int c = comparative_word(it->word, false); c != 0) {
        // "up to 5%" is a bound, not a rise.
        if (it->word == "up" && s_.lowered.substr(it->pos, 5) == "up to") continue;
        d.sign = c;
        return d;
      }
    }
    return d;
  }

  // The period written next to a number: "1,437 thousand MWh in 2001", "... in March 2009",
  // "in 1976 (1.74", "in September (20.6", or opening its clause: "In 2017, ... (51.9%)".
  std::optional<Period> bound_period(size_t index) const {
    if (std::optional<Period> p = tight_period(index)) return p;
    return clause_period(index);
  }

  std::optional<Period> tight_period(size_t index) const {
    const WrittenNumber& n = *s_.numbers[index];
    if (index + 1 < s_.numbers.size() && is_year(*s_.numbers[index + 1])) {
      const WrittenNumber& y = *s_.numbers[index + 1];
      const size_t cut = before_period_word(s_.lowered, n.end, y.begin);
      const std::string_view between = s_.lowered.substr(n.end, cut - n.end);
      const std::span<const WordAt> w = words_in(s_, n.end, cut);
      if (between.find_first_of("(),;:[]0123456789") == std::string_view::npos && !w.empty() &&
          w.back().word == "in") {
        return year_as_written(y);
      }
    }
    // "in 1976 (1.74", "in September (20.6".
    size_t open = n.begin;
    while (open > s_.begin && is_blank(s_.text[open - 1])) --open;
    if (open > s_.begin && s_.text[open - 1] == '(') {
      const size_t paren = open - 1;
      if (index > 0 && is_year(*s_.numbers[index - 1]) && s_.numbers[index - 1]->end <= paren &&
          text::trim(s_.text.substr(s_.numbers[index - 1]->end, paren - s_.numbers[index - 1]->end))
              .empty()) {
        return year_as_written(*s_.numbers[index - 1]);
      }
      const std::span<const WordAt> w = words_in(s_, clause_start(n.begin), paren);
      if (w.size() >= 2 && w[w.size() - 2].word == "in" && w.back().word.size() >= 3) {
        const size_t word_end = w.back().pos + w.back().word.size();
        const int month = text::month_from_name(w.back().word);
        if (month > 0 && text::trim(s_.text.substr(word_end, paren - word_end)).empty()) {
          Period p;
          p.month = month;
          return p;
        }
      }
    }
    // "January 340, February 357": a month right before the number.
    if (!is_year(n)) {
      size_t i = n.begin;
      while (i > s_.begin && is_blank(s_.text[i - 1])) --i;
      const std::span<const WordAt> w = words_in(s_, clause_start(n.begin), i);
      if (i < n.begin && !w.empty() && w.back().pos + w.back().word.size() == i &&
          w.back().word.size() >= 3) {
        if (const int month = text::month_from_name(w.back().word); month > 0) {
          Period p;
          p.month = month;
          return p;
        }
      }
    }
    return std::nullopt;
  }

  // A clause that opens "In 2017," or "in March 2009": its numbers are that period's.
  std::optional<Period> clause_period(size_t index) const {
    const WrittenNumber& n = *s_.numbers[index];
    const size_t clause = clause_boundary_before(n.begin);
    const std::span<const WordAt> first = words_in(s_, clause, std::min(n.begin, clause + 24));
    if (!first.empty() && first.front().word == "in") {
      for (size_t k = 0; k < index; ++k) {
        const WrittenNumber& y = *s_.numbers[k];
        if (y.begin < clause || !is_year(y) || s_.range_partner[k] >= 0) continue;
        const size_t b = before_period_word(s_.lowered, clause, y.begin);
        const size_t after_in = first.front().pos + 2;
        if (b >= after_in && text::trim(s_.lowered.substr(after_in, b - after_in)).empty()) {
          return year_as_written(y);
        }
      }
    }
    return std::nullopt;
  }

  // The period range right after a number: "+25% a year from 2001 to 2009".
  // The period range after a number, before any comma: "+25% a year from 2001 to 2009",
  // "+0.383% a year (+1.31 ppm a year) from 1959 to 2001".
  std::optional<std::pair<Period, Period>> bound_range(size_t index) const {
    const WrittenNumber& n = *s_.numbers[index];
    for (size_t k = index + 1; k + 1 < s_.numbers.size(); ++k) {
      if (s_.range_partner[k] != static_cast<int64_t>(k + 1)) continue;
      const WrittenNumber& a = *s_.numbers[k];
      const size_t cut = before_period_word(s_.lowered, n.end, a.begin);
      const std::string_view between = s_.lowered.substr(n.end, cut - n.end);
      if (between.find_first_of(",;:[]") != std::string_view::npos) return std::nullopt;
      if (words_in(s_, n.end, cut).size() > 12) return std::nullopt;
      return std::make_pair(year_as_written(a), year_as_written(*s_.numbers[k + 1]));
    }
    return std::nullopt;
  }

  // Whether the value's entity is named where the number stands (verify.h).
  bool entity_named(const WrittenNumber& n, const Value& v) const {
    const std::string& entity = v.entity;
    // The entities the sentence names that compete for the number: not the fact's own
    // measures ("single" in "District of Columbia stands out in single: 48%").
    std::vector<const std::string*> competing;
    for (const std::string& named : s_.named_entities) {
      const bool own_measure =
          v.fact && named != entity &&
          std::any_of(v.fact->measures.begin(), v.fact->measures.end(),
                      [&](const std::string& m) { return text::words(m) == text::words(named); });
      if (!own_measure) competing.push_back(&named);
    }
    if (competing.size() <= 1) return analysis::names(s_.naming_words, entity);
    // The stretch between the neighbouring numbers, within the clause.
    size_t b = clause_start(n.begin);
    size_t e = clause_end(n.end);
    for (size_t k = 0; k < s_.numbers.size(); ++k) {
      const WrittenNumber& m = *s_.numbers[k];
      if (s_.in_name[k].second || &m == &n) continue;
      if (m.end <= n.begin) b = std::max(b, m.end);
      if (m.begin >= n.end) e = std::min(e, m.begin);
    }
    // "Fossil Fuels (51.9%), Renewables (38.8%)", "Renewables (+20,496 thousand MWh or
    // +1,426%)": a number in parentheses belongs to the name right before them.
    if (const size_t open = enclosing_parenthesis(n.begin); open != std::string::npos) {
      size_t from = clause_start(open);
      for (const WrittenNumber* m : s_.numbers) {
        if (m->end <= open) from = std::max(from, m->end);
      }
      if (const std::string* nearest = named_nearest_before(from, open, competing)) {
        return analysis::names(text::words(*nearest), entity);
      }
    }
    const std::vector<std::string> window = naming_words(s_.text.substr(b, e - b));
    for (const std::string* named_ptr : competing) {
      const std::string& named = *named_ptr;
      if (analysis::names(window, named)) return analysis::names(window, entity);
    }
    // No entity there: the one named nearest before the number, else the one named nearest
    // after it in its clause.
    const size_t clause_end = clause_boundary_after(n.end);
    const std::string* nearest = named_nearest_before(s_.begin, n.begin, competing);
    size_t nearest_at = 0;
    if (!nearest) {
      const std::vector<size_t> ends = word_ends(n.end, clause_end);
      for (const std::string* named_ptr : competing) {
        const std::string& named = *named_ptr;
        // The earliest word end up to which the text from the number names it.
        size_t lo = 0, hi = ends.size();
        while (lo < hi) {
          const size_t mid = (lo + hi) / 2;
          if (analysis::names(naming_words(s_.text.substr(n.end, ends[mid] - n.end)), named)) {
            hi = mid;
          } else {
            lo = mid + 1;
          }
        }
        if (lo == ends.size()) continue;
        if (!nearest || ends[lo] < nearest_at) {
          nearest = &named;
          nearest_at = ends[lo];
        }
      }
    }
    return nearest && analysis::names(text::words(*nearest), entity);
  }

  // The latest word start in [from, to) from which the text up to `to` still names `named`
  // (npos when it does not): a binary search, remembered (every value a number matches asks).
  size_t mention_start(size_t from, size_t to, const std::string* named) const {
    const auto key = std::make_tuple(from, to, named);
    if (const auto it = mention_starts_.find(key); it != mention_starts_.end()) return it->second;
    const std::vector<size_t> starts = word_starts(from, to);
    size_t lo = 0, hi = starts.size();
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (analysis::names(naming_words(s_.text.substr(starts[mid], to - starts[mid])), *named)) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const size_t at = lo == 0 ? std::string::npos : starts[lo - 1];
    mention_starts_.emplace(key, at);
    return at;
  }

  // Of `names`, the one named nearest before `to` in [from, to): its mention starts last.
  const std::string* named_nearest_before(size_t from, size_t to,
                                          const std::vector<const std::string*>& names) const {
    const std::string* nearest = nullptr;
    size_t nearest_at = 0;
    std::vector<std::pair<const std::string*, size_t>> mentioned;
    for (const std::string* named : names) {
      const size_t at = mention_start(from, to, named);
      if (at == std::string::npos) continue;
      mentioned.push_back({named, at});
      if (!nearest || at > nearest_at) {
        nearest = named;
        nearest_at = at;
      }
    }
    // "service providing" inside "private service providing" is that longer name's mention.
    for (const auto& [named, at] : mentioned) {
      if (nearest && named->size() > nearest->size() && at < nearest_at &&
          nearest_at - at <= named->size() && analysis::names(text::words(*named), *nearest)) {
        return named;
      }
    }
    return nearest;
  }

  std::vector<std::string> naming_words(std::string_view text) const {
    std::vector<std::string> out = text::words(text);
    std::erase_if(out, [&](const std::string& w) { return !can_name(w, *s_.unit_words); });
    return out;
  }

  // Where the parenthesis around `pos` opens; npos when none does.
  size_t enclosing_parenthesis(size_t pos) const {
    for (size_t i = pos; i > s_.begin; --i) {
      const char c = s_.text[i - 1];
      if (c == ')') return std::string::npos;
      if (c == '(') return i - 1;
    }
    return std::string::npos;
  }

  size_t clause_boundary_before(size_t pos) const {
    for (size_t i = pos; i > s_.begin; --i) {
      if (s_.text[i - 1] == ';' || s_.text[i - 1] == ':') return i;
    }
    return s_.begin;
  }

  size_t clause_boundary_after(size_t pos) const {
    for (size_t i = pos; i < s_.end; ++i) {
      if (s_.text[i] == ';' || s_.text[i] == ':') return i;
    }
    return s_.end;
  }

  static bool word_char(char c) {
    const unsigned char u = static_cast<unsigned char>(c);
    return std::isalnum(u) != 0 || u >= 0x80;
  }

  std::vector<size_t> word_ends(size_t b, size_t e) const {
    std::vector<size_t> out;
    for (size_t i = b; i < e; ++i) {
      if (word_char(s_.text[i]) && (i + 1 == e || !word_char(s_.text[i + 1]))) out.push_back(i + 1);
    }
    return out;
  }

  std::vector<size_t> word_starts(size_t b, size_t e) const {
    std::vector<size_t> out;
    for (size_t i = b; i < e; ++i) {
      const unsigned char c = static_cast<unsigned char>(s_.text[i]);
      const bool word = std::isalnum(c) != 0 || c >= 0x80;
      const bool prev_word =
          i > b && (std::isalnum(static_cast<unsigned char>(s_.text[i - 1])) != 0 ||
                    static_cast<unsigned char>(s_.text[i - 1]) >= 0x80);
      if (word && !prev_word) out.push_back(i);
    }
    return out;
  }

  std::string evidence_word() const {
    if (!s_.cited) return "fact the sentence names";
    return s_.cites_facts ? "cited fact" : "cited source";
  }

  std::string evidence_noun() const {
    if (!s_.cited) return "facts the sentence names";
    return s_.cites_facts ? "cited facts" : "cited sources";
  }

  const Sentence& s_;
  mutable std::map<std::tuple<size_t, size_t, const std::string*>, size_t> mention_starts_;
};

// ---------------------------------------------------------------------------------------------
// Support of a passage

bool is_content_word(const std::string& w) {
  if (w.size() < 4 || all_digits(w)) return false;
  if (std::any_of(w.begin(), w.end(), is_digit)) return false;
  // analysis::names() refuses a lone stop word: the question profile's list serves here too.
  static const std::array<std::string_view, 32> kStop = {
      "about", "after", "also", "been",  "could", "does",  "each",      "from",
      "have",  "into",  "only", "same",  "some",  "such",  "their",     "them",
      "then",  "these", "they", "this",  "very",  "what",  "when",      "where",
      "which", "while", "with", "would", "your",  "other", "according", "whose"};
  if (std::find(kStop.begin(), kStop.end(), w) != kStop.end()) return false;
  return analysis::names({w}, w);
}

// Pairs of years that write a range: "2001-2017", "from 2001 to 2017", "January 2008 to
// December 2009", "between 2001 and 2017".
void mark_ranges(Sentence& s) {
  s.range_partner.assign(s.numbers.size(), -1);
  for (size_t i = 0; i + 1 < s.numbers.size(); ++i) {
    const WrittenNumber& a = *s.numbers[i];
    const WrittenNumber& b = *s.numbers[i + 1];
    if (!is_year(a) || !is_year(b) || s.range_partner[i] >= 0) continue;
    const size_t cut = before_period_word(s.lowered, a.end, b.begin);
    const std::string_view between = text::trim(s.lowered.substr(a.end, cut - a.end));
    bool range = between == "-" || between == "\xE2\x80\x93" || between == "to" ||
                 between == "through" || between == "until";
    if (between == "and") {
      const size_t a_begin = before_period_word(s.lowered, s.begin, a.begin);
      const std::span<const WordAt> w = words_in(s, s.begin, a_begin);
      range = !w.empty() && w.back().word == "between";
    }
    if (!range) continue;
    s.range_partner[i] = static_cast<int64_t>(i + 1);
    s.range_partner[i + 1] = static_cast<int64_t>(i);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Verifier::Impl {
  const Citable& citable;
  const Evidence evidence;
  const std::vector<FactEvidence>& facts = evidence.facts;
  const std::unordered_map<std::string, std::vector<std::string>>& table_entities =
      evidence.table_entities;
  const std::vector<std::string>& unit_words = evidence.unit_words;

  explicit Impl(const Citable& c) : citable(c), evidence(c.facts(), c.sources()) {}

  // The sentence at [begin, end) of the block with its evidence.
  Sentence sentence(std::string_view text, std::string_view lowered, size_t begin, size_t end,
                    const std::vector<CitationGroup>& groups, const KeyOf& key_of) const {
    Sentence s;
    s.text = text;
    s.lowered = lowered;
    s.begin = begin;
    s.end = end;
    s.one_line = text::one_line(text.substr(begin, end - begin));
    s.words = text::words(text.substr(begin, end - begin));
    s.word_index = words_at(lowered, begin, end);
    s.unit_words = &unit_words;
    s.naming_words = s.words;
    std::erase_if(s.naming_words, [&](const std::string& w) { return !can_name(w, unit_words); });
    for (const CitationGroup& g : groups) {
      if (g.begin < begin || g.begin >= end) continue;
      for (const std::string& item : g.items) {
        const std::string key = key_of(item);
        if (key.empty()) continue;
        const std::optional<Reference> ref = citable.find(key);
        if (!ref) continue;
        s.cited = true;
        if (ref->fact) {
          s.cites_facts = true;
          const FactEvidence* e = evidence.fact_index.at(ref->fact);
          if (std::find(s.facts.begin(), s.facts.end(), e) == s.facts.end()) s.facts.push_back(e);
        } else {
          const SourceEvidence* e = evidence.source_index.at(ref->source);
          if (std::find(s.sources.begin(), s.sources.end(), e) == s.sources.end()) {
            s.sources.push_back(e);
          }
        }
      }
    }
    if (!s.cited) {
      // Uncited: the facts whose focus the sentence names.
      for (const FactEvidence& e : facts) {
        for (const std::string& m : e.fact->mentions) {
          // An entity by the words that can name one; a measure by any word.
          const bool entity =
              std::find(e.entities.begin(), e.entities.end(), m) != e.entities.end();
          if (analysis::names(entity ? s.naming_words : s.words, m)) {
            s.facts.push_back(&e);
            break;
          }
        }
      }
    }
    for (const FactEvidence* f : s.facts) {
      for (const std::string& entity : table_entities.at(f->fact->table)) {
        if (std::find(s.entities.begin(), s.entities.end(), entity) == s.entities.end()) {
          s.entities.push_back(entity);
        }
      }
    }
    for (const std::string& entity : s.entities) {
      if (analysis::names(s.naming_words, entity)) s.named_entities.push_back(entity);
    }
    // "private" inside "private service providing" is that one name, not two.
    std::vector<std::string> whole;
    for (const std::string& e : s.named_entities) {
      const std::vector<std::string> words = text::words(e);
      // Part of a longer name the sentence names, and named nowhere else.
      const bool part = std::any_of(
          s.named_entities.begin(), s.named_entities.end(), [&](const std::string& other) {
            if (other.size() <= e.size() || !analysis::names(text::words(other), e)) return false;
            std::string rest = s.one_line;
            const std::string lowered_other = text::lower(other);
            std::string lowered_rest = text::lower(rest);
            for (size_t at = lowered_rest.find(lowered_other); at != std::string::npos;
                 at = lowered_rest.find(lowered_other, at)) {
              lowered_rest.replace(at, lowered_other.size(),
                                   std::string(lowered_other.size(), ' '));
            }
            std::vector<std::string> rest_words = text::words(lowered_rest);
            std::erase_if(rest_words,
                          [&](const std::string& w) { return !can_name(w, unit_words); });
            return !analysis::names(rest_words, e);
          });
      if (!part) whole.push_back(e);
    }
    s.named_entities = std::move(whole);
    return s;
  }
};

Verifier::Verifier(const Citable& citable) : impl_(std::make_unique<Impl>(citable)) {}
Verifier::~Verifier() = default;

void Verifier::check_numbers(std::string_view text, const std::string& section, const KeyOf& key_of,
                             std::vector<NumberCheck>& out) const {
  const std::vector<WrittenNumber> numbers = scan_numbers(text);
  if (numbers.empty()) return;
  const std::string lowered = text::lower(text);
  const std::vector<CitationGroup> groups = citation_groups(text);
  const std::vector<SentenceSpan> spans = split_sentences(text);
  size_t next = 0;
  for (const SentenceSpan& span : spans) {
    if (next >= numbers.size()) break;
    if (numbers[next].begin >= span.end) continue;
    Sentence s = impl_->sentence(text, lowered, span.begin, span.end, groups, key_of);
    while (next < numbers.size() && numbers[next].begin < span.end) {
      s.numbers.push_back(&numbers[next++]);
    }
    // Digits inside a name of the evidence ("per 100,000 population") are not claims.
    for (const WrittenNumber* n : s.numbers) {
      std::pair<const FactEvidence*, const std::string*> name{nullptr, nullptr};
      for (const FactEvidence* f : s.facts) {
        for (const std::string& digit_name : f->digit_names) {
          for (size_t at = lowered.find(digit_name, span.begin);
               !name.second && at != std::string::npos && at < span.end;
               at = lowered.find(digit_name, at + 1)) {
            if (at <= n->begin && n->end <= at + digit_name.size()) name = {f, &digit_name};
          }
        }
      }
      s.in_name.push_back(name);
    }
    mark_ranges(s);
    const SentenceChecker checker(s);
    const std::string context = text::shorten(s.one_line, 400);
    for (size_t i = 0; i < s.numbers.size(); ++i) {
      const Outcome o = checker.check(i);
      NumberCheck c;
      c.text = std::string(text::trim(s.numbers[i]->text));
      c.value = s.numbers[i]->value;
      c.section = section;
      c.context = context;
      c.verified = o.verified;
      c.fact_key = o.fact_key;
      c.source_key = o.source_key;
      c.how = o.how;
      c.reason = o.reason;
      out.push_back(std::move(c));
    }
  }
}

void Verifier::check_support(CitationCheck& citation) const {
  if (!citation.resolved) return;
  const std::optional<Reference> ref = impl_->citable.find(citation.key);
  if (!ref || !ref->source || ref->source->kind == "table") return;
  const SourceEvidence& passage = *impl_->evidence.source_index.at(ref->source);
  // The sentence's own numbers and content words.
  std::vector<std::string> terms;
  for (const std::string& w : text::words(citation.sentence)) {
    if (is_content_word(w) && std::find(terms.begin(), terms.end(), w) == terms.end()) {
      terms.push_back(w);
    }
  }
  std::vector<std::string> missing_terms;
  for (const std::string& t : terms) {
    if (!analysis::names(passage.words, t)) missing_terms.push_back(t);
  }
  std::vector<std::string> missing_numbers;
  const std::vector<WrittenNumber> numbers = scan_numbers(citation.sentence);
  for (const WrittenNumber& n : numbers) {
    const bool held = std::any_of(passage.numbers.begin(), passage.numbers.end(), [&](double v) {
      return std::fabs(std::fabs(n.value) - std::fabs(v)) <=
             n.half_step + 1e-9 * std::max(1.0, std::fabs(v));
    });
    if (!held) missing_numbers.push_back(std::string(text::trim(n.text)));
  }
  const size_t held_terms = terms.size() - missing_terms.size();
  const bool by_terms = !terms.empty() && held_terms * 2 >= terms.size();
  const bool by_numbers = !numbers.empty() && missing_numbers.empty();
  citation.supported = by_terms || by_numbers || (terms.empty() && numbers.empty());
  if (citation.supported) return;
  std::string missing;
  for (size_t i = 0; i < missing_terms.size() && i < 6; ++i) {
    missing += (i ? ", " : "") + missing_terms[i];
  }
  citation.reason = "the passage holds " + std::to_string(held_terms) + " of " +
                    std::to_string(terms.size()) +
                    " key terms of the sentence (missing: " + missing + ")";
  if (!missing_numbers.empty()) {
    std::string nums;
    for (size_t i = 0; i < missing_numbers.size() && i < 4; ++i) {
      nums += (i ? ", " : "") + missing_numbers[i];
    }
    citation.reason += " and not " + nums;
  }
}

std::string verification_summary(const FinalReport& r) {
  const size_t verified = r.numbers.size() - static_cast<size_t>(r.unverified_numbers);
  std::string line =
      std::to_string(r.numbers.size()) + " numbers checked: " + std::to_string(verified) +
      " verified against the facts and sources their sentences cite, " +
      std::to_string(r.unverified_numbers) + " unverified. " + std::to_string(r.citations.size()) +
      " citations: " + std::to_string(r.unresolved_citations) + " unresolved and removed";
  if (r.unsupported_citations > 0) {
    line += ", " + std::to_string(r.unsupported_citations) + " not supported by the passage";
  }
  return line + ".";
}

void summarize(FinalReport& r, const std::vector<FigureRef>& figure_refs) {
  r.unresolved_citations = 0;
  r.unsupported_citations = 0;
  r.unverified_numbers = 0;
  for (const CitationCheck& c : r.citations) {
    r.unresolved_citations += !c.resolved;
    r.unsupported_citations += c.resolved && !c.supported;
  }
  for (const NumberCheck& n : r.numbers) r.unverified_numbers += !n.verified;
  int32_t unknown_refs = 0;
  for (const FigureRef& f : figure_refs) unknown_refs += !f.resolved;

  // Built by assignment and moves: initializer lists copy every element (this runs once per
  // re-verification).
  nlohmann::json citations = nlohmann::json::array();
  for (const CitationCheck& c : r.citations) {
    nlohmann::json j = nlohmann::json::object();
    j["key"] = c.key;
    j["section"] = c.section;
    j["number"] = c.number;
    j["kind"] = c.kind;
    j["resolved"] = c.resolved;
    j["supported"] = c.supported;
    j["reason"] = c.reason;
    j["sentence"] = c.sentence;
    citations.push_back(std::move(j));
  }
  nlohmann::json numbers = nlohmann::json::array();
  for (const NumberCheck& n : r.numbers) {
    nlohmann::json j = nlohmann::json::object();
    j["text"] = n.text;
    j["value"] = n.value;
    j["section"] = n.section;
    j["sentence"] = n.context;
    j["verified"] = n.verified;
    j["fact_key"] = n.fact_key;
    j["source_key"] = n.source_key;
    j["how"] = n.how;
    j["reason"] = n.reason;
    numbers.push_back(std::move(j));
  }
  nlohmann::json refs = nlohmann::json::array();
  for (const FigureRef& f : figure_refs) {
    nlohmann::json j = nlohmann::json::object();
    j["key"] = f.key;
    j["kind"] = f.kind;
    j["section"] = f.section;
    j["resolved"] = f.resolved;
    j["number"] = f.number;
    refs.push_back(std::move(j));
  }
  nlohmann::json summary = nlohmann::json::object();
  summary["citations"] = r.citations.size();
  summary["unresolved_citations"] = r.unresolved_citations;
  summary["unsupported_citations"] = r.unsupported_citations;
  summary["numbers"] = r.numbers.size();
  summary["verified_numbers"] = r.numbers.size() - static_cast<size_t>(r.unverified_numbers);
  summary["unverified_numbers"] = r.unverified_numbers;
  summary["unknown_figure_refs"] = unknown_refs;
  r.verification = nlohmann::json::object();
  r.verification["citations"] = std::move(citations);
  r.verification["numbers"] = std::move(numbers);
  r.verification["figure_refs"] = std::move(refs);
  r.verification["summary"] = std::move(summary);
}

}  // namespace kdr::hka::report
