// Cases and checks shared by the bf16 path tests: a matrix over every axis of the rpa kernel
// tests on bf16 caches, and the comparison with rpa::reference under the error bound of the
// bf16 kernels (Q and P rounded to bf16, f32 accumulation).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "rpa/bf16_attention.h"
#include "rpa/rpa.h"
#include "rpa_test_util.h"

namespace rpa_paths {

using rpa_test::Batch;
using rpa_test::Cache;
using rpa_test::Mix;
using rpa_test::NewTokens;
using rpa_test::Rng;

// Sets the emulation switch for the scope of a test, then turns it off again.
class ScopedEmulation {
 public:
  explicit ScopedEmulation(rpa::bf16::Emulation e) { rpa::bf16::set_emulation(e); }
  ~ScopedEmulation() { rpa::bf16::set_emulation(rpa::bf16::Emulation::kOff); }
  ScopedEmulation(const ScopedEmulation&) = delete;
  ScopedEmulation& operator=(const ScopedEmulation&) = delete;
};
const char* to_string(rpa::bf16::Emulation e);

// One case of the bf16 matrix: a case of tests/rpa's kernel matrix on a bf16 cache (odd
// tiles: q 5, kv 13, decode 23 and split-KV every 48).
using Bf16Case = rpa_test::Case;
// The case's name in the bf16 tests' lists.
std::string bf16_case_name(const Bf16Case& c, size_t index);
// Every head dim (64, 80, 96, 128, 256) x distribution mix, page sizes 1..256, thread counts,
// head configurations (MHA, GQA 4 / 6 / 5, MQA), causal or not, windows, soft cap, sinks,
// batch sizes and tile sizes spread over the cases by a fixed seed (the same list every run).
// `small` keeps every kind of case with shorter sequences (sanitizer builds).
std::vector<Bf16Case> bf16_matrix(bool small);

struct Bf16CaseData {
  Batch batch;
  Cache cache;
  NewTokens x;
  std::vector<float> sinks;
  rpa::AttentionParams params;  // sinks point into this object: do not copy it
  rpa::Tuning tuning;
  int32_t threads = 1;
};
void make_case(const Bf16Case& c, uint64_t seed, bool small, Bf16CaseData& out);

// Checks `got` and `after` (rpa::run's output and cache, run on a copy of `before`) against
// rpa::reference. The cache must hold the reference's bytes exactly. Output tokens that
// the bf16 kernels computed (route) against the reference on Q rounded to bf16, within
//   |got - want| <= 1.05 * 2^-8 W + 1e-5,  W = sum_t p_t |v_t| / l  (the reference on |V|):
// rounding each probability to bf16 moves it by at most 2^-8 of itself (half an ulp of 7
// stored bits), so the output by at most 2^-8 W; 5% and 1e-5 cover the f32 arithmetic. The
// other tokens (f32 kernels) against the reference on Q as given, within the same bound.
// `worst` gets the largest |got - want| / bound seen.
::testing::AssertionResult within_bf16_bound(const Batch& b, const rpa::AttentionParams& p,
                                             const NewTokens& x, const Cache& before,
                                             const rpa::bf16::Route& route,
                                             const std::vector<float>& got, const Cache& after,
                                             double* worst);

// Runs the case's kernels (under the emulation switch as it stands) on a copy of its cache,
// expects output and cache within_bf16_bound for `route` and prints the worst |error| / bound.
// Returns the output.
std::vector<float> run_within_bf16_bound(const Bf16CaseData& data, const rpa::bf16::Route& route);

// A batch of n sequences (decodes, one split; prefill chunks; mixed chunks; window, soft cap,
// sinks) on a bf16 cache: the output within the bf16 bound for `route`, bitwise the same at
// 1, 2 and 4 threads, and every sequence run alone bitwise equal to its rows in the batch.
void expect_batch_invariance(uint64_t seed, int32_t n, const rpa::bf16::Route& route);

}  // namespace rpa_paths
