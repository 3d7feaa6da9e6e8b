// GGUF tokenizer.ggml.* keys -> TokenizerSpec.
#include "model/gguf.h"
#include "model/tokenizer.h"

namespace kdr::model {

TokenizerSpec spec_from_gguf(const GgufFile& f) {
  const auto fail = [&](const std::string& key, const std::string& what) -> TokenizerError {
    return TokenizerError("file " + f.path() + ": key " + key + ": " + what);
  };
  TokenizerSpec spec;
  const std::string model(f.get_string("tokenizer.ggml.model"));
  if (model == "llama") {
    spec.model = TokenizerModel::kSpm;
    // llama.cpp's defaults for SentencePiece vocabularies when the keys are absent.
    spec.add_bos = true;
    spec.add_space_prefix = true;
  } else if (model == "gpt2") {
    spec.model = TokenizerModel::kBpe;
    spec.byte_level = true;
  } else {
    throw fail("tokenizer.ggml.model", "'" + model + "' is not supported (llama, gpt2)");
  }

  const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
  spec.tokens.assign(tokens.begin(), tokens.end());
  const size_t n = spec.tokens.size();
  if (auto scores = f.find_array<float>("tokenizer.ggml.scores")) {
    if (scores->size() != n) throw fail("tokenizer.ggml.scores", "length differs from tokens");
    spec.scores = std::move(*scores);
  }
  if (f.find_value("tokenizer.ggml.token_type")) {
    const std::vector<int32_t> types = f.get_array<int32_t>("tokenizer.ggml.token_type");
    if (types.size() != n) throw fail("tokenizer.ggml.token_type", "length differs from tokens");
    spec.token_types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (types[i] < 0 || types[i] > 6) {
        throw fail("tokenizer.ggml.token_type",
                   "token " + std::to_string(i) + " has type " + std::to_string(types[i]));
      }
      spec.token_types.push_back(static_cast<TokenType>(types[i]));
    }
  }
  if (f.find_value("tokenizer.ggml.merges")) {
    const auto& merges = f.get_string_array("tokenizer.ggml.merges");
    spec.merges.assign(merges.begin(), merges.end());
  }
  if (spec.model == TokenizerModel::kBpe && spec.merges.empty()) {
    throw fail("tokenizer.ggml.merges", "missing for a gpt2 tokenizer");
  }
  spec.pre = std::string(f.find_string("tokenizer.ggml.pre").value_or("default"));
  // llama.cpp emits a whole-word vocabulary hit directly only for the Llama-3 family.
  spec.ignore_merges = spec.pre == "llama-bpe" || spec.pre == "llama3";

  const auto id = [&](const char* key) {
    const std::optional<int64_t> v = f.find_int(key);
    if (!v) return int32_t{-1};
    if (*v < 0 || static_cast<uint64_t>(*v) >= n) {
      throw fail(key, std::to_string(*v) + " is outside the vocabulary of " + std::to_string(n));
    }
    return static_cast<int32_t>(*v);
  };
  spec.bos_id = id("tokenizer.ggml.bos_token_id");
  spec.eos_id = id("tokenizer.ggml.eos_token_id");
  spec.unk_id = id("tokenizer.ggml.unknown_token_id");
  spec.pad_id = id("tokenizer.ggml.padding_token_id");
  spec.add_bos = f.find_bool("tokenizer.ggml.add_bos_token").value_or(spec.add_bos);
  spec.add_eos = f.find_bool("tokenizer.ggml.add_eos_token").value_or(false);
  spec.add_space_prefix =
      f.find_bool("tokenizer.ggml.add_space_prefix").value_or(spec.add_space_prefix);
  return spec;
}

}  // namespace kdr::model
