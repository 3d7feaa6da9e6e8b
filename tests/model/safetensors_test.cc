// safetensors reader (single and sharded) and Hugging Face model folders: round trips of
// every dtype, one test per corruption with its exact message, random mutations.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "model/hf_dir.h"
#include "model_test_util.h"

namespace kdr::model {
namespace {

using nlohmann::json;
using testing::Entry;
using testing::error_of;
using testing::make_raw;
using testing::make_safetensors;
using testing::test_seed;

size_t dtype_bytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16") return 2;
  return 1;
}

Entry random_entry(std::mt19937_64& rng, const std::string& name, const std::string& dtype) {
  Entry e{name, dtype, {}, {}};
  size_t n_dims = rng() % 5;
  size_t count = 1;
  for (size_t d = 0; d < n_dims; ++d) {
    e.shape.push_back(static_cast<int64_t>(1 + rng() % 5));
    count *= static_cast<size_t>(e.shape.back());
  }
  e.data.resize(count * dtype_bytes(dtype));
  for (uint8_t& b : e.data) b = static_cast<uint8_t>(rng());
  return e;
}

SafetensorsFile parse(const std::vector<uint8_t>& bytes) {
  return SafetensorsFile::from_memory(bytes.data(), bytes.size(), "m.safetensors");
}
std::string parse_error(const std::vector<uint8_t>& bytes) {
  return error_of([&] { parse(bytes); });
}
// A header with the one entry "w" and a data buffer of `buffer` bytes.
std::string entry_error(const json& w, size_t buffer) {
  std::vector<uint8_t> b =
      make_raw(json{{"w", w}}.dump(), {Entry{"", "", {}, std::vector<uint8_t>(buffer)}});
  return parse_error(b);
}

TEST(Safetensors, EveryDtypeRoundTripsInGgmlDimOrder) {
  std::mt19937_64 rng(test_seed());
  const std::map<std::string, DType> dtypes = {
      {"F64", DType::F64},   {"F32", DType::F32}, {"F16", DType::F16},
      {"BF16", DType::BF16}, {"I64", DType::I64}, {"I32", DType::I32},
      {"I16", DType::I16},   {"I8", DType::I8},   {"U8", DType::U8}};
  std::vector<Entry> entries;
  for (const auto& [dtype, type] : dtypes)
    entries.push_back(random_entry(rng, "t." + dtype, dtype));
  const std::vector<uint8_t> bytes =
      make_safetensors(entries, {{"__metadata__", {{"format", "pt"}, {"n", 3}}}});
  SafetensorsFile f = parse(bytes);
  ASSERT_EQ(f.tensors().size(), entries.size());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().count("n"), 0u);  // non-string metadata is skipped
  for (const Entry& e : entries) {
    const TensorView& t = f.tensor(e.name);
    EXPECT_EQ(t.type, dtypes.at(e.dtype)) << e.name;
    EXPECT_EQ(t.torch_shape(), e.shape) << e.name;
    std::vector<int64_t> reversed(e.shape.rbegin(), e.shape.rend());
    EXPECT_EQ(t.dims(), reversed) << e.name;
    ASSERT_EQ(t.n_bytes, e.data.size()) << e.name;
    EXPECT_EQ(std::memcmp(t.data, e.data.data(), e.data.size()), 0) << e.name;
  }
  // tensors() is in data order, which here is the order written.
  for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(f.tensors()[i].name, entries[i].name);
}

TEST(Safetensors, OpensFromDiskWithShapeChecks) {
  testing::TempDir dir;
  std::vector<float> w = {1, 2, 3, 4, 5, 6};
  Entry e{"model.embed_tokens.weight", "F32", {3, 2}, {}};
  e.data.resize(24);
  std::memcpy(e.data.data(), w.data(), 24);
  const std::string path = dir.file("model.safetensors");
  testing::write_bytes(path, make_safetensors({e}));
  SafetensorsFile f = SafetensorsFile::open(path);
  const TensorView& t = f.expect_shape("model.embed_tokens.weight", {2, 3});  // ggml order
  float x;
  std::memcpy(&x, t.data + 4 * 5, 4);
  EXPECT_EQ(x, 6.0f);
  EXPECT_EQ(error_of([&] {
              f.expect_shape("model.embed_tokens.weight", {3, 2});
            }),
            "file " + path +
                ": tensor model.embed_tokens.weight: expected shape [3, 2], found [2, 3]" +
                " (ggml order, ne[0] contiguous)");
  EXPECT_EQ(error_of([&] { f.tensor("lm_head.weight"); }),
            "file " + path + ": missing tensor lm_head.weight");
}

