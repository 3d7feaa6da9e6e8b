#include "model/gguf.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

namespace kdr::model {

static_assert(std::endian::native == std::endian::little,
              "GGUF reader assumes a little-endian host");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kDefaultAlignment = 32;
// Nested arrays recurse; a hostile file must not exhaust the stack.
constexpr int kMaxArrayDepth = 8;
// Smallest possible encodings, used to reject counts no file of this size can hold.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;  // key length, 1-byte key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes =
    8 + 1 + 4 + 4 + 8;                            // name length, name, n_dims, type, offset
constexpr uint64_t kMinNestedArrayBytes = 4 + 8;  // element type, count
constexpr uint64_t kMaxKeyBytes = 65535;          // the spec's key length limit

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

// Bytes of a scalar value type; 0 for string and array.
size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    case GgufType::STRING:
    case GgufType::ARRAY:
      return 0;
  }
  return 0;
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Bounds-checked little-endian reads over the file's bytes.
class Reader {
 public:
  Reader(const std::string& file, const uint8_t* data, size_t size)
      : file_(file), data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelFileError("file " + file_ + ": " + what);
  }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > remaining())
      fail("truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
           std::to_string(pos_) + ", file has " + std::to_string(size_));
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  template <class T>
  T read(const std::string& what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

  std::string_view read_string(const std::string& what) {
    uint64_t len = read<uint64_t>(what + " length");
    if (len > remaining())
      fail("truncated: " + what + " length " + std::to_string(len) + " exceeds the " +
           std::to_string(remaining()) + " bytes left in the file");
    return {reinterpret_cast<const char*>(take(len, what)), static_cast<size_t>(len)};
  }

 private:
  const std::string& file_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// `ctx` is "key K" (or "key K: element 3" deeper down) for messages.
GgufValue read_value(Reader& r, GgufType type, const std::string& ctx, int depth);

GgufValue read_array(Reader& r, const std::string& ctx, int depth) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  uint32_t elem = r.read<uint32_t>(ctx + ": array element type");
  if (!valid_type(elem)) r.fail(ctx + ": unknown array element type " + std::to_string(elem));
  v.elem_type = static_cast<GgufType>(elem);
  v.count = r.read<uint64_t>(ctx + ": array length");
  const std::string too_long = ctx + ": array length " + std::to_string(v.count) +
                               " cannot fit in the " + std::to_string(r.remaining()) +
                               " bytes left in the file (truncated or corrupt)";
  if (size_t es = scalar_size(v.elem_type)) {
    if (v.count > r.remaining() / es) r.fail(too_long);
    v.elems = r.take(v.count * es, ctx + ": array data");
    if (v.elem_type == GgufType::BOOL) {
      for (uint64_t i = 0; i < v.count; ++i)
        if (v.elems[i] > 1)
          r.fail(ctx + ": element " + std::to_string(i) + ": invalid bool value " +
                 std::to_string(v.elems[i]));
    }
  } else if (v.elem_type == GgufType::STRING) {
    if (v.count > r.remaining() / 8) r.fail(too_long);
    v.strings.reserve(v.count);
    for (uint64_t i = 0; i < v.count; ++i)
      v.strings.push_back(r.read_string(ctx + ": element " + std::to_string(i)));
  } else {
    if (depth >= kMaxArrayDepth)
      r.fail(ctx + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    if (v.count > r.remaining() / kMinNestedArrayBytes) r.fail(too_long);
    v.arrays.reserve(v.count);
    for (uint64_t i = 0; i < v.count; ++i)
      v.arrays.push_back(read_array(r, ctx + ": element " + std::to_string(i), depth + 1));
  }
  return v;
}

GgufValue read_value(Reader& r, GgufType type, const std::string& ctx, int depth) {
  if (type == GgufType::ARRAY) return read_array(r, ctx, depth);
  GgufValue v;
  v.type = type;
  if (type == GgufType::STRING) {
    v.str = r.read_string(ctx + ": string");
    return v;
  }
  size_t n = scalar_size(type);
  std::memcpy(&v.bits, r.take(n, ctx + ": value"), n);
  if (type == GgufType::BOOL && v.bits > 1)
    r.fail(ctx + ": invalid bool value " + std::to_string(v.bits));
  return v;
}

template <class T>
constexpr GgufType gguf_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return GgufType::U8;
  if constexpr (std::is_same_v<T, int8_t>) return GgufType::I8;
  if constexpr (std::is_same_v<T, uint16_t>) return GgufType::U16;
  if constexpr (std::is_same_v<T, int16_t>) return GgufType::I16;
  if constexpr (std::is_same_v<T, uint32_t>) return GgufType::U32;
  if constexpr (std::is_same_v<T, int32_t>) return GgufType::I32;
  if constexpr (std::is_same_v<T, float>) return GgufType::F32;
  if constexpr (std::is_same_v<T, bool>) return GgufType::BOOL;
  if constexpr (std::is_same_v<T, std::string_view>) return GgufType::STRING;
  if constexpr (std::is_same_v<T, uint64_t>) return GgufType::U64;
  if constexpr (std::is_same_v<T, int64_t>) return GgufType::I64;
  if constexpr (std::is_same_v<T, double>) return GgufType::F64;
}

