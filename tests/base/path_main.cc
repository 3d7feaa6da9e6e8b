// main() of the test programs that run once per kernel path (tests/CMakeLists.txt,
// kdr_path_tests). KDR_CPU_PATH names the path. For a path this CPU or this build cannot run,
// the program runs nothing and prints "kernel path X cannot run here: <why>", which ctest's
// SKIP_REGULAR_EXPRESSION turns into a skipped test: CI's log lists the path under "did not
// run" with the reason instead of passing it silently.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/cpu_features.h"
#include "gtest/gtest.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  const char* env = std::getenv("KDR_CPU_PATH");
  if (env != nullptr && *env != '\0') {
    const std::optional<kdr::cpu::Path> path = kdr::cpu::parse_path(env);
    if (!path) {
      std::fprintf(stderr, "KDR_CPU_PATH=%s: unknown kernel path\n", env);
      return 2;
    }
    if (const std::string why = kdr::cpu::unavailable_reason(*path); !why.empty()) {
      std::printf("kernel path %s cannot run here: %s\n", env, why.c_str());
      return 0;
    }
    kdr::cpu::set_active_path(*path);
  }
  std::printf("kernel path: %s (%s)\n", kdr::cpu::path_name(kdr::cpu::active_path()),
              kdr::cpu::describe().c_str());
  return RUN_ALL_TESTS();
}
