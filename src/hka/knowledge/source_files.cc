#include "hka/knowledge/source_files.h"

#include <algorithm>
#include <system_error>

namespace kdr::hka {

bool list_source_files(
    const std::filesystem::path& root,
    const std::function<bool(const std::filesystem::path&)>& wanted,
    const std::function<void(const std::filesystem::path&, const std::string&)>& skipped,
    std::vector<std::filesystem::path>& files, std::string* root_error) {
  namespace fs = std::filesystem;
  std::vector<fs::path> dirs = {root};
  while (!dirs.empty()) {
    const fs::path dir = std::move(dirs.back());
    dirs.pop_back();
    std::error_code list_error;
    for (fs::directory_iterator it(dir, list_error), end; !list_error && it != end;
         it.increment(list_error)) {
      const fs::path& path = it->path();
      std::error_code error;
      if (fs::is_directory(it->symlink_status(error)) && !error) {
        dirs.push_back(path);
        continue;
      }
      const fs::file_status status = error ? fs::file_status() : it->status(error);
      const bool want = wanted(path);
      if (error) {
        if (want || error != std::errc::no_such_file_or_directory) {
          skipped(path,
                  path.string() + ": skipped, cannot read its status (" + error.message() + ")");
        }
      } else if (want && fs::is_regular_file(status)) {
        files.push_back(path);
      }
    }
    if (list_error) {
      if (dir == root) {
        if (root_error) *root_error = list_error.message();
        files.clear();
        return false;
      }
      skipped(dir,
              dir.string() + ": skipped, cannot list the directory (" + list_error.message() + ")");
    }
  }
  std::sort(files.begin(), files.end());
  return true;
}

}  // namespace kdr::hka