template <class T>
T scalar_from_bytes(const uint8_t* p) {
  if constexpr (std::is_same_v<T, bool>) {
    return *p != 0;
  } else {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
  }
}

template <class T>
T scalar_of(const GgufValue& v) {
  if constexpr (std::is_same_v<T, std::string_view>) {
    return v.str;
  } else {
    return scalar_from_bytes<T>(reinterpret_cast<const uint8_t*>(&v.bits));
  }
}

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::U8:
      return "u8";
    case GgufType::I8:
      return "i8";
    case GgufType::U16:
      return "u16";
    case GgufType::I16:
      return "i16";
    case GgufType::U32:
      return "u32";
    case GgufType::I32:
      return "i32";
    case GgufType::F32:
      return "f32";
    case GgufType::BOOL:
      return "bool";
    case GgufType::STRING:
      return "string";
    case GgufType::ARRAY:
      return "array";
    case GgufType::U64:
      return "u64";
    case GgufType::I64:
      return "i64";
    case GgufType::F64:
      return "f64";
  }
  return "unknown";
}

std::string GgufValue::type_description() const {
  if (type != GgufType::ARRAY) return gguf_type_name(type);
  return std::string("array of ") + gguf_type_name(elem_type);
}

GgufFile GgufFile::open(const std::string& path) { return parse(MappedFile::open(path), path); }

GgufFile GgufFile::from_memory(const void* data, size_t size, const std::string& name) {
  return parse(MappedFile::borrow(data, size), name);
}