TEST(SafetensorsCorrupt, HeaderErrors) {
  EXPECT_EQ(parse_error({1, 2, 3}),
            "file m.safetensors: truncated: 3 bytes, too short for the header length");
  std::vector<uint8_t> huge(16, 0);
  huge[4] = 1;  // 2^32
  EXPECT_EQ(parse_error(huge),
            "file m.safetensors: header length 4294967296 exceeds the limit of 104857600 bytes");
  std::vector<uint8_t> short_header = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  EXPECT_EQ(parse_error(short_header),
            "file m.safetensors: truncated: header length 100 but only 2 bytes follow");
  EXPECT_EQ(parse_error(make_raw("{\"w\": ", {})).find("file m.safetensors: invalid JSON: "), 0u);
  EXPECT_EQ(parse_error(make_raw("[1, 2]", {})),
            "file m.safetensors: the JSON header is not an object");
  EXPECT_EQ(parse_error(make_raw(R"({"a": {}, "a": {}})", {})),
            "file m.safetensors: duplicate entry a in the JSON header");
  std::string deep = R"({"__metadata__": )" + std::string(40, '[') + std::string(40, ']') + "}";
  EXPECT_EQ(parse_error(make_raw(deep, {})), "file m.safetensors: JSON nested deeper than 16");
  // Empty header, empty buffer: a valid file with no tensors.
  EXPECT_EQ(parse(make_raw("{}", {})).tensors().size(), 0u);
}

TEST(SafetensorsCorrupt, EntryErrors) {
  EXPECT_EQ(entry_error(7, 0), "file m.safetensors: tensor w: entry is not a JSON object");
  EXPECT_EQ(entry_error({{"shape", {1}}, {"data_offsets", {0, 4}}}, 4),
            "file m.safetensors: tensor w: missing string dtype");
  EXPECT_EQ(entry_error({{"dtype", "F8_E4M3"}, {"shape", {1}}, {"data_offsets", {0, 1}}}, 1),
            "file m.safetensors: unsupported dtype F8_E4M3 for tensor w");
  EXPECT_EQ(entry_error({{"dtype", "F32"}, {"data_offsets", {0, 4}}}, 4),
            "file m.safetensors: tensor w: missing shape array");
  EXPECT_EQ(entry_error({{"dtype", "F32"}, {"shape", {-1}}, {"data_offsets", {0, 4}}}, 4),
            "file m.safetensors: tensor w: shape[0] must be a non-negative integer, found -1");
  EXPECT_EQ(
      entry_error({{"dtype", "F32"}, {"shape", {1, 1, 1, 1, 1}}, {"data_offsets", {0, 4}}}, 4),
      "file m.safetensors: tensor w: 5 dims, at most 4 supported");
  EXPECT_EQ(entry_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0}}}, 4),
            "file m.safetensors: tensor w: data_offsets must be an array [begin, end]");
  EXPECT_EQ(entry_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {4, 0}}}, 4),
            "file m.safetensors: tensor w: data_offsets [4, 0] end before they begin");
  EXPECT_EQ(
      entry_error({{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}, 4),
      "file m.safetensors: tensor w: data_offsets [0, 8] extend past the data buffer (4 bytes): "
      "truncated file?");
  EXPECT_EQ(
      entry_error({{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 20}}}, 20),
      "file m.safetensors: tensor w: shape [2, 3] of F32 needs 24 bytes, data_offsets give 20");
  EXPECT_EQ(
      entry_error({{"dtype", "F32"}, {"shape", {uint64_t{1} << 62, 8}}, {"data_offsets", {0, 4}}},
                  4),
      "file m.safetensors: tensor w: shape [4611686018427387904, 8] of F32 needs more than 2^64 "
      "bytes, data_offsets give 4");
  EXPECT_EQ(
      entry_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {4, 8}}}, 8),
      "file m.safetensors: bytes [0, 4) of the data buffer belong to no tensor (before tensor w)");
  EXPECT_EQ(entry_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}, 12),
            "file m.safetensors: bytes [4, 12) at the end of the data buffer belong to no tensor");

  json overlap = {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
                  {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {4, 12}}}}};
  EXPECT_EQ(parse_error(make_raw(overlap.dump(), {Entry{"", "", {}, std::vector<uint8_t>(12)}})),
            "file m.safetensors: tensors a and b overlap");
}

