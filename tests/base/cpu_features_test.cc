// cpu::features() against the kernel's own view of the CPU (/proc/cpuinfo flags, which Linux
// clears for state the OS does not save), and the path choice against Highway's dispatch.
#include "base/cpu_features.h"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

#include "gtest/gtest.h"
#include "hwy/targets.h"

namespace kdr::cpu {
namespace {

std::set<std::string> proc_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> out;
    for (std::string w; words >> w;) out.insert(w);
    return out;
  }
  return {};
}

TEST(CpuFeatures, AgreesWithProcCpuinfo) {
  const std::set<std::string> flags = proc_flags();
  if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags line on this system";
  const Features& f = features();
  std::printf("cpu: %s\n", describe().c_str());
  const std::pair<const char*, bool> checks[] = {{"avx2", f.avx2},
                                                 {"fma", f.fma},
                                                 {"f16c", f.f16c},
                                                 {"avx512f", f.avx512f},
                                                 {"avx512bw", f.avx512bw},
                                                 {"avx512vl", f.avx512vl},
                                                 {"avx512dq", f.avx512dq},
                                                 {"avx512_vnni", f.avx512_vnni},
                                                 {"avx512_bf16", f.avx512_bf16},
                                                 {"avx512_fp16", f.avx512_fp16},
                                                 {"avx_vnni", f.avx_vnni},
                                                 {"amx_tile", f.amx_tile},
                                                 {"amx_bf16", f.amx_bf16},
                                                 {"amx_int8", f.amx_int8}};
  for (const auto& [name, detected] : checks) EXPECT_EQ(detected, flags.count(name) == 1) << name;
  EXPECT_FALSE(f.brand.empty());
}

TEST(CpuFeatures, PathNamesRoundTrip) {
  for (int i = 0; i < kNumPaths; ++i) {
    const Path p = static_cast<Path>(i);
    ASSERT_EQ(parse_path(path_name(p)), p);
  }
  EXPECT_EQ(parse_path("bf16"), Path::kAvx512Bf16);
  EXPECT_FALSE(parse_path("avx3").has_value());
  EXPECT_FALSE(parse_path("").has_value());
}

TEST(CpuFeatures, PathsFollowTheFeatures) {
  const Features& f = features();
  EXPECT_EQ(path_available(Path::kAvx512), f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq &&
                                               (HWY_TARGETS & (HWY_AVX3 | HWY_AVX3_DL)) != 0);
  if (!f.avx512_bf16) {
    EXPECT_FALSE(path_available(Path::kAvx512Bf16));
  }
  if (!f.amx_bf16) {
    EXPECT_FALSE(path_available(Path::kAmx));
  }
  const std::vector<Path> all = available_paths();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(best_path(), all.back());
  std::string names;
  for (Path p : all) names += std::string(" ") + path_name(p);
  std::printf("paths this machine and build can run:%s\n", names.c_str());
}

TEST(CpuFeatures, UnverifiedPathsAreOptIn) {
  EXPECT_TRUE(path_verified(Path::kScalar));
  EXPECT_TRUE(path_verified(Path::kAvx2));
  EXPECT_TRUE(path_verified(Path::kAvx512));
  EXPECT_FALSE(path_verified(Path::kAvx512Bf16));
  EXPECT_FALSE(path_verified(Path::kAmx));
  const char* env = std::getenv("KDR_UNVERIFIED_PATHS");
  const bool admitted = env != nullptr && std::string(env) == "1";
  for (Path p : {Path::kAvx512Bf16, Path::kAmx}) {
    const std::string hw = hardware_reason(p), why = unavailable_reason(p);
    if (!hw.empty()) {
      EXPECT_EQ(why, hw);  // the hardware's reason comes first
    } else if (admitted) {
      EXPECT_EQ(why, "");
    } else {
      EXPECT_NE(why.find("KDR_UNVERIFIED_PATHS=1"), std::string::npos) << why;
    }
  }
  for (Path p : {Path::kScalar, Path::kAvx2, Path::kAvx512}) {
    EXPECT_EQ(unavailable_reason(p), hardware_reason(p));
  }
}

TEST(CpuFeatures, ForcingAPathNarrowsHighwayDispatch) {
  const Path original = active_path();
  for (Path p : available_paths()) {
    set_active_path(p);
    EXPECT_EQ(active_path(), p);
    const int64_t supported = hwy::SupportedTargets();
    if (p == Path::kScalar) {
      EXPECT_EQ(supported & ~(HWY_EMU128 | HWY_SCALAR), 0) << supported;
    }
    if (p == Path::kAvx2) {
      EXPECT_NE(supported & HWY_AVX2, 0);
      EXPECT_EQ(supported & (HWY_AVX3 | HWY_AVX3_DL), 0);
    }
    if (p >= Path::kAvx512) {
      EXPECT_NE(supported & (HWY_AVX3 | HWY_AVX3_DL), 0);
    }
  }
  for (int i = 0; i < kNumPaths; ++i) {
    const Path p = static_cast<Path>(i);
    if (path_available(p)) continue;
    try {
      set_active_path(p);
      ADD_FAILURE() << "set_active_path(" << path_name(p) << ") should throw";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path_name(p)), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(unavailable_reason(p)), std::string::npos) << e.what();
    }
  }
  set_active_path(original);
  EXPECT_EQ(active_path(), original);
}

}  // namespace
}  // namespace kdr::cpu
