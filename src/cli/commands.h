// The subcommands of the kdr program. Each lives in its own file and registers itself on
// the app (or on a parent subcommand) through one add_<name>_command function, so a layer
// adds a command without touching the others.
#pragma once

#include <string>

#include "rpa/rpa.h"

namespace CLI {
class App;
}

namespace kdr::cli {

// A KV cache type's name (the dtype registry's parser: "f32", "bf16", "f16", "int8", "fp8" and
// their aliases) -> the KV cache type; std::invalid_argument listing the names otherwise.
rpa::KvDType parse_kv_dtype(const std::string& s);
// Adds --kv-dtype to cmd, bound to *name and limited to the names parse_kv_dtype takes.
void add_kv_dtype_option(CLI::App* cmd, std::string* name);

// `kdr bench ...`: benchmarks that print ratios against this machine's measured ceilings.
void add_bench_command(CLI::App& app);

// `kdr bench attention`: ragged paged attention on Llama-3-8B shapes.
void add_bench_attention_command(CLI::App& bench);

// `kdr generate`: stream a completion from a model.
void add_generate_command(CLI::App& app);

// `kdr perplexity`: perplexity and top-1 predictions on a text file.
void add_perplexity_command(CLI::App& app);

// `kdr bench generate`: prompt and generation tokens/s of a model.
void add_bench_generate_command(CLI::App& bench);

// `kdr embed`: sentence embeddings of texts (embed_command.cc).
void add_embed_command(CLI::App& app);

// `kdr serve`: the OpenAI-compatible server.
void add_serve_command(CLI::App& app);
// `kdr research`: a verified report from tables and documents.
void add_research_command(CLI::App& app);
// `kdr research verify OUT`: re-verify an edited report (research_verify.cc).
void add_research_verify_command(CLI::App& research);
// `kdr research search QUERY`: what retrieval finds, as JSON (research_search.cc).
void add_research_search_command(CLI::App& research);

}  // namespace kdr::cli
