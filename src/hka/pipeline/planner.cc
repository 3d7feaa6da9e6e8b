// The plan: the question's parts (read without a model, so that every part is answered)
// become the report's sections; the planner model gives each a title and a goal.
#include <algorithm>
#include <cctype>

#include "hka/pipeline/prose.h"
#include "hka/pipeline/run.h"
#include "hka/text.h"

namespace kdr::hka {

namespace {

const std::vector<std::string>& clause_openers() {
  static const std::vector<std::string> kWords = {
      "how",  "which", "what",  "whether", "when", "where", "who",  "why",
      "is",   "are",   "did",   "does",    "do",   "has",   "have", "was",
      "were", "can",   "could", "compare", "rank", "list"};
  return kWords;
}

bool opens_clause(const std::string& text, size_t at) {
  size_t i = at;
  while (i < text.size() && text[i] == ' ') ++i;
  size_t j = i;
  while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
  const std::string word = text::lower(text.substr(i, j - i));
  return std::find(clause_openers().begin(), clause_openers().end(), word) !=
         clause_openers().end();
}

size_t word_count(const std::string& s) { return text::words(s).size(); }

}  // namespace

// The parts of a question: its sentences, each cut again where a new clause asks something
// else (", and how fast ...", ", which ...", "; what ..."). "between 2001 and 2017" is not a
// clause: only a question word after the joint opens one.
std::vector<std::string> question_parts(const std::string& question) {
  std::vector<std::string> sentences;
  std::string current;
  for (size_t i = 0; i < question.size(); ++i) {
    current += question[i];
    if ((question[i] == '?' || question[i] == '.' || question[i] == '!') &&
        (i + 1 == question.size() || question[i + 1] == ' ' || question[i + 1] == '\n') &&
        word_count(current) >= 3) {
      sentences.push_back(std::string(text::trim(current)));
      current.clear();
    }
  }
  if (!text::trim(current).empty()) sentences.push_back(std::string(text::trim(current)));
  std::vector<std::string> parts;
  for (const std::string& s : sentences) {
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      size_t joint_end = std::string::npos;
      if (s[i] == ',' || s[i] == ';') {
        joint_end = i + 1;
        if (s.compare(joint_end, 5, " and ") == 0) joint_end += 4;
      } else if (s.compare(i, 5, " and ") == 0) {
        joint_end = i + 4;
      }
      if (joint_end == std::string::npos || i < start || !opens_clause(s, joint_end)) continue;
      // "the relationship between X and how much Y": the "and" closes "between", it does not
      // start a new question.
      if (s[i] == ' ') {
        const std::string head = text::lower(s.substr(start, i - start));
        const size_t between = head.rfind("between ");
        if (between != std::string::npos && head.find(" and ", between) == std::string::npos)
          continue;
      }
      const std::string head(text::trim(s.substr(start, i - start)));
      if (word_count(head) >= 3) {
        parts.push_back(head);
        start = joint_end;
      }
    }
    std::string tail(text::trim(s.substr(start)));
    if (!tail.empty()) {
      if (word_count(tail) < 3 && !parts.empty()) {
        parts.back() += " " + tail;
      } else {
        parts.push_back(tail);
      }
    }
  }
  // A part that asks nothing on its own ("Leaving out the District of Columbia.") joins the
  // next one; trailing ones join the last.
  // A short clause that asks for no analysis of its own ("... and how urbanized they are")
  // continues the previous one.
  std::vector<std::string> joined;
  for (const std::string& p : parts) {
    if (!joined.empty() && word_count(p) < 5 && analysis::profile_question(p).kinds.empty()) {
      joined.back() += " and " + p;
    } else {
      joined.push_back(p);
    }
  }
  parts = joined;
  std::vector<std::string> merged;
  std::string carry;
  for (const std::string& p : parts) {
    // "In which months ...": a question word among the first words asks too.
    bool asks = p.find('?') != std::string::npos || opens_clause(p, 0);
    const std::vector<std::string> first = text::words(p);
    for (size_t k = 0; k < first.size() && k < 3 && !asks; ++k) {
      asks =
          first[k] == "which" || first[k] == "what" || first[k] == "how" || first[k] == "whether";
    }
    if (!asks && merged.empty()) {
      carry += (carry.empty() ? "" : ", ") + p;
      continue;
    }
    if (carry.empty()) {
      merged.push_back(p);
    } else {
      // "Leaving out DC." + "Which state ...?" -> "Leaving out DC, which state ...?"
      while (!carry.empty() && (carry.back() == '.' || carry.back() == ';' || carry.back() == ','))
        carry.pop_back();
      std::string next = p;
      if (opens_clause(next, 0) && !next.empty())
        next[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(next[0])));
      merged.push_back(carry + ", " + next);
    }
    carry.clear();
  }
  if (!carry.empty()) {
    if (merged.empty()) {
      merged.push_back(carry);
    } else {
      merged.back() += " " + carry;
    }
  }
  return merged;
}

