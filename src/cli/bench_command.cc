// `kdr bench`: the parent of every benchmark subcommand.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace kdr::cli {

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand(
      "bench", "Benchmarks: time kernels and compare with this machine's measured ceilings");
  bench->require_subcommand(1);
  add_bench_attention_command(*bench);
  add_bench_generate_command(*bench);
}

}  // namespace kdr::cli
