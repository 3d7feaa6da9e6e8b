// Hugging Face tokenizer.json -> TokenizerSpec.
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/tokenizer.h"

namespace kdr::model {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw TokenizerError(name + ": " + what);
}

struct Normalization {
  bool escape_spaces = false;  // " " -> U+2581
  bool prepend_space = false;  // U+2581 before the text
};

// Walks a normalizer or pre_tokenizer tree and notes what we support.
void read_normalizer(const json& n, const std::string& name, Normalization& out) {
  if (n.is_null()) return;
  const std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const json& child : n.at("normalizers")) read_normalizer(child, name, out);
  } else if (type == "Replace") {
    const json& pattern = n.at("pattern");
    if (pattern.contains("String") && pattern["String"] == " " &&
        n.value("content", "") == "\u2581") {
      out.escape_spaces = true;
    } else {
      fail(name, "normalizer Replace " + pattern.dump() + " is not supported");
    }
  } else if (type == "Prepend") {
    if (n.value("prepend", "") != "\u2581") fail(name, "normalizer Prepend " + n.dump());
    out.prepend_space = true;
  } else if (type == "NFC") {
    // Accepted: Qwen2 declares NFC; we assume NFC input as llama.cpp does.
  } else {
    fail(name, "normalizer '" + type + "' is not supported");
  }
}

void read_pre_tokenizer(const json& p, const std::string& name, TokenizerSpec& spec,
                        Normalization& norm) {
  if (p.is_null()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& child : p.at("pretokenizers")) read_pre_tokenizer(child, name, spec, norm);
  } else if (type == "ByteLevel") {
    spec.byte_level = true;
    if (p.value("use_regex", true) && spec.pre_regex.empty()) spec.pre = "gpt2";
    if (p.value("add_prefix_space", false))
      fail(name, "ByteLevel add_prefix_space is not supported");
  } else if (type == "Split") {
    const json& pattern = p.at("pattern");
    if (pattern.contains("Regex")) {
      if (p.value("behavior", "") != "Isolated" || p.value("invert", false)) {
        fail(name, "pre_tokenizer Split must be Isolated and not inverted");
      }
      spec.pre_regex = pattern["Regex"].get<std::string>();
    }
    // Gemma's Split on " " sees no spaces once the normalizer made them U+2581: ignored.
  } else if (type == "Metaspace") {
    norm.escape_spaces = true;
    norm.prepend_space = p.value("prepend_scheme", "always") != "never";
  } else {
    fail(name, "pre_tokenizer '" + type + "' is not supported");
  }
}

// BertNormalizer: strip_accents null follows lowercase, as in Hugging Face tokenizers.
BertTextOptions read_bert_normalizer(const json& n, const std::string& name) {
  BertTextOptions o;
  if (n.is_null()) {
    o = {false, false, false, false};
    return o;
  }
  if (n.value("type", "") != "BertNormalizer")
    fail(name, "normalizer '" + n.value("type", "") + "' is not supported with WordPiece");
  o.clean_text = n.value("clean_text", true);
  o.handle_chinese_chars = n.value("handle_chinese_chars", true);
  o.lowercase = n.value("lowercase", true);
  const json strip = n.value("strip_accents", json());
  o.strip_accents = strip.is_boolean() ? strip.get<bool>() : o.lowercase;
  return o;
}

// bos/eos from a TemplateProcessing post-processor (special tokens around $A) or a
// BertProcessing one ([CLS] $A [SEP]).
void read_post_processor(const json& p, TokenizerSpec& spec) {
  if (p.is_object() && p.value("type", "") == "BertProcessing") {
    spec.bos_id = p.at("cls").at(1).get<int32_t>();
    spec.eos_id = p.at("sep").at(1).get<int32_t>();
    spec.add_bos = spec.add_eos = true;
    return;
  }
  if (!p.is_object() || p.value("type", "") != "TemplateProcessing") return;
  const json& single = p.at("single");
  const json& special = p.value("special_tokens", json::object());
  bool seen_sequence = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
    } else if (item.contains("SpecialToken")) {
      const std::string id = item["SpecialToken"].value("id", "");
      if (!special.contains(id) || special[id].at("ids").empty()) continue;
      const int32_t tok = special[id]["ids"][0].get<int32_t>();
      if (seen_sequence) {
        spec.eos_id = tok;
        spec.add_eos = true;
      } else {
        spec.bos_id = tok;
        spec.add_bos = true;
      }
    }
  }
}

}  // namespace

