// GGUF model files (versions 2 and 3, little-endian), memory-mapped read-only.
//
// open() validates the whole header up front: every length and count is bounded by the
// file size, every tensor lies inside the data section at an aligned offset, no two
// tensors share a name or bytes. After that, lookups cannot read out of bounds.
// Every error is a ModelFileError that names the file and the key or tensor.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/mapped_file.h"
#include "model/tensor.h"

namespace kdr::model {

// Metadata value types, as numbered in the file.
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
// "u32", "string", "array", ...
const char* gguf_type_name(GgufType type);

// One metadata value. Strings and scalar arrays point into the file's bytes.
struct GgufValue {
  GgufType type = GgufType::U8;
  uint64_t bits = 0;     // a scalar's little-endian bytes, zero-extended
  std::string_view str;  // STRING

  // ARRAY: `count` elements of `elem_type`; exactly one of the three stores is used.
  GgufType elem_type = GgufType::U8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;         // scalars, packed little-endian (maybe unaligned)
  std::vector<std::string_view> strings;  // strings
  std::vector<GgufValue> arrays;          // nested arrays

  // "u32", or "array of f32" / "array of array" for arrays.
  std::string type_description() const;
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

class GgufFile {
 public:
  // Maps and validates `path`.
  static GgufFile open(const std::string& path);
  // Validates bytes the caller keeps alive; `name` stands for the path in errors.
  static GgufFile from_memory(const void* data, size_t size, const std::string& name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  // Offset of the tensor data section from the start of the file.
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return bytes_.size(); }

  // ---- metadata ----
  const std::vector<GgufKeyValue>& metadata() const { return metadata_; }
  const GgufValue* find_value(std::string_view key) const;
  const GgufValue& get_value(std::string_view key) const;  // throws when absent

  // Exact-type getters. T is one of uint8_t int8_t uint16_t int16_t uint32_t int32_t
  // uint64_t int64_t float double bool std::string_view. get throws when the key is
  // absent, find returns nullopt; both throw "file F: key K: expected u32, found string"
  // on a type mismatch.
  template <class T>
  T get(std::string_view key) const;
  template <class T>
  std::optional<T> find(std::string_view key) const;
  // Arrays of one of the types above (copied out, so unaligned data is handled).
  template <class T>
  std::vector<T> get_array(std::string_view key) const;
  template <class T>
  std::optional<std::vector<T>> find_array(std::string_view key) const;
  // Views into the file; no copy of a 256k-entry vocabulary.
  const std::vector<std::string_view>& get_string_array(std::string_view key) const;

  // Any integer type (converters disagree on u32 vs i32), checked to fit in int64.
  int64_t get_int(std::string_view key) const;
  std::optional<int64_t> find_int(std::string_view key) const;
  // f32 or f64.
  double get_float(std::string_view key) const;
  std::optional<double> find_float(std::string_view key) const;

  uint32_t get_u32(std::string_view key) const { return get<uint32_t>(key); }
  float get_f32(std::string_view key) const { return get<float>(key); }
  bool get_bool(std::string_view key) const { return get<bool>(key); }
  std::string_view get_string(std::string_view key) const { return get<std::string_view>(key); }
  std::optional<uint32_t> find_u32(std::string_view key) const { return find<uint32_t>(key); }
  std::optional<float> find_f32(std::string_view key) const { return find<float>(key); }
  std::optional<bool> find_bool(std::string_view key) const { return find<bool>(key); }
  std::optional<std::string_view> find_string(std::string_view key) const {
    return find<std::string_view>(key);
  }

  // ---- tensors ----
  const std::vector<TensorView>& tensors() const { return tensors_; }  // file order
  const TensorView* find_tensor(std::string_view name) const;
  // Throws "file F: missing tensor NAME".
  const TensorView& tensor(std::string_view name) const;
  // tensor(name) after checking its dims (ggml order, ne[0] contiguous).
  const TensorView& expect_shape(std::string_view name, const std::vector<int64_t>& ne) const;

 private:
  GgufFile() = default;
  static GgufFile parse(MappedFile bytes, const std::string& name);
  [[noreturn]] void fail_key(std::string_view key, const std::string& what) const;

  std::string path_;
  MappedFile bytes_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace kdr::model
