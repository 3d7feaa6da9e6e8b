#include "hka/knowledge/encoding.h"

#include <cstdint>

#include "base/utf8.h"

namespace kdr::hka {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Windows-1252 bytes 0x80-0x9F; 0 marks the five bytes the code page leaves undefined. Every
// other byte is the Latin-1 code point of the same value.
constexpr uint16_t kWindows1252High[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,  // 0x80
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,       // 0x88
    0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,  // 0x90
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,  // 0x98
};

void append_windows1252(std::string& out, unsigned char byte) {
  if (byte < 0x80) {
    out += static_cast<char>(byte);
  } else if (byte < 0xA0) {
    const uint16_t cp = kWindows1252High[byte - 0x80];
    if (cp == 0) {
      out += kReplacement;
    } else {
      append_utf8(out, cp);
    }
  } else {
    append_utf8(out, byte);
  }
}

std::string from_utf16(std::string_view bytes, bool big_endian) {
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 2);
  auto unit_at = [&](size_t i) {
    const auto a = static_cast<unsigned char>(bytes[i]);
    const auto b = static_cast<unsigned char>(bytes[i + 1]);
    return static_cast<uint32_t>(big_endian ? (a << 8) | b : (b << 8) | a);
  };
  size_t i = 0;
  while (i + 1 < bytes.size()) {
    uint32_t cp = unit_at(i);
    i += 2;
    if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < bytes.size()) {
      const uint32_t low = unit_at(i);
      if (low >= 0xDC00 && low <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        i += 2;
      }
    }
    if (cp == 0) {
      out += '\0';  // U+0000 is valid UTF-8 as one byte; append_utf8 reserves 0 for errors
    } else {
      append_utf8(out, cp);  // an unpaired surrogate becomes U+FFFD there
    }
  }
  if (i < bytes.size()) out += kReplacement;  // half a code unit at the end
  return out;
}

}  // namespace

size_t utf8_sequence_length(std::string_view bytes, size_t i) {
  const auto c = static_cast<unsigned char>(bytes[i]);
  if (c < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > bytes.size()) return 0;
  for (size_t j = 1; j < len; ++j) {
    const auto d = static_cast<unsigned char>(bytes[i + j]);
    if ((d & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3F);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_valid_utf8(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    const size_t len = utf8_sequence_length(bytes, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string to_utf8(std::string_view bytes, std::string* encoding_used) {
  auto used = [&](std::string_view name) {
    if (encoding_used) *encoding_used = name;
  };
  // 0xFF and 0xFE never occur in UTF-8, so a UTF-16 byte-order mark cannot be mistaken.
  if (bytes.starts_with("\xFF\xFE")) {
    used(kUtf16Le);
    return from_utf16(bytes.substr(2), /*big_endian=*/false);
  }
  if (bytes.starts_with("\xFE\xFF")) {
    used(kUtf16Be);
    return from_utf16(bytes.substr(2), /*big_endian=*/true);
  }
  size_t multibyte = 0;  // valid sequences of two or more bytes
  size_t stray = 0;      // bytes that start no valid sequence
  for (size_t i = 0; i < bytes.size();) {
    const size_t len = utf8_sequence_length(bytes, i);
    multibyte += len > 1;
    stray += len == 0;
    i += len == 0 ? 1 : len;
  }
  if (stray == 0) {
    used(kUtf8);
    return std::string(bytes);
  }
  // In real Windows-1252 text an accented letter is followed by ASCII, so byte pairs that
  // happen to form UTF-8 are rare; a file where they outnumber the stray bytes is UTF-8 that
  // picked up a few foreign bytes.
  const bool mostly_utf8 = multibyte > stray;
  used(mostly_utf8 ? kUtf8AndWindows1252 : kWindows1252);
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 2);
  for (size_t i = 0; i < bytes.size();) {
    const size_t len = mostly_utf8 ? utf8_sequence_length(bytes, i) : 0;
    if (len > 0) {
      out.append(bytes.substr(i, len));
      i += len;
    } else {
      append_windows1252(out, static_cast<unsigned char>(bytes[i]));
      ++i;
    }
  }
  return out;
}

std::string conversion_note(std::string_view source, std::string_view encoding) {
  return std::string(source) + ": converted from " + std::string(encoding) + " to UTF-8";
}

}  // namespace kdr::hka
