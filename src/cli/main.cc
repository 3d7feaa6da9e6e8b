// kdr: one program, one subcommand per task (like git). Exit codes: 0 success, 1 a failed
// command (the message names what is wrong), 2 bad command-line arguments (from CLI11).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "base/cpu_features.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kdr: an LLM inference engine built around ragged paged attention", "kdr"};
  app.set_version_flag("--version",
                       std::string("kdr ") + KDR_VERSION + " (" + KDR_GIT_COMMIT + ")");
  app.require_subcommand(1);

  kdr::cli::add_bench_command(app);
  kdr::cli::add_generate_command(app);
  kdr::cli::add_perplexity_command(app);
  kdr::cli::add_embed_command(app);
  kdr::cli::add_serve_command(app);
  kdr::cli::add_research_command(app);

  try {
    // Applies KDR_CPU_PATH (a forced kernel path) before any kernel runs; a path this CPU
    // cannot run is an error here rather than a silent fallback.
    kdr::cpu::active_path();
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help and --version exit 0
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kdr: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