GgufFile GgufFile::parse(MappedFile bytes, const std::string& name) {
  GgufFile f;
  f.path_ = name;
  f.bytes_ = std::move(bytes);
  Reader r(f.path_, f.bytes_.data(), f.bytes_.size());

  if (f.bytes_.size() < 4)
    r.fail("not a GGUF file: " + std::to_string(f.bytes_.size()) +
           " bytes, too short for the magic");
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kMagic)
    r.fail("not a GGUF file: magic " + hex32(magic) + ", expected " + hex32(kMagic) + " ('GGUF')");
  f.version_ = r.read<uint32_t>("version");
  if (f.version_ == 1)
    r.fail("GGUF version 1 is not supported (32-bit lengths); only versions 2 and 3 are");
  if (f.version_ != 2 && f.version_ != 3) {
    if ((f.version_ & 0xffff) == 0 && __builtin_bswap32(f.version_) <= 3)
      r.fail("big-endian GGUF (version " + hex32(f.version_) + ") is not supported");
    r.fail("unsupported GGUF version " + std::to_string(f.version_) + " (supported: 2, 3)");
  }
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata key/value count");
  if (n_kv > r.remaining() / kMinKvBytes)
    r.fail("metadata key/value count " + std::to_string(n_kv) + " cannot fit in a file of " +
           std::to_string(f.bytes_.size()) + " bytes (truncated or corrupt)");
  if (n_tensors > r.remaining() / kMinTensorInfoBytes)
    r.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in a file of " +
           std::to_string(f.bytes_.size()) + " bytes (truncated or corrupt)");

  f.metadata_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string_view key = r.read_string("key of metadata entry " + std::to_string(i));
    if (key.empty()) r.fail("metadata entry " + std::to_string(i) + " has an empty key");
    if (key.size() > kMaxKeyBytes)
      r.fail("metadata entry " + std::to_string(i) + ": key of " + std::to_string(key.size()) +
             " bytes exceeds the limit of " + std::to_string(kMaxKeyBytes));
    std::string ctx = "key " + std::string(key);
    if (f.key_index_.count(key)) r.fail("duplicate " + ctx);
    uint32_t type = r.read<uint32_t>(ctx + ": value type");
    if (!valid_type(type)) r.fail(ctx + ": unknown value type " + std::to_string(type));
    GgufValue value = read_value(r, static_cast<GgufType>(type), ctx, 0);
    f.key_index_.emplace(std::string(key), f.metadata_.size());
    f.metadata_.push_back({std::string(key), std::move(value)});
  }

  if (const GgufValue* a = f.find_value("general.alignment")) {
    if (a->type != GgufType::U32)
      f.fail_key("general.alignment", std::string("expected u32, found ") + a->type_description());
    uint32_t align = static_cast<uint32_t>(a->bits);
    if (align == 0 || (align & (align - 1)) != 0)
      f.fail_key("general.alignment",
                 "alignment " + std::to_string(align) + " is not a power of two");
    f.alignment_ = align;
  } else {
    f.alignment_ = kDefaultAlignment;
  }

  // Tensor infos; offsets are checked once the data section's start is known.
  std::vector<uint64_t> offsets;
  f.tensors_.reserve(n_tensors);
  offsets.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string_view name = r.read_string("name of tensor " + std::to_string(i));
    if (name.empty()) r.fail("tensor " + std::to_string(i) + " has an empty name");
    std::string ctx = "tensor " + std::string(name);
    if (f.tensor_index_.count(name)) r.fail("duplicate tensor name " + std::string(name));
    TensorView t;
    t.name = std::string(name);
    uint32_t n_dims = r.read<uint32_t>(ctx + ": n_dims");
    if (n_dims > kMaxDims)
      r.fail(ctx + ": n_dims " + std::to_string(n_dims) + " exceeds the maximum " +
             std::to_string(kMaxDims));
    t.n_dims = static_cast<int>(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.read<uint64_t>(ctx + ": dim " + std::to_string(d));
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        r.fail(ctx + ": dim " + std::to_string(d) + " = " + std::to_string(ne) + " is too large");
      t.ne[d] = static_cast<int64_t>(ne);
    }
    uint32_t type_id = r.read<uint32_t>(ctx + ": type");
    // Ids >= 1000 are the registry's own types, never a GGUF file's.
    const DTypeTraits* traits = type_id < 1000 ? find_dtype(type_id) : nullptr;
    if (!traits)
      r.fail("unsupported tensor type " + describe_type_id(type_id) + " for tensor " + t.name);
    t.type = traits->id;
    offsets.push_back(r.read<uint64_t>(ctx + ": offset"));

    if (t.ne[0] % traits->block_elems != 0)
      r.fail(ctx + ": row length " + std::to_string(t.ne[0]) +
             " is not a multiple of the block size " + std::to_string(traits->block_elems) +
             " of " + traits->name);
    // Byte size with overflow checks: anything that overflows cannot fit in the file anyway.
    uint64_t bytes = 0;
    bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(t.ne[0] / traits->block_elems),
                                           static_cast<uint64_t>(traits->block_bytes), &bytes);
    for (int d = 1; d < kMaxDims; ++d)
      overflow |= __builtin_mul_overflow(bytes, static_cast<uint64_t>(t.ne[d]), &bytes);
    int64_t elements = 1;
    for (int d = 0; d < kMaxDims; ++d)
      overflow |= __builtin_mul_overflow(elements, t.ne[d], &elements);
    if (overflow || bytes > f.bytes_.size())
      r.fail(ctx + ": shape " + format_dims(t.dims()) + " of " + traits->name +
             " needs more bytes than the file has (" + std::to_string(f.bytes_.size()) + ")");
    t.n_bytes = static_cast<size_t>(bytes);
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  uint64_t info_end = r.pos();
  f.data_offset_ = (info_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (n_tensors > 0 && f.data_offset_ > f.bytes_.size())
    r.fail("truncated: the data section starts at offset " + std::to_string(f.data_offset_) +
           ", past the end of the file (" + std::to_string(f.bytes_.size()) + " bytes)");
  uint64_t data_size = n_tensors > 0 ? f.bytes_.size() - f.data_offset_ : 0;

  for (size_t i = 0; i < f.tensors_.size(); ++i) {
    TensorView& t = f.tensors_[i];
    uint64_t off = offsets[i];
    if (off % f.alignment_ != 0)
      r.fail("tensor " + t.name + ": offset " + std::to_string(off) +
             " is not a multiple of the alignment " + std::to_string(f.alignment_));
    if (off > data_size || t.n_bytes > data_size - off)
      r.fail("tensor " + t.name + ": data [" + std::to_string(off) + ", " +
             std::to_string(off + t.n_bytes) + ") extends past the end of the data section (" +
             std::to_string(data_size) + " bytes): truncated file?");
    t.data = f.bytes_.data() + f.data_offset_ + off;
  }

  // Overlapping tensors would let a write through one corrupt another; real files never do it.
  std::vector<size_t> order(f.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return offsets[a] < offsets[b]; });
  const TensorView* prev = nullptr;
  uint64_t prev_end = 0;
  for (size_t i : order) {
    const TensorView& t = f.tensors_[i];
    if (t.n_bytes == 0) continue;
    if (prev && offsets[i] < prev_end)
      r.fail("tensors " + prev->name + " and " + t.name + " overlap");
    prev = &t;
    prev_end = offsets[i] + t.n_bytes;
  }
  return f;
}

