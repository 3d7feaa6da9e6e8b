// The one table of storage types (ggml's type_traits is the model): per type its id, name,
// accepted aliases, block geometry and row conversions to and from f32. Every place that
// names a type, parses a type name or switches on block sizes reads this table.
//
// Layering: base knows every type's geometry but only the conversions it owns (F32, F16,
// BF16, FP8_E4M3). The ggml block codecs live in src/ops/quant.cc, which registers them into
// this table when it is linked (before main, and again on first use); a program without
// ops sees null to_f32 / from_f32 for the block types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kdr {

// Values are the GGUF / ggml tensor type ids. Types ggml does not have use ids >= 1000 so
// they never collide with a GGUF file's: safetensors' U8 and the KV cache's storage types.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  U8 = 1000,
  FP8_E4M3 = 1001,  // e4m3 "fn" (base/dtype.h), the KV cache's fp8 (scale 1 in conversions)
  INT8_ROW = 1002,  // int8 codes with one f32 scale per row kept beside the rows (KV cache)
};

// n floats from a row of n values stored as the type, and back (n a multiple of the block).
using RowToF32 = void (*)(const void* src, float* dst, int64_t n);
using RowFromF32 = void (*)(const float* src, void* dst, int64_t n);

struct DTypeTraits {
  DType id;
  const char* name;        // ggml's spelling as GGUF tools print it: "F32", "Q4_K"
  const char* aliases[3];  // other accepted spellings ("bfloat16"); unused ones null
  int block_elems;         // values per block along a row (1 for element types)
  int block_bytes;         // bytes per block
  bool quantized;          // codes with scales (ggml's is_quantized)
  RowToF32 to_f32;         // null where no conversion is linked
  RowFromF32 from_f32;     // null where no conversion is linked
};

// Every entry, in id order.
std::span<const DTypeTraits> all_dtypes();
// The entry of a type id, or nullptr when the id is not in the table.
const DTypeTraits* find_dtype(uint32_t id);
// The entry whose name or an alias equals `name` ignoring ASCII case, or nullptr.
const DTypeTraits* find_dtype(std::string_view name);
const DTypeTraits& dtype_traits(DType type);
inline const char* dtype_name(DType type) { return dtype_traits(type).name; }

// The type a name (or alias) spells. Throws std::invalid_argument naming `name` and listing
// every valid name, aliases in parentheses.
DType parse_dtype(std::string_view name);
// "F32, F16 (f16, float16), ...": the names parse_dtype accepts, for messages.
std::string dtype_names();

// A type id for messages: "12 (Q4_K)", or "16 (IQ2_XXS)" for ggml types outside the table,
// or "77" for ids nobody knows.
std::string describe_type_id(uint32_t id);

// Bytes of a row of n values; throws std::invalid_argument when n is negative or not a
// multiple of the block size (the message names the type and n).
size_t row_bytes(DType type, int64_t n);

// Installs row conversions for a type (ops registers its block codecs this way). Not
// synchronised with readers: call it before other threads use the table (ops does so during
// static initialization).
void register_row_conversions(DType type, RowToF32 to_f32, RowFromF32 from_f32);

}  // namespace kdr