TokenizerSpec spec_from_tokenizer_json(std::string_view json_text, const std::string& name) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(name, std::string("not valid JSON: ") + e.what());
  }
  try {
    const json& model = j.at("model");
    const std::string type = model.value("type", "BPE");
    if (type != "BPE" && type != "WordPiece")
      fail(name, "model.type '" + type + "' is not supported (only BPE and WordPiece)");
    const bool wordpiece = type == "WordPiece";
    TokenizerSpec spec;
    spec.model = wordpiece ? TokenizerModel::kWordPiece : TokenizerModel::kBpe;
    spec.byte_level = false;
    spec.ignore_merges = model.value("ignore_merges", false);

    std::vector<std::pair<std::string, int64_t>> entries;
    for (const auto& [text, id] : model.at("vocab").items())
      entries.emplace_back(text, id.get<int64_t>());
    std::vector<std::pair<int64_t, bool>> added;  // id, special
    for (const json& t : j.value("added_tokens", json::array())) {
      const int64_t id = t.at("id").get<int64_t>();
      entries.emplace_back(t.at("content").get<std::string>(), id);
      added.emplace_back(id, t.value("special", false));
    }
    int64_t n = 0;
    for (const auto& e : entries) {
      if (e.second < 0 || e.second > INT32_MAX) fail(name, "token '" + e.first + "' has a bad id");
      n = std::max(n, e.second + 1);
    }
    spec.tokens.resize(n);
    std::vector<bool> filled(n, false);
    for (auto& [text, id] : entries) {
      if (filled[id] && spec.tokens[id] != text) {
        fail(name, "id " + std::to_string(id) + " names both '" + spec.tokens[id] + "' and '" +
                       text + "'");
      }
      spec.tokens[id] = text;
      filled[id] = true;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!filled[i]) fail(name, "id " + std::to_string(i) + " has no token");
    }
    spec.token_types.assign(n, TokenType::kNormal);
    for (const auto& [id, special] : added) {
      spec.token_types[id] = special ? TokenType::kControl : TokenType::kUserDefined;
    }

    for (const json& m : wordpiece ? json::array() : model.at("merges")) {
      if (m.is_string()) {
        spec.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2) {
        spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        fail(name, "merge " + m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
    }

    if (wordpiece) {
      spec.bert = read_bert_normalizer(j.value("normalizer", json()), name);
      const json pre = j.value("pre_tokenizer", json());
      if (!pre.is_object() || pre.value("type", "") != "BertPreTokenizer")
        fail(name, "WordPiece needs pre_tokenizer BertPreTokenizer, not " + pre.dump());
      spec.continuing_prefix = model.value("continuing_subword_prefix", "##");
      spec.max_input_chars_per_word = model.value("max_input_chars_per_word", 100);
      const std::string unk = model.value("unk_token", "[UNK]");
      for (int64_t i = 0; i < n; ++i)
        if (spec.tokens[i] == unk) spec.unk_id = static_cast<int32_t>(i);
      if (spec.unk_id < 0) fail(name, "WordPiece unk_token '" + unk + "' is not in the vocabulary");
      for (int64_t i = 0; i < n; ++i)
        if (spec.tokens[i] == "[PAD]") spec.pad_id = static_cast<int32_t>(i);
      read_post_processor(j.value("post_processor", json()), spec);
      return spec;
    }
    Normalization norm;
    read_normalizer(j.value("normalizer", json()), name, norm);
    read_pre_tokenizer(j.value("pre_tokenizer", json()), name, spec, norm);
    if (!spec.byte_level) {
      if (!norm.escape_spaces) fail(name, "character-level BPE without a U+2581 space normalizer");
      if (!model.value("byte_fallback", false) && model.value("unk_token", json()).is_null()) {
        fail(name, "character-level BPE needs byte_fallback or an unk_token");
      }
      spec.add_space_prefix = norm.prepend_space;
    }
    const json unk = model.value("unk_token", json());
    if (unk.is_string()) {
      for (int64_t i = 0; i < n; ++i) {
        if (spec.tokens[i] == unk.get<std::string>()) spec.unk_id = static_cast<int32_t>(i);
      }
    }
    read_post_processor(j.value("post_processor", json()), spec);
    return spec;
  } catch (const json::exception& e) {
    fail(name, std::string("unexpected structure: ") + e.what());
  }
}

TokenizerSpec spec_from_tokenizer_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TokenizerError(path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return spec_from_tokenizer_json(text.str(), path);
}

}  // namespace kdr::model