void GgufFile::fail_key(std::string_view key, const std::string& what) const {
  throw ModelFileError("file " + path_ + ": key " + std::string(key) + ": " + what);
}

const GgufValue* GgufFile::find_value(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufValue& GgufFile::get_value(std::string_view key) const {
  const GgufValue* v = find_value(key);
  if (!v) fail_key(key, "missing");
  return *v;
}

template <class T>
std::optional<T> GgufFile::find(std::string_view key) const {
  const GgufValue* v = find_value(key);
  if (!v) return std::nullopt;
  constexpr GgufType want = gguf_type_of<T>();
  if (v->type != want)
    fail_key(key,
             std::string("expected ") + gguf_type_name(want) + ", found " + v->type_description());
  return scalar_of<T>(*v);
}

template <class T>
T GgufFile::get(std::string_view key) const {
  std::optional<T> v = find<T>(key);
  if (!v) fail_key(key, "missing");
  return *v;
}

template <class T>
std::optional<std::vector<T>> GgufFile::find_array(std::string_view key) const {
  const GgufValue* v = find_value(key);
  if (!v) return std::nullopt;
  constexpr GgufType want = gguf_type_of<T>();
  if (v->type != GgufType::ARRAY || v->elem_type != want)
    fail_key(key, std::string("expected array of ") + gguf_type_name(want) + ", found " +
                      v->type_description());
  if constexpr (std::is_same_v<T, std::string_view>) {
    return v->strings;
  } else {
    std::vector<T> out(v->count);
    for (uint64_t i = 0; i < v->count; ++i) out[i] = scalar_from_bytes<T>(v->elems + i * sizeof(T));
    return out;
  }
}

template <class T>
std::vector<T> GgufFile::get_array(std::string_view key) const {
  std::optional<std::vector<T>> v = find_array<T>(key);
  if (!v) fail_key(key, "missing");
  return std::move(*v);
}

const std::vector<std::string_view>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = get_value(key);
  if (v.type != GgufType::ARRAY || v.elem_type != GgufType::STRING)
    fail_key(key, "expected array of string, found " + v.type_description());
  return v.strings;
}