TEST(SafetensorsCorrupt, RandomMutationsNeverReadOutOfBounds) {
  std::mt19937_64 rng(test_seed());
  std::vector<Entry> entries;
  for (const char* dtype : {"F32", "BF16", "I8", "F16"})
    entries.push_back(random_entry(rng, std::string("layers.0.") + dtype, dtype));
  const std::vector<uint8_t> valid =
      make_safetensors(entries, {{"__metadata__", {{"format", "pt"}}}});
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> m = valid;
    // Mutate the header mostly: that is where the parser's decisions are.
    for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) {
      size_t at = rng() % std::min<size_t>(m.size(), 8 + 160);
      m[at] = (rng() % 2) ? static_cast<uint8_t>("0123456789[]{},:\" -e"[rng() % 20])
                          : static_cast<uint8_t>(m[at] ^ (1u << (rng() % 8)));
    }
    if (rng() % 5 == 0) m.resize(rng() % m.size());
    std::unique_ptr<uint8_t[]> buf(new uint8_t[m.size() + 1]);
    std::memcpy(buf.get(), m.data(), m.size());
    try {
      SafetensorsFile f = SafetensorsFile::from_memory(buf.get(), m.size(), "mutant");
      ++parsed;
      size_t covered = 0;
      for (const TensorView& t : f.tensors()) {
        ASSERT_GE(t.data, buf.get());
        ASSERT_LE(t.data + t.n_bytes, buf.get() + m.size());
        ASSERT_EQ(t.n_bytes,
                  static_cast<size_t>(t.n_elements()) * dtype_traits(t.type).block_bytes);
        covered += t.n_bytes;
      }
      uint64_t header_len;
      std::memcpy(&header_len, buf.get(), 8);
      ASSERT_EQ(covered, m.size() - 8 - header_len);  // tensors tile the buffer
    } catch (const ModelFileError& e) {
      ++rejected;
      ASSERT_EQ(std::string(e.what()).find("file mutant: "), 0u) << e.what();
    }
  }
  std::printf("[ mutants  ] %d parsed, %d rejected\n", parsed, rejected);
  EXPECT_GT(rejected, 0);
}

// ---- shards and model folders ----

std::vector<uint8_t> f32_bytes(size_t n, float base) {
  std::vector<uint8_t> b(4 * n);
  for (size_t i = 0; i < n; ++i) {
    float x = base + static_cast<float>(i);
    std::memcpy(b.data() + 4 * i, &x, 4);
  }
  return b;
}

void write_json(const std::string& path, const json& j) {
  std::string s = j.dump(2);
  testing::write_bytes(path, {s.begin(), s.end()});
}

