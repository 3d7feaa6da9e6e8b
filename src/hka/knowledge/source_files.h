// The files under a folder that a knowledge store reads, shared by the table and document
// stores.
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace kdr::hka {

// The files under `root` for which `wanted(path)` holds, sorted. Links to files are followed,
// links to directories are not, so a cycle of links cannot trap the walk. An entry whose
// status cannot be read (a link loop, a dangling link) or a subdirectory that cannot be
// listed is reported through `skipped(path, message)` and the walk goes on; a dangling link
// the store would not read anyway (an editor's lock file) is left out silently. Returns false
// (and lists nothing) when `root` itself cannot be listed; `*root_error` then says why.
bool list_source_files(
    const std::filesystem::path& root,
    const std::function<bool(const std::filesystem::path&)>& wanted,
    const std::function<void(const std::filesystem::path&, const std::string&)>& skipped,
    std::vector<std::filesystem::path>& files, std::string* root_error);

}  // namespace kdr::hka
