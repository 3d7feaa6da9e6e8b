// The writer: every section states its chosen data facts (one sentence each, citing the fact)
// and keeps the model's prose only where it reads as prose, does not repeat the question, and
// states no number its cited facts do not hold. The abstract and conclusion answer each part
// of the question from the facts' ranks and comparisons.
#include <algorithm>
#include <cmath>

#include "hka/analysis/fact_chart.h"
#include "hka/analysis/fact_text.h"
#include "hka/chart/chart.h"
#include "hka/pipeline/prose.h"
#include "hka/pipeline/run.h"
#include "hka/text.h"

namespace kdr::hka {

namespace {

constexpr size_t kModelSentences = 3;  // model sentences kept per section at most
constexpr size_t kKeyFigureRows = 16;

// The citation keys in a sentence: "[A3]", "[A1, T2]".
std::vector<std::string> cited_keys(const std::string& sentence) {
  std::vector<std::string> keys;
  for (size_t open = sentence.find('['); open != std::string::npos;
       open = sentence.find('[', open + 1)) {
    const size_t close = sentence.find(']', open);
    if (close == std::string::npos) break;
    std::string inner = sentence.substr(open + 1, close - open - 1);
    size_t start = 0;
    while (start <= inner.size()) {
      size_t comma = inner.find(',', start);
      if (comma == std::string::npos) comma = inner.size();
      const std::string key(text::trim(inner.substr(start, comma - start)));
      if (!key.empty()) keys.push_back(key);
      start = comma + 1;
    }
  }
  return keys;
}

const std::vector<std::string>& rise_words() {
  static const std::vector<std::string> k = {
      "rose",  "risen",   "rise",   "rising", "increased", "increase", "increasing", "grew",
      "grown", "growing", "gained", "higher", "up",        "climbed",  "expanded"};
  return k;
}
const std::vector<std::string>& fall_words() {
  static const std::vector<std::string> k = {
      "fell",       "fallen",   "fall",    "falling",   "decreased", "decrease",
      "decreasing", "declined", "decline", "declining", "dropped",   "drop",
      "lost",       "lower",    "down",    "shrank",    "contracted"};
  return k;
}

bool says(const std::string& lowered, const std::vector<std::string>& words) {
  return std::any_of(words.begin(), words.end(),
                     [&](const std::string& w) { return text::has_word(lowered, w); });
}

}  // namespace

namespace {

// Whether the model's sentence may stand: prose, not the question again, not a copy of a
// fact's sentence, every number it states held by what it cites (facts' values and periods,
// a query result's cells, a passage's numbers), no direction word against a fact it names.
struct SentenceCheck {
  const std::string& question;
  const std::vector<const analysis::Fact*>& facts;  // the section's facts
  const std::vector<ReportSource>& sources;
  const std::map<std::string, std::string>& keys;  // fact id -> key

  bool repeats_question(const std::string& sentence) const {
    const std::vector<std::string> q = text::words(question), s = text::words(sentence);
    if (s.empty()) return true;
    size_t shared = 0;
    for (const std::string& w : s) shared += std::find(q.begin(), q.end(), w) != q.end() ? 1 : 0;
    return shared * 10 >= s.size() * 7;
  }