TEST(SafetensorsShards, IndexMapsTensorsToShards) {
  testing::TempDir dir;
  testing::write_bytes(
      dir.file("model-00001-of-00002.safetensors"),
      make_safetensors({{"a", "F32", {2}, f32_bytes(2, 10)}, {"b", "F32", {1}, f32_bytes(1, 20)}}));
  testing::write_bytes(dir.file("model-00002-of-00002.safetensors"),
                       make_safetensors({{"c", "F32", {3}, f32_bytes(3, 30)}}));
  write_json(dir.file("model.safetensors.index.json"),
             {{"metadata", {{"total_size", 24}}},
              {"weight_map",
               {{"a", "model-00001-of-00002.safetensors"},
                {"b", "model-00001-of-00002.safetensors"},
                {"c", "model-00002-of-00002.safetensors"}}}});
  SafetensorsShards s = SafetensorsShards::open_index(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(s.files().size(), 2u);
  EXPECT_EQ(s.tensors().size(), 3u);
  float x;
  std::memcpy(&x, s.expect_shape("c", {3}).data + 8, 4);
  EXPECT_EQ(x, 32.0f);
  EXPECT_EQ(s.file_of("a"), dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(error_of([&] { s.tensor("d"); }),
            "file " + dir.file("model.safetensors.index.json") + ": missing tensor d");
  EXPECT_EQ(error_of([&] {
              s.expect_shape("c", {1, 3});
            }),
            "file " + dir.file("model-00002-of-00002.safetensors") +
                ": tensor c: expected shape [1, 3], found [3] (ggml order, ne[0] contiguous)");
}

TEST(SafetensorsShards, IndexErrors) {
  testing::TempDir dir;
  testing::write_bytes(dir.file("s1.safetensors"),
                       make_safetensors({{"a", "F32", {1}, f32_bytes(1, 0)}}));
  testing::write_bytes(
      dir.file("s2.safetensors"),
      make_safetensors({{"a", "F32", {1}, f32_bytes(1, 0)}, {"b", "F32", {1}, f32_bytes(1, 0)}}));
  const std::string index = dir.file("model.safetensors.index.json");
  auto error_for = [&](const json& j) {
    write_json(index, j);
    return error_of([&] { SafetensorsShards::open_index(index); });
  };
  EXPECT_EQ(error_for({{"metadata", {}}}), "file " + index + ": no weight_map object");
  EXPECT_EQ(error_for({{"weight_map", {{"a", "../s1.safetensors"}}}}),
            "file " + index + ": tensor a: shard ../s1.safetensors is not a plain file name");
  EXPECT_EQ(error_for({{"weight_map", {{"b", "s1.safetensors"}}}}),
            "file " + index +
                ": tensor b is listed in shard s1.safetensors but that file does not hold it");
  EXPECT_EQ(error_for({{"weight_map", {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}}}),
            "file " + index + ": tensor a is in both " + dir.file("s1.safetensors") + " and " +
                dir.file("s2.safetensors"));
  EXPECT_EQ(error_for({{"weight_map", {{"a", "absent.safetensors"}}}})
                .find("file " + dir.file("absent.safetensors") + ": cannot open"),
            0u);
  testing::write_bytes(index, {'{', 'x'});
  EXPECT_EQ(error_of([&] {
              SafetensorsShards::open_index(index);
            }).find("file " + index + ": invalid JSON"),
            0u);
}

TEST(HfModelDir, FindsConfigWeightsAndTokenizerFiles) {
  testing::TempDir dir;
  const std::string root = dir.file("");
  write_json(dir.file("config.json"), {{"model_type", "qwen2"}, {"hidden_size", 64}});
  testing::write_bytes(dir.file("model.safetensors"),
                       make_safetensors({{"model.norm.weight", "F32", {64}, f32_bytes(64, 0)}}));
  write_json(dir.file("tokenizer.json"), json::object());
  HfModelDir d = HfModelDir::open(root);
  EXPECT_EQ(d.config()["model_type"], "qwen2");
  EXPECT_EQ(d.config()["hidden_size"], 64);
  EXPECT_EQ(d.weights().expect_shape("model.norm.weight", {64}).type, DType::F32);
  EXPECT_EQ(d.tokenizer_json_path(), dir.file("tokenizer.json"));
  EXPECT_FALSE(d.tokenizer_config_path().has_value());
  EXPECT_FALSE(d.generation_config_path().has_value());
}

TEST(HfModelDir, Errors) {
  testing::TempDir dir;
  const std::string root = dir.file("");
  EXPECT_EQ(error_of([&] { HfModelDir::open(dir.file("nope")); }),
            "directory " + dir.file("nope") + ": not a directory");
  EXPECT_EQ(error_of([&] { HfModelDir::open(root); }),
            "directory " + root + ": missing config.json");
  testing::write_bytes(dir.file("config.json"), {'{'});
  EXPECT_EQ(error_of([&] {
              HfModelDir::open(root);
            }).find("file " + dir.file("config.json") + ": invalid JSON"),
            0u);
  write_json(dir.file("config.json"), {{"model_type", "llama"}});
  EXPECT_EQ(error_of([&] { HfModelDir::open(root); }),
            "directory " + root + ": no model.safetensors or model.safetensors.index.json");
}

}  // namespace
}  // namespace kdr::model
