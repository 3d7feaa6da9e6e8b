// Read-only bytes of a model file: by default the file read once into memory backed by
// transparent huge pages, or an mmap of it (KDR_MMAP=1, or a file too large to copy), or
// memory the caller lends (tests, fuzzers). Moving keeps the address, so views into the
// bytes survive a move.
//
// Why copy: generation streams every weight once per token, and with 4 KiB pages that is one
// TLB miss per 4 KiB — on a virtual machine a two-level page walk each. From 2 MiB pages the
// default model generates ~10% faster here (docs/performance.md); peak RSS is unchanged (the
// mapped file's pages counted too), the load reads the file once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/huge_buffer.h"

namespace kdr::model {

class MappedFile {
 public:
  MappedFile() = default;
  // The bytes of `path`, copied to huge pages or mapped read-only (see above); throws
  // ModelFileError naming the path when it cannot.
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
  // True when the bytes are an mmap of the file rather than a copy (or a loan).
  bool is_mapped() const { return owns_mapping_; }

 private:
  void release();

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owns_mapping_ = false;
  HugeBuffer copy_;
};

}  // namespace kdr::model
