// libFuzzer harness for rpa: every input decodes to a small ragged batch (see
// rpa_fuzz_check.cc) that must be rejected cleanly or computed exactly like the reference.
//
// Build and run (clang only; the target exists when the compiler is clang or KDR_FUZZ=ON):
//   CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DKDR_FUZZ=ON -DKDR_PYTHON=OFF
//   ninja -C build-fuzz rpa_fuzz
//   mkdir -p /tmp/rpa_corpus && build-fuzz/tests/fuzz/rpa_fuzz /tmp/rpa_corpus -max_total_time=300
// A crash leaves crash-<sha1>; replay it with `build-fuzz/tests/fuzz/rpa_fuzz crash-<sha1>`.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "rpa_fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rpa_fuzz::Outcome outcome;
  std::string failure;
  if (!rpa_fuzz::check_bytes(data, size, &outcome, &failure)) {
    std::fprintf(stderr, "rpa_fuzz: %s\n", failure.c_str());
    std::abort();
  }
  return 0;
}
