#include "model/hf_dir.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kdr::model {
namespace fs = std::filesystem;

namespace {

std::optional<std::string> existing(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return p.string();
  return std::nullopt;
}

}  // namespace

HfModelDir HfModelDir::open(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw ModelFileError("directory " + dir + ": not a directory");
  const fs::path root(dir);
  HfModelDir d;
  d.dir_ = dir;

  d.config_path_ = (root / "config.json").string();
  std::ifstream in(d.config_path_, std::ios::binary);
  if (!in) throw ModelFileError("directory " + dir + ": missing config.json");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    auto config = nlohmann::json::parse(text.str());
    if (!config.is_object()) throw ModelFileError("file " + d.config_path_ + ": not a JSON object");
    d.config_ = std::make_shared<const nlohmann::json>(std::move(config));
  } catch (const nlohmann::json::exception& e) {
    throw ModelFileError("file " + d.config_path_ + ": invalid JSON: " + e.what());
  }

  if (auto index = existing(root / "model.safetensors.index.json")) {
    d.weights_ = SafetensorsShards::open_index(*index);
  } else if (auto single = existing(root / "model.safetensors")) {
    d.weights_ = SafetensorsShards::open_single(*single);
  } else {
    throw ModelFileError("directory " + dir +
                         ": no model.safetensors or model.safetensors.index.json");
  }
  d.tokenizer_json_ = existing(root / "tokenizer.json");
  d.tokenizer_config_ = existing(root / "tokenizer_config.json");
  d.generation_config_ = existing(root / "generation_config.json");
  return d;
}

}  // namespace kdr::model