namespace {

// A title from a part's own words when the planner gives none usable: the clause without its
// question mark, at most 80 characters.
std::string title_from(const std::string& part) {
  std::string t(text::trim(part));
  while (!t.empty() && (t.back() == '?' || t.back() == '.')) t.pop_back();
  if (!t.empty()) t[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(t[0])));
  return text::shorten(t, 80);
}

bool usable_title(const std::string& title, const std::string& part) {
  const std::string t(text::trim(title));
  if (t.empty() || t.size() > 80 || word_count(t) < 2) return false;
  if (prose_key(t) == prose_key(part)) return false;
  // A title is words: not mostly digits or punctuation.
  size_t letters = 0;
  for (char c : t) letters += std::isalpha(static_cast<unsigned char>(c)) ? 1 : 0;
  return letters * 2 >= t.size();
}

}  // namespace

void Run::plan() {
  emit("plan", o_.question);
  std::vector<std::string> parts = question_parts(o_.question);
  if (parts.empty()) parts.push_back(o_.question);
  // At most max_subtasks sections: extra parts join the last.
  while (static_cast<int32_t>(parts.size()) > std::max(1, o_.max_subtasks)) {
    parts[parts.size() - 2] += " " + parts.back();
    parts.pop_back();
  }
  for (const std::string& p : parts) {
    Subtask s;
    s.part = p;
    s.title = title_from(p);
    s.goal = p;
    // A part is read in the light of the whole question: its entities, measures and period
    // are the question's when the part does not name its own ("which of the five fell most").
    s.profile = analysis::profile_question(p);
    analysis::QuestionProfile whole = question_;
    if (s.profile.kinds.empty()) s.profile.kinds = whole.kinds;
    if (!s.profile.year_from) {
      s.profile.year_from = whole.year_from;
      s.profile.year_to = whole.year_to;
    }
    s.profile.months = s.profile.months.empty() ? whole.months : s.profile.months;
    s.profile.excluded = whole.excluded;
    // The part's own words name its entities and measures; the whole question's stand in
    // when the part names none ("which of the five fell most").
    s.profile.context = o_.question;
    for (const std::string& t : whole.terms) {
      if (std::find(s.profile.terms.begin(), s.profile.terms.end(), t) == s.profile.terms.end()) {
        s.profile.terms.push_back(t);
      }
    }
    subtasks_.push_back(std::move(s));
  }
  // The planner model names the sections and says what each computes.
  const ojson schema = prompts::planner_schema(parts.size());
  std::string listing;
  for (size_t i = 0; i < parts.size(); ++i)
    listing += std::to_string(i + 1) + ". " + parts[i] + "\n";
  std::optional<json> answer = ask_json(
      "planner",
      {{"system",
        prompts::system_prompt(prompts::planner_instructions(parts.size(), docs_.has_value()),
                               schema),
        {}},
       {"user", "Question: " + o_.question + "\n\nParts:\n<data>\n" + listing + "</data>", {}}},
      schema);
  if (answer) {
    const json& sections = (*answer)["sections"];
    for (size_t i = 0; i < subtasks_.size() && i < sections.size(); ++i) {
      const std::string title = tidy_prose(sections[i]["title"].get<std::string>(), 80);
      const std::string goal = tidy_prose(sections[i]["goal"].get<std::string>(), 200);
      // Titles tell sections apart: one already given to an earlier section is not used.
      bool taken = false;
      for (size_t k = 0; k < i; ++k)
        taken = taken || prose_key(subtasks_[k].title) == prose_key(title);
      if (usable_title(title, subtasks_[i].part) && !taken) subtasks_[i].title = title;
      if (reads_as_prose(goal) || word_count(goal) >= 4) subtasks_[i].goal = goal;
    }
  }
  json plan = json::array();
  for (const Subtask& s : subtasks_)
    plan.push_back({{"part", s.part}, {"title", s.title}, {"goal", s.goal}});
  trace({{"type", "plan"}, {"subtasks", plan}});
}

}  // namespace kdr::hka
