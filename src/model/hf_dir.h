// A Hugging Face model folder: config.json, safetensors weights (model.safetensors, or
// shards listed by model.safetensors.index.json), and the tokenizer files when present.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "model/safetensors.h"

namespace kdr::model {

class HfModelDir {
 public:
  // Throws ModelFileError naming the folder or file when config.json or the weights are
  // missing or invalid. The index wins when both weight layouts are present.
  static HfModelDir open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::string& config_path() const { return config_path_; }
  const nlohmann::json& config() const { return *config_; }
  const SafetensorsShards& weights() const { return weights_; }

  // Present only when the file exists.
  const std::optional<std::string>& tokenizer_json_path() const { return tokenizer_json_; }
  const std::optional<std::string>& tokenizer_config_path() const { return tokenizer_config_; }
  const std::optional<std::string>& generation_config_path() const { return generation_config_; }

 private:
  std::string dir_;
  std::string config_path_;
  std::shared_ptr<const nlohmann::json> config_;
  SafetensorsShards weights_;
  std::optional<std::string> tokenizer_json_;
  std::optional<std::string> tokenizer_config_;
  std::optional<std::string> generation_config_;
};

}  // namespace kdr::model
