// One fuzz iteration for rpa: bytes -> a small ragged batch (often broken on purpose) ->
// either every entry point rejects it with rpa::Error and writes nothing, or make_plan + run
// agree with rpa::reference (outputs within tolerance, cache bytes identical).
// Shared by the libFuzzer harness (rpa_fuzz.cc) and the deterministic ctest variant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rpa_fuzz {

enum class Outcome { kRejected, kMatched };

// Returns the outcome; on a contract breach (mismatch, crash-free wrong behaviour, an
// exception other than rpa::Error) returns false and describes it in *failure.
bool check_bytes(const uint8_t* data, size_t size, Outcome* outcome, std::string* failure);

}  // namespace rpa_fuzz
