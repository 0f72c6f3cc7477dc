// Lookup of the embedded web console files by their path under /ui/.
#include "gateway/admin/ui_assets.hpp"

namespace tokengate::gateway {

const UiAsset* find_ui_asset(std::string_view path) {
  if (path.empty()) path = "index.html";
  for (std::size_t i = 0; i < ui_generated::kFileCount; ++i) {
    if (ui_generated::kFiles[i].name == path) return &ui_generated::kFiles[i].asset;
  }
  return nullptr;
}

}  // namespace tokengate::gateway
