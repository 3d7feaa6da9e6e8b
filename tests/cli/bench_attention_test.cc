// `kdr bench attention --quick` end to end: the machine line and every case's JSON fields,
// the MFU and roofline numbers recomputed from the fields they are made of, and the exit
// status when a kernel's output is off by more than its tolerance. The kdr under test runs on
// the kernel path of this test (KDR_CPU_PATH is inherited).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/cpu_features.h"

namespace {

struct KdrRun {
  int exit_code = -1;
  std::string out, err;
};

KdrRun run_kdr(const std::string& args) {
  const std::string err_path = ::testing::TempDir() + "kdr_bench_stderr.txt";
  const std::string cmd = std::string(KDR_BINARY) + " bench attention " + args + " 2>" + err_path;
  KdrRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream f(err_path);
  std::stringstream ss;
  ss << f.rdbuf();
  r.err = ss.str();
  return r;
}

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '{') lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(BenchAttentionQuick, ReportsEveryCaseAgainstTheActivePathsUnit) {
  const KdrRun r = run_kdr("--quick --json --reps 1 --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<nlohmann::json> lines = json_lines(r.out);
  ASSERT_GE(lines.size(), 2u) << r.out;

  const nlohmann::json& machine = lines[0].at("machine");
  const std::string path = kdr::cpu::path_name(kdr::cpu::active_path());
  EXPECT_EQ(machine.at("path"), path);
  EXPECT_EQ(machine.at("cpu"), kdr::cpu::describe());
  EXPECT_GT(machine.at("peak_gbps").get<double>(), 0);
  EXPECT_GT(machine.at("peak_gflops").get<double>(), 0);
  const nlohmann::json& units = machine.at("compute_ceilings_gops");
  EXPECT_EQ(units.size(), 7u);
  EXPECT_GT(units.at("f32-sse").get<double>(), 0);

  std::vector<std::string> names;
  for (size_t i = 1; i < lines.size(); ++i) {
    const nlohmann::json& c = lines[i];
    const std::string name = c.at("case");
    SCOPED_TRACE(name + " " + c.at("kv_dtype").get<std::string>());
    names.push_back(name);
    EXPECT_EQ(c.at("path"), path);
    EXPECT_EQ(c.at("cpu"), kdr::cpu::describe());
    const std::string unit = c.at("unit");
    // The unit's ceiling was measured in this run, and MFU is taken against it.
    ASSERT_TRUE(units.at(unit).is_number()) << unit;
    // The ceiling is the best of the header's probe and the probes next to the case.
    const double unit_gops =
        std::max(units.at(unit).get<double>(), c.at("unit_gops_adjacent").get<double>());
    const double ms = c.at("ms"), flops = c.at("flops"), bytes = c.at("bytes");
    EXPECT_GT(c.at("unit_gops_adjacent").get<double>(), 0);
    EXPECT_DOUBLE_EQ(c.at("unit_gops").get<double>(), unit_gops);
    const double read_gbps = std::max(c.at("peak_gbps").get<double>(), c.value("paired_gbps", 0.0));
    EXPECT_DOUBLE_EQ(c.at("roofline_read_gbps").get<double>(), read_gbps);
    EXPECT_NEAR(c.at("mfu").get<double>(), flops / (ms * 1e6) / unit_gops, 1e-9);
    EXPECT_NEAR(c.at("mfu_sgemm").get<double>(),
                flops / (ms * 1e6) / c.at("peak_gflops").get<double>(), 1e-9);
    const double bound_ms = std::max(bytes / (read_gbps * 1e6), flops / (unit_gops * 1e6));
    EXPECT_NEAR(c.at("roofline_bound_ms").get<double>(), bound_ms, 1e-9 * bound_ms);
    EXPECT_NEAR(c.at("roofline_fraction").get<double>(), bound_ms / ms, 1e-9 * bound_ms / ms);
    // Today's kernels on this path: the f32 units, 1e-4 tolerance; checked in full (quick
    // cases are small enough for the reference).
    EXPECT_TRUE(c.at("within_tolerance").get<bool>());
    EXPECT_LE(c.at("tolerance_ratio").get<double>(), 1.0);
    EXPECT_LE(c.at("max_abs_err").get<double>(),
              c.at("tolerance_atol").get<double>() + c.at("tolerance_rtol").get<double>());
    EXPECT_FALSE(c.at("ref_reduced").get<bool>());
    EXPECT_FALSE(c.contains("peer"));  // peers are measured by scripts/bench peers only
  }
  for (const char* want : {"decode-4seq", "decode-512", "prefill-64", "mixed"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  // The mixed step's line carries its ratio to the parts.
  EXPECT_TRUE(lines.back().contains("mixed_over_parts_interleaved"));
}

TEST(BenchAttentionQuick, ExitsNonZeroWhenAKernelIsOffByMoreThanItsTolerance) {
  const KdrRun r = run_kdr("--quick --reps 1 --threads 2 --case prefill --perturb-output 0.5");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("kernel error above its tolerance: prefill-64 bf16"), std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("FAIL"), std::string::npos) << r.out;  // the table marks the row
  // Within tolerance the same run passes.
  const KdrRun ok = run_kdr("--quick --reps 1 --threads 2 --case prefill --perturb-output 1e-6");
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
}

}  // namespace
