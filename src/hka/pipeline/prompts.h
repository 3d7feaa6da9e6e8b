// The model-facing contract of the research pipeline in one place: every role's instructions
// and the JSON schema its answer must follow. Each schema bounds every string and array, so
// constrained decoding always ends and schema_token_bound() can size the reply.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kdr::hka::prompts {

using ojson = nlohmann::ordered_json;

ojson string_schema(int max_length);

// The system message: instructions, the data-is-not-instructions rule, and the schema.
std::string system_prompt(const std::string& instructions, const ojson& schema);

// An upper bound on the tokens of any JSON value valid under `schema`.
int32_t schema_token_bound(const ojson& schema);

// planner: a title and an analytic goal for each part of the question, in order.
std::string planner_instructions(size_t parts, bool documents);
ojson planner_schema(size_t parts);

// supervisor: one tool call per step. `tools` are (name, what its input is and does).
std::string supervisor_instructions(const std::vector<std::pair<std::string, std::string>>& tools);
ojson supervisor_schema(const std::vector<std::string>& tool_names);

// choose_facts: the fact ids (c1, c2, ...) that answer one part of the question.
extern const char* const kChooseFacts;
ojson choose_facts_schema(const std::vector<std::string>& ids, size_t max_items);

// rerank: the tables a SQL analysis needs.
extern const char* const kRerank;
ojson rerank_schema(const std::vector<std::string>& names, int32_t max_items);

// coder: one SQLite query and a chart of its result; guided: columns from lists.
extern const char* const kCoder;
ojson coder_schema();
extern const char* const kGuidedQuery;
ojson guided_schema(const std::vector<std::string>& columns,
                    const std::vector<std::string>& numeric);

// vision: is the chart readable and on topic.
extern const char* const kVision;
ojson vision_schema();

// insight: what a query result shows.
std::string insight_instructions(const std::string& source_key);
ojson insight_schema();

// extract: facts from numbered passages.
extern const char* const kExtract;
ojson extract_schema(size_t passages);

// writer: a section's prose from its data facts; the introduction.
extern const char* const kSection;
ojson section_schema();
extern const char* const kIntroduction;
ojson introduction_schema();

}  // namespace kdr::hka::prompts
