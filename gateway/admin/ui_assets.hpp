// The web console's static files (gateway/admin/ui/), compiled into the binary; the
// admin listener serves them under /ui/ without any files installed at run time.
#pragma once

#include <cstddef>
#include <string_view>

namespace tokengate::gateway {

struct UiAsset {
  std::string_view content_type;
  std::string_view body;
};

// `path` is relative to /ui/: "" and "index.html" are the page, "app.js" and
// "app.css" its script and stylesheet. nullptr for anything else (no directory
// walking: only the exact names of the embedded files match).
const UiAsset* find_ui_asset(std::string_view path);

namespace ui_generated {
// Filled by the source that gateway/admin/ui/embed_assets.cmake generates at build time.
struct EmbeddedUiFile {
  std::string_view name;
  UiAsset asset;
};
extern const EmbeddedUiFile kFiles[];
extern const std::size_t kFileCount;
}  // namespace ui_generated

}  // namespace tokengate::gateway
