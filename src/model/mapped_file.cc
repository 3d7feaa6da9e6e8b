#include "model/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "model/tensor.h"

namespace kdr::model {

namespace {

// Copy a file into memory only when it takes at most half of what the machine has free: a
// larger one is mapped, so its pages stay reclaimable instead of pushing the system to swap.
bool should_copy(size_t size) {
  if (const char* env = std::getenv("KDR_MMAP"); env && *env && std::strcmp(env, "0") != 0) {
    return false;
  }
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return false;
  return size <= static_cast<size_t>(pages) * static_cast<size_t>(page) / 2;
}

// Reads the whole of fd into `dst`; an error names the path.
void read_all(int fd, const std::string& path, uint8_t* dst, size_t size) {
  size_t got = 0;
  while (got < size) {
    const ssize_t r = ::pread(fd, dst + got, size - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw ModelFileError("file " + path + ": read failed: " + std::strerror(errno));
    if (r == 0) {
      throw ModelFileError("file " + path + ": ended after " + std::to_string(got) + " of " +
                           std::to_string(size) + " bytes while being read (changed on disk?)");
    }
    got += static_cast<size_t>(r);
  }
}

}  // namespace

MappedFile MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ModelFileError("file " + path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int err = errno;
    ::close(fd);
    throw ModelFileError("file " + path + ": not a regular file" +
                         (err ? std::string(": ") + std::strerror(err) : ""));
  }
  MappedFile file;
  file.size_ = static_cast<size_t>(st.st_size);
  // mmap rejects length 0; an empty file simply has no bytes and fails parsing later.
  if (file.size_ > 0 && should_copy(file.size_)) {
    try {
      file.copy_ = alloc_huge(file.size_);
      read_all(fd, path, file.copy_.get(), file.size_);
    } catch (const std::bad_alloc&) {
      file.copy_.reset();  // no memory for a copy: map the file instead
    } catch (...) {
      ::close(fd);
      throw;
    }
    if (file.copy_) {
      file.data_ = file.copy_.get();
      ::close(fd);
      return file;
    }
  }
  if (file.size_ > 0) {
    void* p = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw ModelFileError("file " + path + ": mmap failed: " + std::strerror(err));
    }
    file.data_ = static_cast<const uint8_t*>(p);
    file.owns_mapping_ = true;
  }
  ::close(fd);  // the mapping keeps the file alive
  return file;
}

MappedFile MappedFile::borrow(const void* data, size_t size) {
  MappedFile file;
  file.data_ = static_cast<const uint8_t*>(data);
  file.size_ = size;
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      owns_mapping_(std::exchange(other.owns_mapping_, false)),
      copy_(std::move(other.copy_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    owns_mapping_ = std::exchange(other.owns_mapping_, false);
    copy_ = std::move(other.copy_);
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
  if (owns_mapping_) ::munmap(const_cast<uint8_t*>(data_), size_);
  owns_mapping_ = false;
  copy_.reset();
  data_ = nullptr;
  size_ = 0;
}

}  // namespace kdr::model