std::optional<int64_t> GgufFile::find_int(std::string_view key) const {
  const GgufValue* v = find_value(key);
  if (!v) return std::nullopt;
  if (!is_integer(v->type)) fail_key(key, "expected an integer, found " + v->type_description());
  switch (v->type) {
    case GgufType::I8:
      return scalar_of<int8_t>(*v);
    case GgufType::I16:
      return scalar_of<int16_t>(*v);
    case GgufType::I32:
      return scalar_of<int32_t>(*v);
    case GgufType::I64:
      return scalar_of<int64_t>(*v);
    case GgufType::U64:
      if (v->bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail_key(key, "value " + std::to_string(v->bits) + " does not fit in int64");
      return static_cast<int64_t>(v->bits);
    default:
      return static_cast<int64_t>(v->bits);  // unsigned, zero-extended
  }
}

int64_t GgufFile::get_int(std::string_view key) const {
  std::optional<int64_t> v = find_int(key);
  if (!v) fail_key(key, "missing");
  return *v;
}

std::optional<double> GgufFile::find_float(std::string_view key) const {
  const GgufValue* v = find_value(key);
  if (!v) return std::nullopt;
  if (v->type == GgufType::F32) return scalar_of<float>(*v);
  if (v->type == GgufType::F64) return scalar_of<double>(*v);
  fail_key(key, "expected f32 or f64, found " + v->type_description());
}

double GgufFile::get_float(std::string_view key) const {
  std::optional<double> v = find_float(key);
  if (!v) fail_key(key, "missing");
  return *v;
}

const TensorView* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& GgufFile::tensor(std::string_view name) const {
  const TensorView* t = find_tensor(name);
  if (!t) throw ModelFileError("file " + path_ + ": missing tensor " + std::string(name));
  return *t;
}

const TensorView& GgufFile::expect_shape(std::string_view name,
                                         const std::vector<int64_t>& ne) const {
  const TensorView& t = tensor(name);
  check_shape(path_, t, ne);
  return t;
}

#define KDR_GGUF_INSTANTIATE(T)                                           \
  template T GgufFile::get<T>(std::string_view) const;                    \
  template std::optional<T> GgufFile::find<T>(std::string_view) const;    \
  template std::vector<T> GgufFile::get_array<T>(std::string_view) const; \
  template std::optional<std::vector<T>> GgufFile::find_array<T>(std::string_view) const;
KDR_GGUF_INSTANTIATE(uint8_t)
KDR_GGUF_INSTANTIATE(int8_t)
KDR_GGUF_INSTANTIATE(uint16_t)
KDR_GGUF_INSTANTIATE(int16_t)
KDR_GGUF_INSTANTIATE(uint32_t)
KDR_GGUF_INSTANTIATE(int32_t)
KDR_GGUF_INSTANTIATE(uint64_t)
KDR_GGUF_INSTANTIATE(int64_t)
KDR_GGUF_INSTANTIATE(float)
KDR_GGUF_INSTANTIATE(double)
KDR_GGUF_INSTANTIATE(bool)
KDR_GGUF_INSTANTIATE(std::string_view)
#undef KDR_GGUF_INSTANTIATE

}  // namespace kdr::model
