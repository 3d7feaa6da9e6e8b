// Helpers over model prose shared by the pipeline's stages (research.h has the public ones:
// tidy_prose, reads_as_prose, describe_result).
#pragma once
#include <string>
#include <vector>

namespace kdr::hka {

// Text as compared for repeats: its letters and digits, lower case, outside [citations].
std::string prose_key(const std::string& text);

// Whether text[i] ends a sentence: '.', '!' or '?' before a space, a line end or the end.
bool ends_sentence(const std::string& text, size_t i);

// The sentences of a paragraph, each with its end punctuation and citations.
std::vector<std::string> split_sentences(const std::string& text);

}  // namespace kdr::hka
