// The data-plane calls must not allocate: Engine::match always, canonicalize_target
// once the caller's buffer is large enough. Counts global operator new calls made
// while a flag is set on this thread.
#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <string>

#include "policy/canonical_path.hpp"
#include "policy/engine.hpp"
#include "test_config.hpp"

namespace {
thread_local bool counting = false;
thread_local long allocations = 0;
}  // namespace

// GCC flags free() of memory from operator new, not seeing that we replace both.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size) {
  if (counting) ++allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace t = tokengate::policy::test;
using namespace tokengate::policy;

TEST_CASE("match and canonicalize_target do not allocate") {
  const auto engine = Engine::compile(t::make_config({
      {"/public/**", {}, true},
      {"/api/orders/**", {"GET", "HEAD"}},
      {"/api/orders/*/refund", {"POST"}},
      {"/api/**", {"DELETE"}},
  }));
  std::string path;
  path.reserve(512);
  const char* targets[] = {"/public/a/../b",
                           "/api/orders/1/refund?x=1",
                           "/api/orders/%7e/x",
                           "/nothing/here",
                           "/api/x/y/z//",
                           "/a/../../b",
                           "/%zz",
                           "/api/admin;/x",
                           "/api/%2561dmin",
                           "/api/admin./x"};
  const char* methods[] = {"GET", "PUT", "POST", "BREW"};
  long matches = 0;
  long allows = 0;
  allocations = 0;
  counting = true;
  for (const CanonicalOptions options : {CanonicalOptions{}, CanonicalOptions{true, true, true}}) {
    for (const char* target : targets) {
      for (const char* method : methods) {
        const auto ct = canonicalize_target(method, target, path, options);
        if (ct.error != PathError::None) continue;
        const auto m = engine->match(method, path);
        matches += m.route >= 0;
        allows += !m.allow.empty();
      }
    }
  }
  counting = false;
  CHECK(allocations == 0);
  CHECK(matches > 0);  // the loop exercised hits, 405s and 404s
  CHECK(allows > 0);
}
