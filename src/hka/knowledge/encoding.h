// Source files arrive in whatever encoding the tool that wrote them chose; the knowledge
// stores keep UTF-8 only, so every text source passes through to_utf8() once, on ingest.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kdr::hka {

// The names to_utf8() reports.
inline constexpr std::string_view kUtf8 = "UTF-8";
inline constexpr std::string_view kUtf16Le = "UTF-16LE";
inline constexpr std::string_view kUtf16Be = "UTF-16BE";
inline constexpr std::string_view kWindows1252 = "Windows-1252";
inline constexpr std::string_view kUtf8AndWindows1252 = "UTF-8 mixed with Windows-1252";

// `bytes` as valid UTF-8, and in `encoding_used` (when not null) which encoding they were read
// as:
// - valid UTF-8, with or without a BOM: unchanged (kUtf8);
// - a UTF-16 LE or BE byte-order mark: decoded, the BOM dropped, an unpaired surrogate or a
//   trailing odd byte becoming U+FFFD (kUtf16Le, kUtf16Be);
// - anything else is read as Windows-1252 (Latin-1 with printable characters in 0x80-0x9F;
//   its five undefined bytes become U+FFFD) (kWindows1252), except text that is mostly UTF-8
//   with a few stray bytes (more valid multi-byte sequences than stray bytes): there the
//   valid sequences are kept and only the stray bytes are read as Windows-1252
//   (kUtf8AndWindows1252), so one pasted Latin-1 word does not garble the rest.
std::string to_utf8(std::string_view bytes, std::string* encoding_used = nullptr);

// The byte length of the valid UTF-8 sequence starting at bytes[i] (1 to 4), or 0 when none
// starts there (a stray continuation byte, an overlong form, a surrogate, a value past
// U+10FFFF, a truncated sequence).
size_t utf8_sequence_length(std::string_view bytes, size_t i);

bool is_valid_utf8(std::string_view bytes);

// The note an ingest report keeps for a source read as `encoding`:
// "data/prices.csv: converted from Windows-1252 to UTF-8".
std::string conversion_note(std::string_view source, std::string_view encoding);

}  // namespace kdr::hka
