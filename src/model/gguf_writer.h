// Writes GGUF v3 (or v2) files: metadata plus tensors, each tensor aligned. Small and
// strict; meant for tests and fixture generation, not for converting large models.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf.h"

namespace kdr::model {

class GgufWriter {
 public:
  // An encoded metadata value (the type tag is kept apart, as arrays omit it per element).
  struct Value {
    GgufType type = GgufType::U8;
    std::vector<uint8_t> payload;

    static Value u8(uint8_t v);
    static Value i8(int8_t v);
    static Value u16(uint16_t v);
    static Value i16(int16_t v);
    static Value u32(uint32_t v);
    static Value i32(int32_t v);
    static Value f32(float v);
    static Value boolean(bool v);
    static Value string(std::string_view v);
    static Value u64(uint64_t v);
    static Value i64(int64_t v);
    static Value f64(double v);
    // Every element must have type `elem_type` (std::invalid_argument otherwise).
    static Value array(GgufType elem_type, const std::vector<Value>& elems);
  };

  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  void add(std::string_view key, Value value);
  void add_u32(std::string_view key, uint32_t v) { add(key, Value::u32(v)); }
  void add_f32(std::string_view key, float v) { add(key, Value::f32(v)); }
  void add_bool(std::string_view key, bool v) { add(key, Value::boolean(v)); }
  void add_string(std::string_view key, std::string_view v) { add(key, Value::string(v)); }
  void add_string_array(std::string_view key, const std::vector<std::string>& v);
  void add_f32_array(std::string_view key, std::span<const float> v);
  void add_i32_array(std::string_view key, std::span<const int32_t> v);
  // Also writes the general.alignment key.
  void set_alignment(uint32_t alignment);

  // `ne` in ggml order; `data` must hold exactly the bytes the type and shape need.
  void add_tensor(std::string_view name, DType type, const std::vector<int64_t>& ne,
                  std::span<const uint8_t> data);

  std::vector<uint8_t> to_bytes() const;
  // Throws ModelFileError naming `path` when it cannot write.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;
  };
  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, Value>> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace kdr::model
