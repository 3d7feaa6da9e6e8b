// Helpers shared by the model-layer tests: a printed random seed, temp files, and a
// check that a callable throws ModelFileError with a given message fragment.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "../base/seed.h"
#include "model/tensor.h"

namespace kdr::model::testing {

using kdr_test::test_seed;

// A folder under the system temp dir, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kdr_model_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// One tensor of a safetensors file made in a test.
struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;  // PyTorch order
  std::vector<uint8_t> data;
};

// 8-byte length, header text, then the entries' data in order.
inline std::vector<uint8_t> make_raw(const std::string& header_text,
                                     const std::vector<Entry>& entries) {
  size_t total = 8 + header_text.size();
  for (const Entry& e : entries) total += e.data.size();
  std::vector<uint8_t> out(total);
  uint64_t n = header_text.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header_text.data(), header_text.size());
  size_t at = 8 + header_text.size();
  for (const Entry& e : entries) {
    if (!e.data.empty()) std::memcpy(out.data() + at, e.data.data(), e.data.size());
    at += e.data.size();
  }
  return out;
}

// Serializes entries back to back in the given order; the header is space-padded to a
// multiple of 8 as the reference writer does.
inline std::vector<uint8_t> make_safetensors(const std::vector<Entry>& entries,
                                             nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json header = std::move(extra);
  uint64_t offset = 0;
  for (const Entry& e : entries) {
    header[e.name] = {
        {"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.data.size()}}};
    offset += e.data.size();
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  return make_raw(text, entries);
}

// The message of the ModelFileError `fn` throws; fails the test when it throws nothing.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ModelFileError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ModelFileError";
  return "";
}

#define EXPECT_MODEL_ERROR(expr, fragment)                                        \
  do {                                                                            \
    std::string kdr_msg = ::kdr::model::testing::error_of([&] { (void)(expr); }); \
    EXPECT_NE(kdr_msg.find(fragment), std::string::npos)                          \
        << "message: " << kdr_msg << "\nexpected to contain: " << (fragment);     \
  } while (0)

}  // namespace kdr::model::testing
