// Reading source text as UTF-8: valid UTF-8 untouched, UTF-16 by its byte-order mark,
// anything else as Windows-1252, and whatever the bytes, valid UTF-8 out.
#include "hka/knowledge/encoding.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "../../base/seed.h"

namespace kdr::hka {
namespace {

using namespace std::string_view_literals;

// Well-formed UTF-8 as the Unicode Standard's table 3-7 lists it, written independently of
// the decoder under test.
bool well_formed_utf8(std::string_view s) {
  size_t i = 0;
  auto in = [&](size_t k, unsigned lo, unsigned hi) {
    if (i + k >= s.size()) return false;
    const auto b = static_cast<unsigned char>(s[i + k]);
    return b >= lo && b <= hi;
  };
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    if (b <= 0x7F) {
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = in(1, 0x80, 0xBF) ? 2 : 0;
    } else if (b == 0xE0) {
      len = in(1, 0xA0, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      len = in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if (b == 0xED) {
      len = in(1, 0x80, 0x9F) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if (b == 0xF0) {
      len = in(1, 0x90, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    } else if (b >= 0xF1 && b <= 0xF3) {
      len = in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    } else if (b == 0xF4) {
      len = in(1, 0x80, 0x8F) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    }
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string converted(std::string_view bytes, std::string* encoding = nullptr) {
  std::string used;
  std::string out = to_utf8(bytes, &used);
  if (encoding) *encoding = used;
  return out;
}

// A random string of code points from every UTF-8 length class, encoded by hand.
std::string random_utf8(std::mt19937_64& rng, size_t code_points) {
  std::string out;
  for (size_t n = 0; n < code_points; ++n) {
    uint32_t cp = 0;
    switch (rng() % 4) {
      case 0:
        cp = 1 + rng() % 0x7F;
        break;
      case 1:
        cp = 0x80 + rng() % (0x800 - 0x80);
        break;
      case 2:
        cp = 0x800 + rng() % (0x10000 - 0x800);
        break;
      default:
        cp = 0x10000 + rng() % (0x110000 - 0x10000);
        break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

TEST(EncodingTest, ValidUtf8IsKeptByteForByte) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 500; ++trial) {
    std::string text = random_utf8(rng, rng() % 40);
    if (trial % 2 == 1) text = "\xEF\xBB\xBF" + text;  // a UTF-8 BOM stays too
    std::string encoding;
    EXPECT_EQ(converted(text, &encoding), text);
    EXPECT_EQ(encoding, "UTF-8");
    EXPECT_TRUE(is_valid_utf8(text));
  }
  EXPECT_EQ(converted("a\0b"sv), "a\0b"sv);  // NUL is UTF-8
}

TEST(EncodingTest, Latin1IsReadAsWindows1252) {
  std::string encoding;
  EXPECT_EQ(converted("caf\xE9", &encoding), "caf\xC3\xA9");  // café
  EXPECT_EQ(encoding, "Windows-1252");
  EXPECT_EQ(converted("S\xE3o Paulo, Z\xFCrich, \xA3\x35, 25\xB0, \xFF"),
            "S\xC3\xA3o Paulo, Z\xC3\xBCrich, \xC2\xA3"
            "5, 25\xC2\xB0, \xC3\xBF");
  // Every byte from 0xA0 up is the Latin-1 code point of the same value.
  for (unsigned b = 0xA0; b <= 0xFF; ++b) {
    const std::string expected = {static_cast<char>(0xC0 | (b >> 6)),
                                  static_cast<char>(0x80 | (b & 0x3F))};
    EXPECT_EQ(converted(std::string(1, static_cast<char>(b))), expected) << b;
  }
}

TEST(EncodingTest, Windows1252PunctuationBytesAndUndefinedOnes) {
  EXPECT_EQ(converted("\x80"), "\xE2\x82\xAC");                              // €
  EXPECT_EQ(converted("\x93quoted\x94"), "\xE2\x80\x9Cquoted\xE2\x80\x9D");  // “quoted”
  EXPECT_EQ(converted("a\x96z \x85"), "a\xE2\x80\x93z \xE2\x80\xA6");        // – and …
  EXPECT_EQ(converted("\x8A\x9F"), "\xC5\xA0\xC5\xB8");                      // Š Ÿ
  for (const char* undefined : {"\x81", "\x8D", "\x8F", "\x90", "\x9D"}) {
    EXPECT_EQ(converted(undefined), "\xEF\xBF\xBD") << int(undefined[0] & 0xFF);  // U+FFFD
  }
}

TEST(EncodingTest, Utf16WithByteOrderMark) {
  // "café 😀" (U+1F600 is the surrogate pair D83D DE00), little- then big-endian.
  const std::string le(
      "\xFF\xFE"
      "c\0a\0f\0\xE9\0 \0\x3D\xD8\x00\xDE"sv);
  const std::string be(
      "\xFE\xFF"
      "\0c\0a\0f\0\xE9\0 \xD8\x3D\xDE\x00"sv);
  const std::string expected = "caf\xC3\xA9 \xF0\x9F\x98\x80";
  std::string encoding;
  EXPECT_EQ(converted(le, &encoding), expected);
  EXPECT_EQ(encoding, "UTF-16LE");
  EXPECT_EQ(converted(be, &encoding), expected);
  EXPECT_EQ(encoding, "UTF-16BE");
  // An unpaired surrogate and half a code unit at the end become U+FFFD.
  EXPECT_EQ(converted("\xFF\xFE"
                      "\x3D\xD8x\0y"sv),
            "\xEF\xBF\xBDx\xEF\xBF\xBD");
}

TEST(EncodingTest, MostlyUtf8KeepsItsCharactersAndReadsStrayBytesAsWindows1252) {
  // A UTF-8 file with one Latin-1 word pasted in: the UTF-8 characters must not turn into
  // mojibake ("Ã©") because of it.
  std::string encoding;
  EXPECT_EQ(converted("na\xC3\xAFve caf\xC3\xA9 cr\xC3\xA8me, then caf\xE9", &encoding),
            "na\xC3\xAFve caf\xC3\xA9 cr\xC3\xA8me, then caf\xC3\xA9");
  EXPECT_EQ(encoding, "UTF-8 mixed with Windows-1252");
}

TEST(EncodingTest, RandomBytesAlwaysBecomeValidUtf8) {
  const uint64_t seed = kdr_test::test_seed();
  std::mt19937_64 rng(seed);
  const std::string prefixes[] = {"", "\xFF\xFE", "\xFE\xFF", "\xEF\xBB\xBF"};
  for (int trial = 0; trial < 5000; ++trial) {
    std::string bytes = prefixes[rng() % 4];
    const size_t n = rng() % 64;
    for (size_t i = 0; i < n; ++i) {
      // Half the strings lean on the bytes that make or break UTF-8 sequences.
      bytes += static_cast<char>(trial % 2 ? 0x7F + rng() % 0x81 : rng() % 256);
    }
    if (trial % 3 == 0) bytes += random_utf8(rng, rng() % 8);
    std::string encoding;
    const std::string out = converted(bytes, &encoding);
    ASSERT_TRUE(well_formed_utf8(out)) << "trial " << trial << " read as " << encoding;
    // The validator agrees with the independent one, and valid input comes back unchanged.
    ASSERT_EQ(is_valid_utf8(bytes), well_formed_utf8(bytes)) << "trial " << trial;
    if (encoding == "UTF-8") {
      ASSERT_EQ(out, bytes) << "trial " << trial;
    }
  }
}

TEST(EncodingTest, InvalidSequencesAreNotUtf8) {
  for (std::string_view bad : {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                               "\xF8\x88\x80\x80\x80", "\xE2\x82", "\x80", "\xFE"}) {
    EXPECT_FALSE(is_valid_utf8(bad)) << bad.size();
    EXPECT_FALSE(well_formed_utf8(bad)) << bad.size();
  }
}

TEST(EncodingTest, ConversionNoteNamesTheFileAndTheEncoding) {
  EXPECT_EQ(conversion_note("data/prices.csv", kWindows1252),
            "data/prices.csv: converted from Windows-1252 to UTF-8");
}

}  // namespace
}  // namespace kdr::hka
