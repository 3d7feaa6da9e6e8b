#include "hka/analysis/question.h"

#include <algorithm>
#include <map>
#include <set>

#include "hka/text.h"

namespace kdr::hka::analysis {

namespace {

const std::set<std::string>& stop_words() {
  static const std::set<std::string> kStop = {
      "a",       "about",  "across", "after",   "against", "all",      "also",         "among",
      "an",      "and",    "any",    "are",     "as",      "at",       "be",           "been",
      "between", "both",   "by",     "can",     "compare", "compared", "did",          "do",
      "does",    "during", "each",   "for",     "from",    "has",      "have",         "how",
      "in",      "into",   "is",     "it",      "its",     "many",     "much",         "of",
      "on",      "or",     "over",   "since",   "than",    "that",     "the",          "their",
      "them",    "there",  "these",  "they",    "this",    "those",    "through",      "to",
      "was",     "were",   "what",   "when",    "where",   "whether",  "which",        "while",
      "who",     "why",    "will",   "with",    "within",  "would",    "year",         "years",
      "data",    "table",  "value",  "values",  "change",  "changed",  "changes",      "trend",
      "trends",  "rate",   "rates",  "total",   "level",   "levels",   "number",       "amount",
      "per",     "most",   "least",  "highest", "lowest",  "more",     "less",         "fast",
      "faster",  "grow",   "grew",   "growth",  "relate",  "related",  "relationship", "take",
      "took",    "long",   "deep",   "did",     "done",    "show",     "shows"};
  return kStop;
}

const std::map<std::string, std::vector<std::string>>& kind_words() {
  static const std::map<std::string, std::vector<std::string>> kWords = {
      {"change",
       {"change",   "changed",   "changes",  "changing",  "compare",     "compared", "comparison",
        "versus",   "evolve",    "evolved",  "evolution", "rise",        "rose",     "risen",
        "fall",     "fell",      "fallen",   "decline",   "declined",    "drop",     "dropped",
        "increase", "increased", "decrease", "decreased", "over time",   "since",    "trend",
        "trends",   "shift",     "shifted",  "moved",     "development", "developed"}},
      {"growth",
       {"grow",     "grew",      "grown",      "growth",      "growing",      "fast",
        "faster",   "fastest",   "pace",       "rate of",     "compound",     "expand",
        "expanded", "expansion", "accelerate", "accelerated", "accelerating", "acceleration",
        "slow",     "slowed",    "slowing",    "decelerate",  "speed"}},
      {"acceleration",
       {"accelerate", "accelerated", "accelerating", "acceleration", "slowed", "slowing",
        "decelerate", "decelerated", "speed up", "sped up", "pick up", "picked up"}},
      {"association",
       {"relate",     "relates",     "related",    "relationship", "relation",   "correlate",
        "correlated", "correlation", "correlates", "associate",    "associated", "association",
        "link",       "linked",      "depend",     "depends",      "affect",     "affects",
        "impact",     "influence",   "versus",     "vs",           "explain",    "explains",
        "factor",     "factors",     "driver",     "drivers",      "connected",  "tied"}},
      {"mix",
       {"mix", "share", "shares", "composition", "proportion", "proportions", "breakdown",
        "portion", "makeup", "make up", "structure", "dominant", "dominate", "dominated",
        "percentage of", "fraction"}},
      {"seasonality",
       {"season", "seasonal", "seasonality", "month", "monthly", "months", "cycle", "cyclical",
        "calendar", "summer", "winter", "spring", "autumn", "quarterly", "annual cycle"}},
      {"extreme",
       {"highest", "lowest",  "most",      "least",   "top",    "bottom",  "largest", "smallest",
        "biggest", "rank",    "ranking",   "ranked",  "best",   "worst",   "extreme", "extremes",
        "record",  "maximum", "minimum",   "peak",    "peaks",  "warmest", "coldest", "hottest",
        "wettest", "driest",  "strongest", "weakest", "leader", "leading", "lag",     "lagging"}},
      {"distribution",
       {"distribution", "distributed", "spread", "median", "typical", "range", "vary", "varies",
        "variation", "variability", "dispersion", "inequality", "disparity", "disparities"}},
      {"outlier",
       {"outlier", "outliers", "unusual", "anomaly", "anomalies", "anomalous", "exceptional",
        "stand out", "stands out"}},
      {"drawdown",
       {"deep", "depth", "loss", "losses", "lost", "recession", "recover", "recovered", "recovery",
        "crash", "slump", "downturn", "crisis", "trough", "bottomed", "collapse"}}};
  return kWords;
}

// The fact types that serve each kind.
const std::map<std::string, std::set<std::string>>& kind_types() {
  static const std::map<std::string, std::set<std::string>> kTypes = {
      {"change", {"change", "rank", "trend", "proportion", "mix", "difference"}},
      {"growth", {"trend", "acceleration", "periods", "difference", "change", "rank", "series"}},
      {"acceleration", {"acceleration", "periods", "trend"}},
      {"association", {"association", "rank"}},
      {"mix", {"mix", "proportion", "change"}},
      {"seasonality", {"seasonality", "extreme"}},
      {"extreme", {"rank", "extreme", "value", "drawdown", "outlier"}},
      {"distribution", {"distribution", "rank", "outlier"}},
      {"outlier", {"outlier", "distribution"}},
      {"drawdown", {"drawdown", "extreme", "change"}}};
  return kTypes;
}

std::string stem(const std::string& w) {
  if (w.size() > 4 && w.ends_with("ies")) return w.substr(0, w.size() - 3) + "y";
  if (w.size() > 4 && w.ends_with("es") && (w.ends_with("ses") || w.ends_with("xes")))
    return w.substr(0, w.size() - 2);
  if (w.size() > 3 && w.ends_with("s") && !w.ends_with("ss")) return w.substr(0, w.size() - 1);
  return w;
}

// Measure names are matched more loosely than entity names: "investment" names "invest".
bool measure_word_matches(const std::string& a, const std::string& b) {
  const std::string& s = a.size() < b.size() ? a : b;
  const std::string& l = a.size() < b.size() ? b : a;
  if (s.size() >= 5 && l.starts_with(s) && l.size() - s.size() <= 5) return true;
  return false;
}

bool word_matches(const std::string& a, const std::string& b) {
  if (a == b) return true;

  const std::string sa = stem(a), sb = stem(b);
  if (sa == sb) return true;
  // "russia" / "russian", "iran" / "iranian": a demonym suffix.
  const std::string& shorter = sa.size() < sb.size() ? sa : sb;
  const std::string& longer = sa.size() < sb.size() ? sb : sa;
  if (shorter.size() >= 4 && longer.starts_with(shorter)) {
    const std::string rest = longer.substr(shorter.size());
    return rest == "n" || rest == "an" || rest == "ian" || rest == "ish" || rest == "ese" ||
           rest == "ized" || rest == "ised" || rest == "ization" || rest == "isation";
  }
  return false;
}

// A question word inside a glued label word: "gdp" in "realgdp", "real" in "realgdp".
bool glued_match(const std::string& term, const std::string& label_word) {
  if (term.size() < 3 || term.size() > 4 || label_word.size() <= term.size() ||
      label_word.size() > term.size() + 5)
    return false;
  if (stop_words().count(term)) return false;
  if (std::any_of(term.begin(), term.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  return label_word.starts_with(term) || label_word.ends_with(term);
}

// Words of a name that identify it: the part before a comma or parenthesis, less stop words.
std::vector<std::string> head_words(const std::string& name) {
  std::string head = name;
  const size_t cut = head.find_first_of(",(");
  if (cut != std::string::npos && cut > 0) head = head.substr(0, cut);
  std::vector<std::string> out;
  for (const std::string& w : text::words(head)) {
    if (w == "and" || w == "of" || w == "the" || w == "total") continue;
    out.push_back(w);
  }
  return out;
}

bool has_kind_word(const std::string& lowered, const std::string& word) {
  return text::has_word(lowered, word);
}

}  // namespace

bool is_aggregate_name(const std::string& name) {
  const std::string l = text::lower(name);
  for (const char* w : {"income",
                        "world",
                        "small states",
                        "members",
                        "euro area",
                        "european union",
                        "countries",
                        "situations",
                        "ida ",
                        "ida&",
                        "ibrd",
                        "dividend",
                        "excluding",
                        "(all",
                        "only)",
                        "& ",
                        "baltics",
                        "region",
                        "total",
                        "sub-saharan",
                        "south asia",
                        "north america",
                        "latin america",
                        "middle east",
                        "east asia",
                        "europe & central",
                        "arab world",
                        "oecd",
                        "heavily indebted",
                        "least developed",
                        "fragile"}) {
    if (l.find(w) != std::string::npos) return true;
  }
  return false;
}

const std::vector<std::string>& kinds_in_order() {
  static const std::vector<std::string> kOrder = {
      "mix",         "change",   "growth",  "acceleration", "association",
      "seasonality", "drawdown", "extreme", "distribution", "outlier"};
  return kOrder;
}

const std::vector<std::string>& answer_types(const std::string& kind) {
  static const std::map<std::string, std::vector<std::string>> kTypes = {
      {"mix", {"mix", "proportion"}},
      {"change", {"rank", "change", "proportion"}},
      {"growth", {"periods", "difference", "rank", "acceleration", "trend", "change", "series"}},
      {"acceleration", {"periods", "acceleration", "trend"}},
      {"association", {"rank", "association"}},
      {"seasonality", {"seasonality", "extreme"}},
      {"drawdown", {"drawdown", "rank"}},
      {"extreme", {"rank", "extreme"}},
      {"distribution", {"distribution"}},
      {"outlier", {"outlier"}}};
  static const std::vector<std::string> kNone;
  const auto it = kTypes.find(kind);
  return it == kTypes.end() ? kNone : it->second;
}

bool answers(const Fact& fact, const std::string& kind) {
  const std::vector<std::string>& types = answer_types(kind);
  if (std::find(types.begin(), types.end(), fact.type) == types.end()) return false;
  if (fact.type != "rank" || fact.values.empty()) return true;
  const std::string& by = fact.values.front().name;
  if (kind == "association") return by == "r";
  if (kind == "change" || kind == "drawdown" || kind == "growth")
    return by == "pct_change" || by == "change";
  if (kind == "extreme") return by == "value";
  return true;
}

QuestionProfile profile_question(const std::string& question) {
  QuestionProfile q;
  q.text = question;
  const std::string lowered = text::lower(question);
  for (const auto& [kind, words] : kind_words()) {
    for (const std::string& w : words) {
      if (has_kind_word(lowered, w)) {
        q.kinds.insert(kind);
        break;
      }
    }
  }
  std::vector<int> years;
  for (const std::string& w : text::words(question)) {
    if (w.size() == 4 &&
        std::all_of(w.begin(), w.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      const int y = std::stoi(w);
      if (y >= 1000 && y <= 2200) years.push_back(y);
      continue;
    }
    // "1990s": the decade.
    if (w.size() == 5 && w.back() == 's' &&
        std::all_of(w.begin(), w.end() - 1, [](char c) { return c >= '0' && c <= '9'; })) {
      const int y = std::stoi(w.substr(0, 4));
      if (y >= 1000 && y <= 2200) {
        years.push_back(y);
        years.push_back(y + 9);
      }
      continue;
    }
    if (stop_words().count(w) || w.size() < 2) continue;
    if (std::find(q.terms.begin(), q.terms.end(), w) == q.terms.end()) q.terms.push_back(w);
  }
  // Sub-periods: "1960-1970", "1960–70", "from 1960 to 1970", "between 1960 and 1970", "1960s".
  {
    const std::vector<std::string> w = text::words(question);
    auto year_at = [&](size_t i) -> std::optional<int> {
      if (i >= w.size() || w[i].size() != 4 ||
          !std::all_of(w[i].begin(), w[i].end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
      const int y = std::stoi(w[i]);
      return y >= 1000 && y <= 2200 ? std::optional<int>(y) : std::nullopt;
    };
    for (size_t i = 0; i < w.size(); ++i) {
      const std::optional<int> a = year_at(i);
      if (a) {
        // "1960 to 1970", "1960 and 1970" (after "between"), "1960-1970" (the dash splits words)
        if (const std::optional<int> b = year_at(i + 1); b && *b > *a) {
          q.ranges.push_back({*a, *b});
          ++i;
          continue;
        }
        if (i + 2 < w.size() && (w[i + 1] == "to" || w[i + 1] == "and" || w[i + 1] == "through" ||
                                 w[i + 1] == "until")) {
          if (const std::optional<int> b = year_at(i + 2); b && *b > *a) {
            q.ranges.push_back({*a, *b});
            i += 2;
            continue;
          }
        }
        // "1960-70"
        if (i + 1 < w.size() && w[i + 1].size() == 2 &&
            std::isdigit(static_cast<unsigned char>(w[i + 1][0])) &&
            std::isdigit(static_cast<unsigned char>(w[i + 1][1]))) {
          const int b = *a / 100 * 100 + std::stoi(w[i + 1]);
          if (b > *a) {
            q.ranges.push_back({*a, b});
            ++i;
            continue;
          }
        }
      }
      if (w[i].size() == 5 && w[i].back() == 's' &&
          std::all_of(w[i].begin(), w[i].end() - 1, [](char c) { return c >= '0' && c <= '9'; })) {
        const int y = std::stoi(w[i].substr(0, 4));
        if (y % 10 == 0) q.ranges.push_back({y, y + 10});
      }
    }
  }
  // Months with their year: "January 2006", "Mar 2010".
  const std::vector<std::string> all_words = text::words(question);
  for (size_t i = 0; i + 1 < all_words.size(); ++i) {
    const int m = text::month_from_name(all_words[i]);
    const std::string& y = all_words[i + 1];
    if (m == 0 || all_words[i].size() < 3 || y.size() != 4 ||
        !std::all_of(y.begin(), y.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    // "may" is a month only before a year.
    q.months.push_back(int64_t{std::stoi(y)} * 12 + m - 1);
  }
  std::sort(q.months.begin(), q.months.end());
  // What the question leaves out: "leaving out X", "excluding X", "except X", "other than X".
  for (const char* lead : {"leaving out ", "leave out ", "excluding ", "except ", "other than ",
                           "apart from ", "not counting "}) {
    for (size_t at = lowered.find(lead); at != std::string::npos; at = lowered.find(lead, at + 1)) {
      size_t start = at + std::string(lead).size();
      size_t end = lowered.find_first_of(",.;?", start);
      if (end == std::string::npos) end = lowered.size();
      q.excluded.push_back(std::string(text::trim(question.substr(start, end - start))));
    }
  }
  // Three or more years and no explicit sub-periods: the spans between consecutive years.
  {
    std::vector<int> distinct(years.begin(), years.end());
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    if (q.ranges.size() < 2 && distinct.size() >= 3) {
      q.ranges.clear();
      for (size_t i = 0; i + 1 < distinct.size(); ++i)
        q.ranges.push_back({distinct[i], distinct[i + 1]});
    }
    if (q.ranges.size() < 2) q.ranges.clear();
  }
  if (!years.empty()) {
    q.year_from = *std::min_element(years.begin(), years.end());
    q.year_to = *std::max_element(years.begin(), years.end());
    // "since 2000": from that year on.
    if (years.size() == 1 && (lowered.find("since ") != std::string::npos ||
                              lowered.find("after ") != std::string::npos)) {
      q.year_to = 2200;
    }
  }
  return q;
}

bool names(const std::vector<std::string>& text_words, const std::string& name) {
  const std::vector<std::string> head = head_words(name);
  if (head.empty()) return false;
  for (const std::string& h : head) {
    // A one-word name that is a common word ("value", "total") is named only by that word
    // itself, never by a relative of it.
    if (stop_words().count(h) && head.size() == 1) {
      return std::find(text_words.begin(), text_words.end(), h) != text_words.end();
    }
    const bool found = std::any_of(text_words.begin(), text_words.end(),
                                   [&](const std::string& w) { return word_matches(w, h); });
    if (!found) return false;
  }
  return true;
}

Focus resolve_focus(const Frame& frame, const QuestionProfile& q) {
  if (!q.context.empty()) {
    // A part of a question: its own names first, the whole question's when it has none.
    QuestionProfile own = q;
    own.context.clear();
    Focus f = resolve_focus(frame, own);
    QuestionProfile whole = q;
    whole.text = q.context;
    whole.context.clear();
    const Focus w = resolve_focus(frame, whole);
    if (f.entities.empty()) f.entities = w.entities;
    if (f.measures.empty()) f.measures = w.measures;
    f.excluded = w.excluded;
    return f;
  }
  Focus f;
  f.kinds = q.kinds;
  f.year_from = q.year_from;
  f.year_to = q.year_to;
  const std::vector<std::string> words = text::words(q.text);
  // Entities: names the question uses; a longer name wins over one it contains.
  for (size_t e = 0; e < frame.entities.size(); ++e) {
    const bool alias = e < frame.entity_aliases.size() && !frame.entity_aliases[e].empty() &&
                       names(words, frame.entity_aliases[e]);
    if (alias || names(words, frame.entities[e])) f.entities.push_back(static_cast<int32_t>(e));
  }
  // Entities sharing a head ("Korea, Rep." and "Korea, Dem. Rep." for "Korea"): the shortest
  // name is the one people mean by the bare word.
  std::vector<int32_t> kept;
  for (int32_t e : f.entities) {
    const std::vector<std::string> head = head_words(frame.entities[static_cast<size_t>(e)]);
    bool shadowed = false;
    for (int32_t o : f.entities) {
      if (o == e || head_words(frame.entities[static_cast<size_t>(o)]) != head) continue;
      const size_t lo = frame.entities[static_cast<size_t>(o)].size(),
                   le = frame.entities[static_cast<size_t>(e)].size();
      shadowed = shadowed || lo < le || (lo == le && o < e);
    }
    // A name the question writes out in full is meant whatever its head.
    if (shadowed && text::lower(q.text).find(text::lower(frame.entities[static_cast<size_t>(e)])) ==
                        std::string::npos)
      continue;
    kept.push_back(e);
  }
  f.entities = kept;
  if (f.entities.size() > 12) f.entities.clear();  // generic words matched too much
  // Left out: the entities the exclusions name, and group aggregates when the question says
  // so ("leaving out the regional aggregates").
  for (const std::string& ex : q.excluded) {
    const std::vector<std::string> ex_words = text::words(ex);
    const bool aggregates = std::any_of(ex_words.begin(), ex_words.end(), [](const std::string& w) {
      return w == "aggregates" || w == "aggregate" || w == "groups" || w == "regions" ||
             w == "regional";
    });
    for (size_t e = 0; e < frame.entities.size(); ++e) {
      if (names(ex_words, frame.entities[e]) ||
          (aggregates && is_aggregate_name(frame.entities[e]))) {
        f.excluded.push_back(static_cast<int32_t>(e));
      }
    }
  }
  std::erase_if(f.entities, [&](int32_t e) {
    return std::find(f.excluded.begin(), f.excluded.end(), e) != f.excluded.end();
  });
  f.months = q.months;
  f.ranges = q.ranges;
  // In the order the question names them.
  const std::string lowered = text::lower(q.text);
  auto first_mention = [&](const std::vector<std::string>& name_words) {
    size_t best = std::string::npos;
    for (size_t i = 0; i < words.size(); ++i) {
      for (const std::string& w : name_words) {
        if (word_matches(words[i], w)) best = std::min(best, i);
      }
    }
    return best;
  };
  std::stable_sort(f.entities.begin(), f.entities.end(), [&](int32_t a, int32_t b) {
    return first_mention(head_words(frame.entities[static_cast<size_t>(a)])) <
           first_mention(head_words(frame.entities[static_cast<size_t>(b)]));
  });
  // Measures: the question's terms in the label (any content word of length >= 4).
  // Measures: the question's words in the label (or the description's note on the column),
  // ordered by where the question first names them.
  std::vector<std::pair<size_t, size_t>> named;
  for (size_t m = 0; m < frame.measures.size(); ++m) {
    size_t at = std::string::npos;
    auto scan = [&](const std::string& source, size_t max_words, bool label) {
      size_t k = 0;
      for (const std::string& w : text::words(source)) {
        if (++k > max_words) break;
        if (w.size() < 3 || stop_words().count(w)) continue;
        for (size_t i = 0; i < words.size(); ++i) {
          if (stop_words().count(words[i])) continue;
          if (word_matches(words[i], w) || measure_word_matches(words[i], w) ||
              (label && glued_match(words[i], w)))
            at = std::min(at, i);
        }
      }
    };
    scan(frame.measures[m].label, 12, true);
    // A word of the label counts before the same word in the column's note.
    if (at != std::string::npos) {
      named.push_back({2 * at, m});
      continue;
    }
    scan(frame.measures[m].note, 8, false);
    if (at == std::string::npos) scan(frame.measures[m].context, 8, false);
    if (at != std::string::npos) named.push_back({2 * at + 1, m});
  }
  // The measure matching most of the question's words first (the outcome it asks about),
  // then by where the question names it.
  {
    std::map<size_t, size_t> hits;
    for (const auto& [at, m] : named) {
      size_t n = 0;
      for (const std::string& w : text::words(frame.measures[m].label)) {
        for (const std::string& t : q.terms)
          n += (word_matches(t, w) || measure_word_matches(t, w) || glued_match(t, w)) ? 1 : 0;
      }
      hits[m] = n;
    }
    std::stable_sort(named.begin(), named.end(), [&](const auto& a, const auto& b) {
      if (hits[a.second] != hits[b.second]) return hits[a.second] > hits[b.second];
      return a.first < b.first;
    });
  }
  // A measure whose matched words another named measure also matches, and more, is not
  // meant ("private service-providing" names private_service_providing, not service_providing).
  // The question's words a measure's label matches (stemmed).
  auto matched = [&](size_t m) {
    std::set<std::string> out;
    for (const std::string& w : text::words(frame.measures[m].label)) {
      if (w.size() < 3 || stop_words().count(w)) continue;
      for (const std::string& t : words) {
        if (!stop_words().count(t) &&
            (word_matches(t, w) || measure_word_matches(t, w) || glued_match(t, w)))
          out.insert(stem(t));
      }
    }
    return out;
  };
  for (const auto& [at, m] : named) {
    const std::set<std::string> mine = matched(m);
    bool subsumed = false;
    for (const auto& [at2, m2] : named) {
      if (m2 == m) continue;
      const std::set<std::string> other = matched(m2);
      subsumed = subsumed || (!mine.empty() && other.size() > mine.size() &&
                              std::includes(other.begin(), other.end(), mine.begin(), mine.end()));
    }
    if (!subsumed) f.measures.push_back(m);
  }
  return f;
}

std::map<std::string, double> table_weights(const std::vector<TableInfo>& tables,
                                            const QuestionProfile& q) {
  std::map<std::string, double> raw;
  double best = 0;
  for (const TableInfo& t : tables) {
    std::vector<std::string> title = text::words(t.title), desc = text::words(t.description), cols;
    for (const ColumnInfo& c : t.columns) {
      for (const std::string& w : text::words(c.header)) cols.push_back(w);
      for (const std::string& v : c.samples) {
        for (const std::string& w : text::words(v)) cols.push_back(w);
      }
    }
    double score = 0;
    for (const std::string& term : q.terms) {
      auto in = [&](const std::vector<std::string>& ws) {
        return std::any_of(ws.begin(), ws.end(),
                           [&](const std::string& w) { return word_matches(term, w); });
      };
      score += in(title) ? 2.0 : in(cols) ? 1.5 : in(desc) ? 1.0 : 0.0;
    }
    raw[t.name] = score;
    best = std::max(best, score);
  }
  for (auto& [name, score] : raw) score = best > 0 ? score / best : 1.0;
  return raw;
}

double fact_relevance(const Fact& fact, const QuestionProfile& q) {
  // Kinds.
  double kind = 0.35;
  if (q.kinds.empty()) {
    kind = (fact.type == "change" || fact.type == "trend" || fact.type == "rank" ||
            fact.type == "association")
               ? 0.8
               : 0.5;
  } else {
    for (const std::string& k : q.kinds) {
      const auto it = kind_types().find(k);
      if (it == kind_types().end() || !it->second.count(fact.type)) continue;
      // A rank serves a kind only when it ranks what that kind is about.
      if (fact.type == "rank" && !answers(fact, k) && k != "extreme") continue;
      kind = 1.0;
    }
  }
  // A part of a question names its own entities and measures; those of the rest of the
  // question count for less.
  const std::vector<std::string> own = text::words(q.text);
  const std::vector<std::string> words = text::words(q.text + " " + q.context);
  // Entities: the fact's focus named by the question; a fact about another entity of a table
  // whose entities the question names is off topic.
  double entity = 0.5;
  if (!fact.entity.empty()) {
    entity = names(own, fact.entity) ? 1.0 : names(words, fact.entity) ? 0.75 : 0.2;
  } else {
    for (const std::string& m : fact.mentions) {
      if (names(words, m)) entity = std::max(entity, 0.8);
    }
  }
  // Measures.
  double measure = 0.3;
  for (const std::string& m : fact.measures) {
    for (const std::string& w : text::words(m)) {
      if (w.size() < 3 || stop_words().count(w)) continue;
      for (const std::string& t : q.terms) {
        if (!word_matches(t, w) && !measure_word_matches(t, w) && !glued_match(t, w)) continue;
        const bool in_part = std::find(own.begin(), own.end(), t) != own.end();
        measure = std::max(measure, in_part || q.context.empty() ? 1.0 : 0.7);
      }
    }
  }
  // A measure the question names (by its label, its glossary note or the words around it in
  // the description) counts as named.
  if (fact.focus_rank >= 0) measure = 1.0;
  // The table.
  double table = 0.3;
  for (const std::string& w : text::words(fact.table_title)) {
    for (const std::string& t : q.terms) {
      if (w.size() >= 3 && word_matches(t, w)) table = 1.0;
    }
  }
  const double relevance =
      std::clamp(0.45 * kind + 0.25 * entity + 0.2 * measure + 0.1 * table, 0.0, 1.0);
  if (fact.off_focus) return 0.55 * relevance;
  // The question's other named measures count for less than its outcome, except where it asks
  // how they relate (both sides are the point).
  return fact.focus_rank > 0 && !q.kinds.count("association") ? 0.7 * relevance : relevance;
}

void rank_facts(std::vector<Fact>& facts, const QuestionProfile& q,
                const std::map<std::string, double>& table_weight) {
  for (Fact& f : facts) {
    f.relevance = fact_relevance(f, q);
    if (const auto it = table_weight.find(f.table); it != table_weight.end()) {
      f.relevance *= 0.35 + 0.65 * it->second;
    }
  }
  std::stable_sort(facts.begin(), facts.end(), [](const Fact& a, const Fact& b) {
    return a.relevance * (0.5 + 0.5 * a.significance) > b.relevance * (0.5 + 0.5 * b.significance);
  });
}

}  // namespace kdr::hka::analysis
