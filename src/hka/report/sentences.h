// Sentences of report prose, the unit a claim is checked in: a sentence ends at ".", "!" or "?"
// before a space and a capital, a digit or the end (not after an abbreviation such as "Rep." or
// "U.S."); a citation group right after the end ("... in 2017. [A3]") belongs to the sentence
// before it. A blank line, a list item, a table row and a heading end a sentence too; a single
// line break inside a paragraph does not. Private to report/.
#pragma once
#include <cstddef>
#include <string_view>
#include <vector>

namespace kdr::hka::report {

struct SentenceSpan {
  size_t begin = 0, end = 0;  // byte offsets in the text
};

std::vector<SentenceSpan> split_sentences(std::string_view text);

// The sentence of `spans` that holds the offset `pos` (the last one when none does).
const SentenceSpan* sentence_at(const std::vector<SentenceSpan>& spans, size_t pos);

}  // namespace kdr::hka::report
