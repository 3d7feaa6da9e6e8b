#include "model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace kdr::model {

static_assert(std::endian::native == std::endian::little,
              "safetensors reader assumes little-endian");

namespace {

using nlohmann::json;

// The reference implementation's limit; a larger header is a hostile or broken file.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;
// The header needs depth 3 (root, tensor entry, shape); deeper JSON is rejected early.
constexpr int kMaxJsonDepth = 16;

[[noreturn]] void fail(const std::string& file, const std::string& what) {
  throw ModelFileError("file " + file + ": " + what);
}

// The registry entry of a safetensors dtype string: the registry's own spelling (upper
// case, as the format writes it) of one of the element types safetensors stores here.
const DTypeTraits* safetensors_dtype(std::string_view dtype) {
  static constexpr DType kStored[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                                      DType::I32, DType::I16, DType::I8,  DType::U8};
  const DTypeTraits* t = find_dtype(dtype);
  if (!t || dtype != t->name) return nullptr;
  for (DType stored : kStored)
    if (t->id == stored) return t;
  return nullptr;
}

// Parses JSON text, rejecting deep nesting and (with `unique_top_keys`) repeated keys in the
// top-level object, which nlohmann would otherwise silently collapse to the last one.
json parse_json(const std::string& file, std::string_view text, bool unique_top_keys) {
  std::set<std::string> seen;
  auto guard = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth)
      fail(file, "JSON nested deeper than " + std::to_string(kMaxJsonDepth));
    if (unique_top_keys && event == json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second)
      fail(file, "duplicate entry " + parsed.get<std::string>() + " in the JSON header");
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), guard);
  } catch (const json::exception& e) {
    fail(file, std::string("invalid JSON: ") + e.what());
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

uint64_t json_u64(const std::string& file, const std::string& ctx, const json& v) {
  if (!v.is_number_unsigned())
    fail(file, ctx + " must be a non-negative integer, found " + v.dump());
  return v.get<uint64_t>();
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  return parse(MappedFile::open(path), path);
}

SafetensorsFile SafetensorsFile::from_memory(const void* data, size_t size,
                                             const std::string& name) {
  return parse(MappedFile::borrow(data, size), name);
}

SafetensorsFile SafetensorsFile::parse(MappedFile bytes, const std::string& name) {
  SafetensorsFile f;
  f.path_ = name;
  f.bytes_ = std::move(bytes);
  const std::string& file = f.path_;
  const uint64_t size = f.bytes_.size();
  if (size < 8)
    fail(file, "truncated: " + std::to_string(size) + " bytes, too short for the header length");
  uint64_t header_len;
  std::memcpy(&header_len, f.bytes_.data(), 8);
  if (header_len > kMaxHeaderBytes)
    fail(file, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                   std::to_string(kMaxHeaderBytes) + " bytes");
  if (header_len > size - 8)
    fail(file, "truncated: header length " + std::to_string(header_len) + " but only " +
                   std::to_string(size - 8) + " bytes follow");
  const uint8_t* buffer = f.bytes_.data() + 8 + header_len;
  const uint64_t buffer_size = size - 8 - header_len;

  json header = parse_json(
      file, {reinterpret_cast<const char*>(f.bytes_.data() + 8), static_cast<size_t>(header_len)},
      true);
  if (!header.is_object()) fail(file, "the JSON header is not an object");

  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // data_offsets per tensor
  for (auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      if (entry.is_object())
        for (auto& [mk, mv] : entry.items())
          if (mv.is_string()) f.metadata_[mk] = mv.get<std::string>();
      continue;
    }
    const std::string ctx = "tensor " + key;
    if (!entry.is_object()) fail(file, ctx + ": entry is not a JSON object");
    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string())
      fail(file, ctx + ": missing string dtype");
    const std::string dtype = dtype_it->get<std::string>();
    const DTypeTraits* traits = safetensors_dtype(dtype);
    if (!traits) fail(file, "unsupported dtype " + dtype + " for tensor " + key);

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) fail(file, ctx + ": missing shape array");
    const json& shape = *shape_it;
    if (shape.size() > static_cast<size_t>(kMaxDims))
      fail(file, ctx + ": " + std::to_string(shape.size()) + " dims, at most " +
                     std::to_string(kMaxDims) + " supported");
    TensorView t;
    t.name = key;
    t.type = traits->id;
    t.n_dims = static_cast<int>(shape.size());
    uint64_t bytes = static_cast<uint64_t>(traits->block_bytes);
    bool overflow = false;
    for (size_t i = 0; i < shape.size(); ++i) {
      uint64_t n = json_u64(file, ctx + ": shape[" + std::to_string(i) + "]", shape[i]);
      overflow |= n > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(bytes, n, &bytes);
      // PyTorch's last dim is the contiguous one: ne[0].
      t.ne[shape.size() - 1 - i] = static_cast<int64_t>(n);
    }

    auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
      fail(file, ctx + ": data_offsets must be an array [begin, end]");
    uint64_t begin = json_u64(file, ctx + ": data_offsets[0]", (*offsets_it)[0]);
    uint64_t end = json_u64(file, ctx + ": data_offsets[1]", (*offsets_it)[1]);
    if (begin > end)
      fail(file, ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     "] end before they begin");
    if (end > buffer_size)
      fail(file, ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     "] extend past the data buffer (" + std::to_string(buffer_size) +
                     " bytes): truncated file?");
    if (overflow || bytes != end - begin)
      fail(file, ctx + ": shape " + format_dims(t.torch_shape()) + " of " + dtype + " needs " +
                     (overflow ? std::string("more than 2^64") : std::to_string(bytes)) +
                     " bytes, data_offsets give " + std::to_string(end - begin));
    t.data = buffer + begin;
    t.n_bytes = static_cast<size_t>(bytes);
    f.tensors_.push_back(std::move(t));
    ranges.emplace_back(begin, end);
  }

  // The format requires the tensors to tile the buffer: no overlap (aliasing) and no hole
  // (hidden data). Sort by offset, and check each begins where the previous ended.
  std::vector<size_t> order(f.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t expected = 0;
  const std::string* prev = nullptr;
  for (size_t i : order) {
    const auto [begin, end] = ranges[i];
    if (begin < expected)
      fail(file, "tensors " + *prev + " and " + f.tensors_[i].name + " overlap");
    if (begin > expected)
      fail(file, "bytes [" + std::to_string(expected) + ", " + std::to_string(begin) +
                     ") of the data buffer belong to no tensor (before tensor " +
                     f.tensors_[i].name + ")");
    expected = end;
    prev = &f.tensors_[i].name;
  }
  if (expected != buffer_size)
    fail(file, "bytes [" + std::to_string(expected) + ", " + std::to_string(buffer_size) +
                   ") at the end of the data buffer belong to no tensor");

  std::vector<TensorView> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back(std::move(f.tensors_[i]));
  f.tensors_ = std::move(sorted);
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

const TensorView* SafetensorsFile::find_tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsFile::tensor(std::string_view name) const {
  const TensorView* t = find_tensor(name);
  if (!t) fail(path_, "missing tensor " + std::string(name));
  return *t;
}

const TensorView& SafetensorsFile::expect_shape(std::string_view name,
                                                const std::vector<int64_t>& ne) const {
  const TensorView& t = tensor(name);
  check_shape(path_, t, ne);
  return t;
}

SafetensorsShards SafetensorsShards::open_single(const std::string& path) {
  SafetensorsShards s;
  s.source_ = path;
  s.files_.push_back(SafetensorsFile::open(path));
  for (const TensorView& t : s.files_[0].tensors()) s.index_.emplace(t.name, std::make_pair(0, &t));
  return s;
}

SafetensorsShards SafetensorsShards::open_index(const std::string& index_path) {
  SafetensorsShards s;
  s.source_ = index_path;
  json index = parse_json(index_path, read_text_file(index_path), false);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail(index_path, "no weight_map object");
  const json& weight_map = index["weight_map"];
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();

  // Shard names come from the file: keep them inside the model's folder.
  std::map<std::string, size_t> shard_of_name;
  for (auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string()) fail(index_path, "tensor " + tensor + ": shard is not a string");
    const std::string name = shard.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos ||
        name.find('\\') != std::string::npos || name == "." || name == "..")
      fail(index_path, "tensor " + tensor + ": shard " + name + " is not a plain file name");
    if (!shard_of_name.count(name)) {
      shard_of_name.emplace(name, s.files_.size());
      s.files_.push_back(SafetensorsFile::open((dir / name).string()));
    }
  }
  for (size_t i = 0; i < s.files_.size(); ++i) {
    for (const TensorView& t : s.files_[i].tensors()) {
      auto [it, fresh] = s.index_.emplace(t.name, std::make_pair(i, &t));
      if (!fresh)
        fail(index_path, "tensor " + t.name + " is in both " + s.files_[it->second.first].path() +
                             " and " + s.files_[i].path());
    }
  }
  for (auto& [tensor, shard] : weight_map.items()) {
    const size_t want = shard_of_name.at(shard.get<std::string>());
    auto it = s.index_.find(tensor);
    if (it == s.index_.end() || it->second.first != want)
      fail(index_path, "tensor " + tensor + " is listed in shard " + shard.get<std::string>() +
                           " but that file does not hold it");
  }
  return s;
}

std::vector<const TensorView*> SafetensorsShards::tensors() const {
  std::vector<const TensorView*> out;
  for (const SafetensorsFile& f : files_)
    for (const TensorView& t : f.tensors()) out.push_back(&t);
  return out;
}

const TensorView* SafetensorsShards::find_tensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second.second;
}

const TensorView& SafetensorsShards::tensor(std::string_view name) const {
  const TensorView* t = find_tensor(name);
  if (!t) fail(source_, "missing tensor " + std::string(name));
  return *t;
}

const TensorView& SafetensorsShards::expect_shape(std::string_view name,
                                                  const std::vector<int64_t>& ne) const {
  const TensorView& t = tensor(name);
  check_shape(file_of(name), t, ne);
  return t;
}

const std::string& SafetensorsShards::file_of(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(source_, "missing tensor " + std::string(name));
  return files_[it->second.first].path();
}

}  // namespace kdr::model
