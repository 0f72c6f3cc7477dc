// The web console compiled into the binary: find_ui_asset returns the page, its
// script and stylesheet with the right types, nothing else, and nothing external.
#include "gateway/admin/ui_assets.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using tokengate::gateway::find_ui_asset;
using tokengate::gateway::UiAsset;

namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

TEST_CASE("the page, script and stylesheet are embedded with their content types") {
  struct Case {
    std::string_view path;
    std::string_view content_type;
    std::string_view marker;  // something only the real file holds
  };
  const Case cases[] = {
      {"", "text/html; charset=utf-8", "<!DOCTYPE html>"},
      {"index.html", "text/html; charset=utf-8", "<!DOCTYPE html>"},
      {"app.js", "text/javascript; charset=utf-8", "/v1/tokens"},
      {"app.css", "text/css; charset=utf-8", "@media"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.path);
    const UiAsset* asset = find_ui_asset(c.path);
    REQUIRE(asset != nullptr);
    CHECK(asset->content_type == c.content_type);
    CHECK(contains(asset->body, c.marker));
    // Embedding must be byte-exact: no NUL padding, text ends with the file's newline.
    CHECK(asset->body.find('\0') == std::string_view::npos);
    CHECK(asset->body.back() == '\n');
  }
  CHECK(find_ui_asset("") == find_ui_asset("index.html"));
}

TEST_CASE("the page loads its script and stylesheet from /ui/ itself") {
  const UiAsset* page = find_ui_asset("index.html");
  REQUIRE(page != nullptr);
  CHECK(contains(page->body, "<script src=\"app.js\""));
  CHECK(contains(page->body, "<link rel=\"stylesheet\" href=\"app.css\">"));
}

TEST_CASE("unknown and path-walking names are not found") {
  for (std::string_view path : {"app.json", "index.htm", "/index.html", "../index.html", "./app.js", "APP.JS",
                                "app.js/", "app.js?x=1", "ui/app.js", "embed_assets.cmake", "%61pp.js"}) {
    CAPTURE(path);
    CHECK(find_ui_asset(path) == nullptr);
  }
  CHECK(find_ui_asset(std::string_view("app.js\0", 7)) == nullptr);
}

TEST_CASE("no asset references another origin, and none needs inline script or style") {
  for (std::string_view path : {"index.html", "app.js", "app.css"}) {
    CAPTURE(path);
    const UiAsset* asset = find_ui_asset(path);
    REQUIRE(asset != nullptr);
    const std::string body = lower(asset->body);
    CHECK_FALSE(contains(body, "http://"));
    CHECK_FALSE(contains(body, "https://"));
    CHECK_FALSE(contains(body, "//cdn"));
    CHECK_FALSE(contains(body, "@import"));
    CHECK_FALSE(contains(body, "url("));
  }
  // CSP default-src 'self' forbids inline <script> bodies, <style> blocks, style
  // attributes and on* handler attributes: the page must have none.
  const std::string page = lower(find_ui_asset("index.html")->body);
  CHECK_FALSE(contains(page, "<style"));
  CHECK_FALSE(contains(page, " style="));
  CHECK_FALSE(contains(page, " onclick="));
  CHECK_FALSE(contains(page, " onload="));
  CHECK_FALSE(contains(page, " onsubmit="));
  CHECK_FALSE(contains(page, "javascript:"));
  std::size_t at = 0;
  int scripts = 0;
  while ((at = page.find("<script", at)) != std::string::npos) {
    ++scripts;
    const std::size_t close = page.find('>', at);
    REQUIRE(close != std::string::npos);
    CHECK(contains(page.substr(at, close - at), " src="));
    CHECK(page.compare(close + 1, 9, "</script>") == 0);  // nothing between the tags
    at = close;
  }
  CHECK(scripts == 1);
  // Nor may the script build HTML from strings (API data is set as text only).
  const std::string script = lower(find_ui_asset("app.js")->body);
  CHECK_FALSE(contains(script, "innerhtml"));
  CHECK_FALSE(contains(script, "outerhtml"));
  CHECK_FALSE(contains(script, "document.write"));
  CHECK_FALSE(contains(script, "eval("));
}
