// `kdr research verify OUT`: re-verifies a report a user edited. OUT/report.md is checked
// against the facts and sources the run stored (OUT/analysis/facts.json, sources.json) by the
// rules finalize_report applies (hka/report/verify.h), and OUT/verification.json is rewritten.
// Exit codes: 0 everything verifies, 2 something does not, 1 a file is missing or malformed.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "hka/report/report.h"

namespace kdr::cli {

namespace {

void run_verify_command(const std::string& out) {
  const hka::FinalReport r = hka::reverify_output(out);
  const size_t verified = r.numbers.size() - static_cast<size_t>(r.unverified_numbers);
  std::printf(
      "%zu numbers checked: %zu verified, %d unverified; %zu citations, %d unresolved, %d "
      "unsupported\n",
      r.numbers.size(), verified, r.unverified_numbers, r.citations.size(), r.unresolved_citations,
      r.unsupported_citations);
  for (const hka::NumberCheck& n : r.numbers) {
    if (n.verified) continue;
    std::printf("unverified  %s (%s): %s\n            \"%s\"\n", n.text.c_str(), n.section.c_str(),
                n.reason.c_str(), n.context.c_str());
  }
  for (const hka::CitationCheck& c : r.citations) {
    if (c.resolved && c.supported) continue;
    std::printf("%s [%s] (%s): %s\n            \"%s\"\n",
                c.resolved ? "unsupported" : "unresolved ", c.key.c_str(), c.section.c_str(),
                c.reason.c_str(), c.sentence.c_str());
  }
  std::printf("verification: %s\n", (std::filesystem::path(out) / "verification.json").c_str());
  std::fflush(stdout);
  // CLI11 callbacks return nothing: "something does not verify" is exit code 2.
  if (r.unverified_numbers > 0 || r.unresolved_citations > 0 || r.unsupported_citations > 0) {
    std::exit(2);
  }
}

}  // namespace

void add_research_verify_command(CLI::App& research) {
  auto out = std::make_shared<std::string>();
  CLI::App* cmd = research.add_subcommand(
      "verify",
      "Re-verify an edited OUT/report.md against the run's facts and sources; rewrites "
      "OUT/verification.json (exit 0: all verified, 2: something is not, 1: an error)");
  // No existence check here: a missing folder is a missing OUT/report.md, exit code 1.
  cmd->add_option("out", *out, "the output folder of a `kdr research` run")->required();
  cmd->callback([out] { run_verify_command(*out); });
}

}  // namespace kdr::cli
