// safetensors model files, memory-mapped read-only, single or sharded.
//
// open() validates the header up front: bounded length, JSON shape, dtypes, shapes whose
// byte size matches data_offsets, and offsets that tile the data buffer exactly (no
// overlap, no hole, as the format requires). Errors are ModelFileErrors naming the file
// and the tensor.
//
// TensorView dims are in ggml order (the reverse of the file's PyTorch shape); see tensor.h.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "model/mapped_file.h"
#include "model/tensor.h"

namespace kdr::model {

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  // Validates bytes the caller keeps alive; `name` stands for the path in errors.
  static SafetensorsFile from_memory(const void* data, size_t size, const std::string& name);

  const std::string& path() const { return path_; }
  // The optional "__metadata__" string map (non-string values are skipped).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const std::vector<TensorView>& tensors() const { return tensors_; }  // by offset
  const TensorView* find_tensor(std::string_view name) const;
  // Throws "file F: missing tensor NAME".
  const TensorView& tensor(std::string_view name) const;
  // tensor(name) after checking its dims, given in ggml order.
  const TensorView& expect_shape(std::string_view name, const std::vector<int64_t>& ne) const;

 private:
  SafetensorsFile() = default;
  static SafetensorsFile parse(MappedFile bytes, const std::string& name);

  std::string path_;
  MappedFile bytes_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// The weights of one model: a single .safetensors file, or the shards named by a
// model.safetensors.index.json `weight_map`.
class SafetensorsShards {
 public:
  static SafetensorsShards open_single(const std::string& path);
  // Opens every shard the index names (file names relative to the index's folder) and
  // checks that each listed tensor is in the shard the index says, and no tensor is in two.
  static SafetensorsShards open_index(const std::string& index_path);

  const std::vector<SafetensorsFile>& files() const { return files_; }
  // Every tensor of every shard.
  std::vector<const TensorView*> tensors() const;
  const TensorView* find_tensor(std::string_view name) const;
  // Throws "file F: missing tensor NAME" (F = the index, or the single file).
  const TensorView& tensor(std::string_view name) const;
  const TensorView& expect_shape(std::string_view name, const std::vector<int64_t>& ne) const;
  // The file that holds `name` (for messages).
  const std::string& file_of(std::string_view name) const;

 private:
  std::string source_;  // index or single file path
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, const TensorView*>, std::less<>> index_;
};

}  // namespace kdr::model
