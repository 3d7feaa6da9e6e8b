// Helpers shared by the model-layer tests: a printed random seed, temp files, and a
// check that a callable throws ModelFileError with a given message fragment.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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
