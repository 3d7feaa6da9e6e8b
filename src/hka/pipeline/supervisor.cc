// The supervisor: per part of the question, the model calls tools from one registry (name,
// what it does, how it runs) under the run's tool-call budget.
#include <algorithm>

#include "hka/pipeline/run.h"
#include "hka/text.h"

namespace kdr::hka {

std::vector<Run::Tool> Run::tools() const {
  std::vector<Tool> t;
  t.push_back({"analyze_tables",
               "input is one precise quantitative question the data facts do not answer; it finds "
               "the tables, writes SQL, runs it read-only and draws a figure.",
               [](Run& r, Subtask& s, const std::string& in) { return r.analyze_tables(s, in); }});
  if (docs_ && docs_->chunk_count() > 0) {
    t.push_back(
        {"search_documents",
         "input is a search query; it returns facts from the documents (context, "
         "definitions, explanations).",
         [](Run& r, Subtask& s, const std::string& in) { return r.search_documents(s, in); }});
  }
  if (o_.web_search) {
    t.push_back({"web_search",
                 "input is a web search query; it returns facts from web pages. Prefer the tables "
                 "and documents.",
                 [](Run& r, Subtask& s, const std::string& in) { return r.search_web(s, in); }});
  }
  t.push_back({"complete", "the part has what it needs (input: a one-line summary).", nullptr});
  return t;
}

void Run::supervise(Subtask& subtask) {
  const std::vector<Tool> registry = tools();
  std::vector<std::pair<std::string, std::string>> described;
  std::vector<std::string> names;
  for (const Tool& t : registry) {
    described.push_back({t.name, t.description});
    names.push_back(t.name);
  }
  const ojson schema = prompts::supervisor_schema(names);
  const std::string instructions = prompts::supervisor_instructions(described);
  std::string facts;
  for (const std::string& id : subtask.chosen) {
    if (const analysis::Fact* f = fact(id)) facts += "- " + f->text + "\n";
  }
  std::set<std::string> done;
  for (int32_t step = 0; step < o_.max_steps_per_subtask; ++step) {
    if (tool_calls_ >= o_.max_tool_calls) {
      trace({{"type", "tool_budget"}, {"tool_calls", tool_calls_}});
      break;
    }
    std::string history;
    for (size_t i = 0; i < subtask.history.size(); ++i) {
      history += std::to_string(i + 1) + ". " + subtask.history[i] + "\n";
    }
    const std::string user =
        "Research question: " + o_.question + "\nThis part: " + subtask.part + " -- " +
        subtask.goal + "\nData facts already chosen:\n" +
        (facts.empty() ? "(none)\n" : "<data>\n" + text::truncate(facts, 1500) + "</data>\n") +
        "Calls so far:\n" + (history.empty() ? "(none)\n" : "<data>\n" + history + "</data>\n") +
        "Tool calls left in the whole run: " + std::to_string(o_.max_tool_calls - tool_calls_);
    std::optional<json> answer = ask_json(
        "supervisor",
        {{"system", prompts::system_prompt(instructions, schema), {}}, {"user", user, {}}}, schema);
    std::string tool = answer ? (*answer)["tool"].get<std::string>() : "complete";
    std::string input = answer ? (*answer)["input"].get<std::string>() : "";
    // A part with neither facts nor findings is analysed at least once.
    if (tool == "complete" && subtask.chosen.empty() && subtask.findings.empty() && step == 0) {
      tool = "analyze_tables";
      input = subtask.goal;
    }
    if (tool == "complete") break;
    if (input.empty()) input = subtask.goal;
    // A tool's input is a question or a query in words: a path, a link or a fragment is not
    // (small models answer with file names); the part is then done.
    const bool wordy = text::words(input).size() >= 3 && input.find("://") == std::string::npos &&
                       input.find('/') == std::string::npos &&
                       input.find('\\') == std::string::npos &&
                       input.find('<') == std::string::npos && input.find('>') == std::string::npos;
    // ... and about the question: a copy of the prompt's own words ("data facts already
    // chosen") shares none of its content words.
    const std::vector<std::string> in_words = text::words(input);
    const bool on_topic = std::any_of(
        subtask.profile.terms.begin(), subtask.profile.terms.end(), [&](const std::string& t) {
          return t.size() >= 3 && std::find(in_words.begin(), in_words.end(), t) != in_words.end();
        });
    if (!wordy || !on_topic) {
      trace({{"type", "refused_call"},
             {"tool", tool},
             {"input", input},
             {"reason", !wordy ? "not a question in words" : "shares no word with the question"}});
      break;
    }
    if (!done.insert(tool + "\n" + input).second) {
      trace({{"type", "repeated_call"}, {"tool", tool}, {"input", input}});
      break;
    }
    const auto it = std::find_if(registry.begin(), registry.end(),
                                 [&](const Tool& t) { return t.name == tool; });
    if (it == registry.end() || !it->run) break;
    ++tool_calls_;
    emit("tool", tool + ": " + input);
    const std::string observation = it->run(*this, subtask, input);
    subtask.history.push_back(tool + "(\"" + text::truncate(input, 200) + "\") -> " +
                              text::truncate(observation, 500));
  }
}

}  // namespace kdr::hka
