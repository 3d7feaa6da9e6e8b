// Read-only bytes of a model file: an mmap of a file on disk, or memory the caller lends
// (tests, fuzzers). Moving keeps the address, so views into the bytes survive a move.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kdr::model {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path` read-only; throws ModelFileError naming the path when it cannot.
  static MappedFile open(const std::string& path);
  // Wraps memory the caller keeps alive and unchanged for this object's lifetime.
  static MappedFile borrow(const void* data, size_t size);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
};

}  // namespace kdr::model
