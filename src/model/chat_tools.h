// Tool calling in chat prompts: each family's way of writing tool definitions, an assistant's
// tool calls and tool results, used by ChatTemplate::render when a conversation has any.
//
//  - ChatML (Qwen 2.5 / 3), byte-identical to their official templates: "# Tools ...
//    <tools>{one JSON per line}</tools>" in the system turn, calls as
//    <tool_call>\n{"name": ..., "arguments": ...}\n</tool_call> in the assistant turn, results
//    as <tool_response>\n...\n</tool_response> in a user turn (consecutive results share it).
//  - Llama 3 (as Llama 3.1's official template): the ipython environment system header, tool
//    definitions (JSON, indent 4) with the instruction in the first user turn, a call as
//    {"name": ..., "parameters": ...} (one per turn), results in "ipython" turns as JSON strings.
//  - Gemma 3 has no official format; kdr's convention: the first user turn is the definitions
//    (one JSON per line), an instruction, then "Question: " and the user's words;
//    calls are the JSON the grammar produces ({"name": ..., "arguments": ...}, an array of them
//    for several); results go in a user turn as <tool_response name="...">\n...\n
//    </tool_response> (consecutive ones share the turn).
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "model/chat_template.h"

namespace kdr::model {

// Python's json.dumps(v, ensure_ascii=False) (separators ", " and ": "), which Jinja's tojson
// writes in transformers' templates; indent > 0 as json.dumps(indent=...).
std::string python_json(const nlohmann::ordered_json& v, int indent = -1);

// Whether a conversation needs the tool format: tools given, or tool calls or results in it.
bool uses_tools(std::span<const ChatMessage> messages,
                std::span<const nlohmann::ordered_json> tools);

std::string render_chatml_tools(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::span<const nlohmann::ordered_json> tools,
                                const std::string& default_system);
std::string render_llama3_tools(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::span<const nlohmann::ordered_json> tools,
                                const std::string& bos);
std::string render_gemma3_tools(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                std::span<const nlohmann::ordered_json> tools,
                                const std::string& bos);

}  // namespace kdr::model
