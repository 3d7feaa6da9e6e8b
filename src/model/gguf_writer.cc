#include "model/gguf_writer.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace kdr::model {
namespace {

// resize + memcpy rather than insert(): GCC 12 at -O3 reports false stringop-overflows on
// vector<uint8_t>::insert of small arrays.
void append(std::vector<uint8_t>& out, const void* p, size_t n) {
  if (n == 0) return;
  size_t at = out.size();
  out.resize(at + n);
  std::memcpy(out.data() + at, p, n);
}

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  append(out, &v, sizeof(T));
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  append(out, s.data(), s.size());
}

template <class T>
GgufWriter::Value scalar(GgufType type, T v) {
  GgufWriter::Value value;
  value.type = type;
  put(value.payload, v);
  return value;
}

}  // namespace

using Value = GgufWriter::Value;
Value Value::u8(uint8_t v) { return scalar(GgufType::U8, v); }
Value Value::i8(int8_t v) { return scalar(GgufType::I8, v); }
Value Value::u16(uint16_t v) { return scalar(GgufType::U16, v); }
Value Value::i16(int16_t v) { return scalar(GgufType::I16, v); }
Value Value::u32(uint32_t v) { return scalar(GgufType::U32, v); }
Value Value::i32(int32_t v) { return scalar(GgufType::I32, v); }
Value Value::f32(float v) { return scalar(GgufType::F32, v); }
Value Value::boolean(bool v) { return scalar(GgufType::BOOL, static_cast<uint8_t>(v)); }
Value Value::u64(uint64_t v) { return scalar(GgufType::U64, v); }
Value Value::i64(int64_t v) { return scalar(GgufType::I64, v); }
Value Value::f64(double v) { return scalar(GgufType::F64, v); }

Value Value::string(std::string_view v) {
  Value value;
  value.type = GgufType::STRING;
  put_string(value.payload, v);
  return value;
}

Value Value::array(GgufType elem_type, const std::vector<Value>& elems) {
  Value value;
  value.type = GgufType::ARRAY;
  put<uint32_t>(value.payload, static_cast<uint32_t>(elem_type));
  put<uint64_t>(value.payload, elems.size());
  for (const Value& e : elems) {
    if (e.type != elem_type)
      throw std::invalid_argument(std::string("GGUF array of ") + gguf_type_name(elem_type) +
                                  " given an element of type " + gguf_type_name(e.type));
    append(value.payload, e.payload.data(), e.payload.size());
  }
  return value;
}

void GgufWriter::add(std::string_view key, Value value) {
  for (const auto& kv : kvs_)
    if (kv.first == key)
      throw std::invalid_argument("GGUF writer: duplicate key " + std::string(key));
  kvs_.emplace_back(std::string(key), std::move(value));
}

void GgufWriter::add_string_array(std::string_view key, const std::vector<std::string>& v) {
  std::vector<Value> elems;
  elems.reserve(v.size());
  for (const std::string& s : v) elems.push_back(Value::string(s));
  add(key, Value::array(GgufType::STRING, elems));
}

void GgufWriter::add_f32_array(std::string_view key, std::span<const float> v) {
  std::vector<Value> elems;
  for (float x : v) elems.push_back(Value::f32(x));
  add(key, Value::array(GgufType::F32, elems));
}

void GgufWriter::add_i32_array(std::string_view key, std::span<const int32_t> v) {
  std::vector<Value> elems;
  for (int32_t x : v) elems.push_back(Value::i32(x));
  add(key, Value::array(GgufType::I32, elems));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    throw std::invalid_argument("GGUF writer: alignment must be a power of two");
  alignment_ = alignment;
  add("general.alignment", Value::u32(alignment));
}

void GgufWriter::add_tensor(std::string_view name, DType type, const std::vector<int64_t>& ne,
                            std::span<const uint8_t> data) {
  const DTypeTraits& traits = dtype_traits(type);
  if (ne.empty() || ne.size() > static_cast<size_t>(kMaxDims))
    throw std::invalid_argument("GGUF writer: tensor " + std::string(name) + ": 1 to 4 dims");
  if (ne[0] % traits.block_elems != 0)
    throw std::invalid_argument("GGUF writer: tensor " + std::string(name) +
                                ": row length not a multiple of the block size");
  size_t bytes = static_cast<size_t>(ne[0] / traits.block_elems) * traits.block_bytes;
  for (size_t d = 1; d < ne.size(); ++d) bytes *= static_cast<size_t>(ne[d]);
  if (bytes != data.size())
    throw std::invalid_argument("GGUF writer: tensor " + std::string(name) + ": expected " +
                                std::to_string(bytes) + " bytes, given " +
                                std::to_string(data.size()));
  tensors_.push_back({std::string(name), type, ne, {data.begin(), data.end()}});
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out;
  auto pad = [&] { out.resize((out.size() + alignment_ - 1) / alignment_ * alignment_, 0); };
  put<uint32_t>(out, 0x46554747);
  put<uint32_t>(out, version_);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kvs_.size());
  for (const auto& [key, value] : kvs_) {
    put_string(out, key);
    put<uint32_t>(out, static_cast<uint32_t>(value.type));
    append(out, value.payload.data(), value.payload.size());
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) put<uint64_t>(out, static_cast<uint64_t>(n));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offset = (offset + t.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  pad();
  for (const Tensor& t : tensors_) {
    append(out, t.data.data(), t.data.size());
    pad();
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  std::vector<uint8_t> bytes = to_bytes();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) throw ModelFileError("file " + path + ": cannot write");
}

}  // namespace kdr::model