  bool ok(const std::string& sentence, bool model_prose = true) const {
    if (!reads_as_prose(sentence) || repeats_question(sentence)) return false;
    if (model_prose) {
      // Small models end on fragments ("The electricity gen.m."): a sentence of the model's
      // has six words or more and no word broken by a dot.
      if (text::words(sentence).size() < 6) return false;
      for (size_t i = 1; i + 1 < sentence.size(); ++i) {
        if (sentence[i] == '.' && std::isalpha(static_cast<unsigned char>(sentence[i - 1])) &&
            std::isalpha(static_cast<unsigned char>(sentence[i + 1])))
          return false;
      }
    }
    const std::string lowered = text::lower(sentence);
    const std::vector<std::string> words = text::words(sentence);
    for (const analysis::Fact* f : facts) {
      if (prose_key(f->text) == prose_key(sentence)) return false;
    }
    // Every number must verify as finalize_report will check it: against what the sentence
    // cites (the section's facts with their keys, the sources).
    std::vector<analysis::Fact> keyed;
    for (const analysis::Fact* f : facts) {
      keyed.push_back(*f);
      if (const auto it = keys.find(f->id); it != keys.end()) keyed.back().key = it->second;
    }
    for (const NumberCheck& n : check_prose(sentence, keyed, sources)) {
      if (!n.verified) return false;
    }
    // A direction word about an entity against that entity's facts (numbers or not).
    const bool up = says(lowered, rise_words()), down = says(lowered, fall_words());
    if (up != down) {
      for (const analysis::Fact* f : facts) {
        if (f->direction == 0 || f->entity.empty() || !analysis::names(words, f->entity)) continue;
        if ((f->type == "change" || f->type == "trend" || f->type == "proportion") &&
            ((up && f->direction < 0) || (down && f->direction > 0))) {
          return false;
        }
      }
    }
    return true;
  }
};

// The facts of a part in the order an answer needs them: for each kind the part asks about,
// the fact types that answer it, best ranked first.
std::vector<const analysis::Fact*> answer_order(const Subtask& s,
                                                const std::vector<const analysis::Fact*>& chosen) {
  std::vector<const analysis::Fact*> out;
  for (const std::string& kind : analysis::kinds_in_order()) {
    if (!s.profile.kinds.count(kind)) continue;
    for (const std::string& type : analysis::answer_types(kind)) {
      for (const analysis::Fact* f : chosen) {
        if (f->type != type || !analysis::answers(*f, kind) ||
            std::find(out.begin(), out.end(), f) != out.end())
          continue;
        out.push_back(f);
        break;
      }
    }
  }
  for (const analysis::Fact* f : chosen) {
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  return out;
}

}  // namespace

std::string Run::section_text(Subtask& subtask) {
  std::vector<const analysis::Fact*> chosen;
  for (const std::string& id : subtask.chosen) {
    if (const analysis::Fact* f = fact(id)) chosen.push_back(f);
  }
  std::string facts_paragraph, listing;
  for (const analysis::Fact* f : chosen) {
    const std::string key = cite_fact(f->id);
    std::string sentence = f->text;
    if (!sentence.empty() && sentence.back() == '.') sentence.pop_back();
    facts_paragraph += (facts_paragraph.empty() ? "" : " ") + sentence + " [" + key + "].";
    listing += "[" + key + "] " + f->text + "\n";
  }
  std::string findings;
  for (const Finding& f : subtask.findings) listing += f.text + "\n";

  // The model's reading of the facts, sentence by sentence under the checks above.
  std::string model_paragraph;
  if (!budget_exhausted_ && !listing.empty()) {
    try {
      const ojson schema = prompts::section_schema();
      std::optional<json> answer = ask_json(
          "writer",
          {{"system", prompts::system_prompt(prompts::kSection, schema), {}},
           {"user",
            "Research question: " + o_.question + "\nThis section answers: " + subtask.part +
                "\nSection heading: " + subtask.title + "\nFacts and findings:\n<data>\n" +
                listing + "</data>",
            {}}},
          schema);
      if (answer) {
        const std::string prose = tidy_prose((*answer)["text"].get<std::string>(), 1200);
        const SentenceCheck check{o_.question, chosen, draft_.sources, fact_keys_};
        size_t kept = 0, dropped = 0;
        for (const std::string& sentence : split_sentences(prose)) {
          if (kept < kModelSentences && check.ok(sentence)) {
            model_paragraph += (model_paragraph.empty() ? "" : " ") + sentence;
            ++kept;
          } else {
            ++dropped;
          }
        }
        trace({{"type", "prose_check"},
               {"section", subtask.title},
               {"kept", kept},
               {"dropped", dropped}});
      }
    } catch (const BudgetExhausted&) {
      draft_.notes.push_back(
          "The token budget ran out while writing; later sections state their facts without "
          "commentary.");
    }
  }
  // Findings from tools: query insights and document facts, each already cited.
  const SentenceCheck check{o_.question, chosen, draft_.sources, fact_keys_};
  for (const Finding& f : subtask.findings) {
    std::string kept;
    for (const std::string& sentence : split_sentences(f.text)) {
      // A finding's sentences carry their source key; numbers must be the source's.
      std::string s = sentence;
      if (cited_keys(s).empty() && !cited_keys(f.text).empty())
        s += " [" + cited_keys(f.text).back() + "]";
      if (check.ok(s, false)) kept += (kept.empty() ? "" : " ") + s;
    }
    if (!kept.empty()) findings += "- " + kept + "\n";
  }
  std::string out = facts_paragraph;
  if (!model_paragraph.empty()) out += (out.empty() ? "" : "\n\n") + model_paragraph;
  if (!findings.empty()) out += (out.empty() ? "" : "\n\n") + findings;
  if (out.empty())
    out = "No data fact or finding could be established for this part of the question.";
  return out;
}

void Run::add_section_figure(Subtask& subtask, ReportSection& section) {
  std::vector<const analysis::Fact*> chosen;
  for (const std::string& id : subtask.chosen) {
    if (const analysis::Fact* f = fact(id)) chosen.push_back(f);
  }
  for (const analysis::Fact* f : answer_order(subtask, chosen)) {
    if (charted_.count(f->id)) continue;
    const analysis::Frame* frame = finder_->frame_of(*f);
    if (!frame) continue;
    std::optional<analysis::FactChart> fc = analysis::fact_chart(*frame, *f, chosen);
    if (!fc) continue;
    try {
      const ChartSpec spec = parse_chart_spec(fc->spec);
      const FigureCheck check = check_chart(spec, fc->data);
      if (!check.ok) {
        trace({{"type", "figure_check"},
               {"fact", f->id},
               {"ok", false},
               {"problem", check.problems}});
        continue;
      }
      const RenderedChart rendered = render_chart(spec, fc->data);
      ++charts_;
      ReportFigure fig;
      fig.key = "F" + std::to_string(charts_);
      fig.title = spec.title;
      fig.svg = rendered.svg;
      fig.svg_path = "figures/fig" + std::to_string(charts_) + ".svg";
      fig.png_path = "figures/fig" + std::to_string(charts_) + ".png";
      std::string caption = f->text;
      if (!caption.empty() && caption.back() == '.') caption.pop_back();
      fig.caption = caption + " [" + cite_fact(f->id) + "].";
      std::ofstream(o_.out_dir / fig.svg_path, std::ios::binary) << rendered.svg;
      std::ofstream(o_.out_dir / fig.png_path, std::ios::binary) << rendered.png;
      std::ofstream(o_.out_dir / "analysis" / ("fig" + std::to_string(charts_) + ".csv"),
                    std::ios::binary)
          << to_csv(fc->data);
      draft_.figures.push_back(fig);
      section.figure_keys.push_back(fig.key);
      charted_.insert(f->id);
      // The fact's record keeps the chart that shows it (analysis/facts.json).
      for (analysis::Fact& mine : facts_) {
        if (mine.id == f->id) mine.chart = fc;
      }
      trace(
          {{"type", "figure"}, {"fact", f->id}, {"key", fig.key}, {"rows", fc->data.rows.size()}});
      return;
    } catch (const ChartError& e) {
      trace({{"type", "figure_check"}, {"fact", f->id}, {"ok", false}, {"problem", e.what()}});
    }
  }
}

void Run::add_key_figures(Subtask& subtask, ReportSection& section) {
  ReportTable table;
  table.columns = {"Entity", "Period", "Measure", "Value", "Fact"};
  for (const std::string& id : subtask.chosen) {
    const analysis::Fact* f = fact(id);
    if (!f) continue;
    for (std::vector<std::string>& row : analysis::fact_rows(*f)) {
      if (table.rows.size() >= kKeyFigureRows) break;
      // The same figure from two facts (a share in the mix and in the proportion) once.
      const bool seen =
          std::any_of(table.rows.begin(), table.rows.end(), [&](const std::vector<std::string>& r) {
            return r[0] == row[0] && r[1] == row[1] && r[3] == row[3];
          });
      if (seen) continue;
      row.push_back("[" + cite_fact(f->id) + "]");
      table.rows.push_back(std::move(row));
    }
  }
  if (table.rows.empty()) return;
  table.key = "K" + std::to_string(draft_.tables.size() + 1);
  table.title = "Key figures: " + subtask.title;
  draft_.tables.push_back(table);
  section.table_keys.push_back(table.key);
}

void Run::write_report() {
  emit("write", "sections");
  draft_.question = o_.question;
  draft_.generated_by = o_.facts_only ? "kdr research, data facts only (no language model)"
                                      : "kdr research, " + llm_.describe();
  for (Subtask& s : subtasks_) {
    ReportSection section;
    section.heading = s.title;
    section.text = section_text(s);
    add_section_figure(s, section);
    add_key_figures(s, section);
    for (const Finding& f : s.findings) {
      if (!f.figure_key.empty() && std::find(section.figure_keys.begin(), section.figure_keys.end(),
                                             f.figure_key) == section.figure_keys.end())
        section.figure_keys.push_back(f.figure_key);
      if (!f.table_key.empty() && std::find(section.table_keys.begin(), section.table_keys.end(),
                                            f.table_key) == section.table_keys.end())
        section.table_keys.push_back(f.table_key);
    }
    draft_.sections.push_back(std::move(section));
  }

  emit("write", "abstract, introduction, conclusion");
  // The abstract answers each part with its best answering fact; the conclusion with the
  // next one, so that the two do not repeat each other.
  std::vector<const analysis::Fact*> in_abstract, in_conclusion;
  std::string abstract, conclusion;
  auto sentence_of = [&](const analysis::Fact* f) {
    std::string s = f->text;
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s + " [" + cite_fact(f->id) + "].";
  };
  for (const Subtask& s : subtasks_) {
    std::vector<const analysis::Fact*> chosen;
    for (const std::string& id : s.chosen) {
      if (const analysis::Fact* f = fact(id)) chosen.push_back(f);
    }
    const std::vector<const analysis::Fact*> order = answer_order(s, chosen);
    const size_t in_each = std::clamp<size_t>(s.profile.kinds.size(), 1, 3);
    size_t used = 0;
    for (const analysis::Fact* f : order) {
      if (used == in_each) break;
      if (std::find(in_abstract.begin(), in_abstract.end(), f) != in_abstract.end()) continue;
      abstract += (abstract.empty() ? "" : " ") + sentence_of(f);
      in_abstract.push_back(f);
      ++used;
    }
    for (const analysis::Fact* f : order) {
      if (std::find(in_abstract.begin(), in_abstract.end(), f) != in_abstract.end()) continue;
      if (std::find(in_conclusion.begin(), in_conclusion.end(), f) != in_conclusion.end()) continue;
      conclusion += (conclusion.empty() ? "" : " ") + sentence_of(f);
      in_conclusion.push_back(f);
      break;
    }
  }
  bool association = false;
  for (const Subtask& s : subtasks_)
    association = association || s.profile.kinds.count("association") > 0;
  if (association) {
    conclusion += std::string(conclusion.empty() ? "" : " ") +
                  "A correlation across the observations does not by itself show that one measure "
                  "drives the other.";
  }
  conclusion += std::string(conclusion.empty() ? "" : " ") +
                "These findings hold for the entities and periods the tables cover; the references "
                "give the SQL behind every number.";
  draft_.abstract =
      abstract.empty() ? "No data fact could be established for this question." : abstract;
  draft_.conclusion = conclusion;

  // Introduction and title: the model may frame the question (no numbers); the plain
  // statement stands in otherwise.
  std::string title, intro;
  if (!budget_exhausted_) {
    try {
      const ojson schema = prompts::introduction_schema();
      std::optional<json> answer =
          ask_json("writer",
                   {{"system", prompts::system_prompt(prompts::kIntroduction, schema), {}},
                    {"user", "Research question: " + o_.question, {}}},
                   schema);
      if (answer) {
        title = text::one_line(tidy_prose((*answer)["title"].get<std::string>(), 100));
        intro = tidy_prose((*answer)["introduction"].get<std::string>(), 600);
        std::string kept;
        const std::vector<const analysis::Fact*> none;
        const SentenceCheck check{o_.question, none, draft_.sources, fact_keys_};
        for (const std::string& sentence : split_sentences(intro)) {
          if (check.ok(sentence) && extract_numbers(sentence).empty())
            kept += (kept.empty() ? "" : " ") + sentence;
        }
        intro = kept;
      }
    } catch (const BudgetExhausted&) {
      draft_.notes.push_back("The token budget ran out before the introduction was written.");
    }
  }
  std::string method =
      "Each number below is a data fact computed exactly from the tables (a change, a growth "
      "rate, a share, a ranking, a correlation or a seasonal cycle), cited where it is stated; "
      "the references list every fact with its table, and analysis/facts.sql holds the SQL "
      "that reproduces it.";
  if (llm_answers_ > 0) {
    method +=
        " The language model chose among the facts and wrote the commentary; a sentence of its "
        "prose is kept only where every number it states matches a fact it cites.";
  } else {
    method +=
        " No language model took part: the facts were chosen by their relevance to the question "
        "and their significance, and every sentence is the fact's own.";
  }
  if (docs_)
    method += " Documents were searched for context, and their passages are cited where used.";
  draft_.introduction = intro.empty() ? method : intro + "\n\n" + method;
  const std::vector<std::string> title_words = text::words(title);
  const bool title_ok =
      title_words.size() >= 3 && title.size() <= 100 && prose_key(title) != prose_key(o_.question);
  draft_.title = title_ok ? title : text::shorten(o_.question, 120);
}

}  // namespace kdr::hka
