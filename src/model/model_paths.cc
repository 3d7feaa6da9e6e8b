#include "model/model_paths.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

namespace kdr::model {

namespace fs = std::filesystem;

std::optional<std::string> recorded_model_path(const std::string& record) {
  std::vector<fs::path> roots;
  if (const char* home = std::getenv("KDR_HOME")) roots.emplace_back(home);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      roots.push_back(p);
  roots.push_back(fs::current_path(ec));
  for (const fs::path& r : roots) {
    std::ifstream in(r / "models" / record);
    std::string line;
    if (in && std::getline(in, line) && !line.empty() && fs::exists(line, ec)) return line;
  }
  return std::nullopt;
}

}  // namespace kdr::model
