// Where scripts/setup records installed models: one file per role under models/
// (default.path: the chat model; embedding.path: the sentence-embedding model), each
// holding one absolute path.
#pragma once

#include <optional>
#include <string>

namespace kdr::model {

// The path recorded in models/<record> that exists on disk, searched from $KDR_HOME, the
// executable's folder upwards, then the working directory; nullopt when none is found.
std::optional<std::string> recorded_model_path(const std::string& record);

}  // namespace kdr::model
