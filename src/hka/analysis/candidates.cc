#include "hka/analysis/candidates.h"

#include <algorithm>

#include "hka/text.h"

namespace kdr::hka::analysis {

const Frame& FactFinder::frame(const TableInfo& table, const QuestionProfile& q) {
  // The entity column: the one whose values the question names most; else the frame's choice.
  std::string hint;
  const std::vector<std::string> words = text::words(q.text);
  size_t best = 0;
  for (const ColumnInfo& c : table.columns) {
    if (c.type != "TEXT") continue;
    size_t hits = 0;
    for (const std::string& s : c.samples) hits += names(words, s) ? 1 : 0;
    if (hits > best) {
      best = hits;
      hint = c.name;
    }
  }
  const std::string key = table.name + "|" + hint;
  auto it = frames_.find(key);
  if (it == frames_.end()) {
    it = frames_.emplace(key, std::make_unique<Frame>(load_frame(db_path_, table, hint))).first;
    // Samples hold only three values; with no hint, a second look over every entity column's
    // values finds the one the question names.
    if (hint.empty() && !it->second->entities.empty()) {
      const Focus focus = resolve_focus(*it->second, q);
      if (focus.entities.empty()) {
        for (const std::string& col : entity_candidates(db_path_, table)) {
          if (col == it->second->entity_column) continue;
          Frame other = load_frame(db_path_, table, col);
          if (!resolve_focus(other, q).entities.empty()) {
            *it->second = std::move(other);
            break;
          }
        }
      }
    }
  }
  return *it->second;
}

std::vector<Fact> FactFinder::facts(const std::vector<TableInfo>& tables, const QuestionProfile& q,
                                    size_t max_facts, std::vector<std::string>* problems) {
  std::vector<Fact> all;
  // Tables that cover little of the question next to the best one are left out.
  const std::map<std::string, double> weights = table_weights(tables, q);
  for (const TableInfo& t : tables) {
    if (const auto w = weights.find(t.name); w != weights.end() && w->second < 0.5) continue;
    try {
      const Frame& f = frame(t, q);
      std::string frame_key;
      for (const auto& [k, v] : frames_) {
        if (v.get() == &f) frame_key = k;
      }
      std::vector<Fact> facts = compute_facts(f, resolve_focus(f, q));
      for (Fact& fact : facts) {
        fact.frame_key = frame_key;
        all.push_back(std::move(fact));
      }
      // Measures that are categories of one thing (employment by industry as columns) are
      // also read as entities, for ranks and mixes across them.
      const Focus focus = resolve_focus(f, q);
      std::string key = t.name + "|columns";
      for (size_t m : focus.measures) key += "|" + std::to_string(m);
      auto it = variants_.find(key);
      if (it == variants_.end()) {
        std::optional<Frame> v = columns_as_entities(f, focus.measures);
        it = variants_.emplace(key, v ? std::make_unique<Frame>(std::move(*v)) : nullptr).first;
      }
      if (it->second) {
        for (Fact& fact : compute_facts(*it->second, resolve_focus(*it->second, q))) {
          fact.frame_key = key;
          // Per-column facts repeat the table's own; the comparisons across columns are new.
          if (fact.type == "mix" || fact.type == "rank" || fact.type == "proportion" ||
              fact.type == "difference")
            all.push_back(std::move(fact));
        }
      }
    } catch (const std::exception& e) {
      if (problems) problems->push_back(t.name + ": " + e.what());
    }
  }
  rank_facts(all, q, weights);
  if (all.size() > max_facts) all.resize(max_facts);
  return all;
}

nlohmann::json FactFinder::profiles() const {
  nlohmann::json out = nlohmann::json::array();
  auto one = [](const std::string& key, const Frame& f) {
    nlohmann::json columns = nlohmann::json::array();
    for (const ColumnRole& c : f.columns) {
      columns.push_back(
          {{"name", c.name}, {"header", c.header}, {"role", role_name(c.role)}, {"why", c.why}});
    }
    nlohmann::json measures = nlohmann::json::array();
    for (const Measure& m : f.measures) {
      measures.push_back({{"label", m.label},
                          {"unit", m.unit},
                          {"extensive", m.extensive},
                          {"flow", m.flow},
                          {"note", m.note}});
    }
    nlohmann::json entities = nlohmann::json::array();
    for (size_t e = 0; e < f.entities.size() && e < 50; ++e) entities.push_back(f.entities[e]);
    return nlohmann::json{{"frame", key},
                          {"table", f.table},
                          {"title", f.title},
                          {"layout", f.layout},
                          {"grain", grain_name(f.grain)},
                          {"time", f.time_label},
                          {"entity", f.entity_label},
                          {"entity_count", f.entities.size()},
                          {"entities", entities},
                          {"measures", measures},
                          {"columns", columns},
                          {"rows", f.rows.size()},
                          {"truncated", f.truncated}};
  };
  for (const auto& [key, f] : frames_) out.push_back(one(key, *f));
  for (const auto& [key, f] : variants_) {
    if (f) out.push_back(one(key, *f));
  }
  return out;
}

const Frame* FactFinder::frame_of(const Fact& fact) const {
  if (const auto it = frames_.find(fact.frame_key); it != frames_.end()) return it->second.get();
  if (const auto it = variants_.find(fact.frame_key); it != variants_.end())
    return it->second.get();
  return nullptr;
}

}  // namespace kdr::hka::analysis
