// Micro-benchmark of policy::Engine::match: lookup cost with 10 vs 1,000 routes
// (distinct prefixes like /svc123/items/*/detail), for a hit on the last route and
// for misses. Run by hand: build-*/bench/route_bench [iterations]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "policy/engine.hpp"

namespace {

using tokengate::policy::Engine;

std::shared_ptr<const Engine> make_engine(int routes) {
  auto config = std::make_shared<tokengate::conf::Config>();
  for (int i = 0; i < routes; ++i) {
    tokengate::conf::Route r;
    // A mix of shapes, as a real table would have; the last one is /svcN/items/*/detail.
    switch (i % 4) {
      case 0:
        r.path = fmt::format("/svc{}/items/*/detail", i);
        break;
      case 1:
        r.path = fmt::format("/svc{}/orders/**", i);
        break;
      case 2:
        r.path = fmt::format("/api/v{}/users/*", i);
        break;
      default:
        r.path = fmt::format("/svc{}/health", i);
        break;
    }
    if (i == routes - 1) r.path = fmt::format("/svc{}/items/*/detail", i);
    r.methods = {"GET", "HEAD"};
    r.upstream = "app";
    r.mark = {i + 1, 5};
    config->routes.push_back(std::move(r));
  }
  return Engine::compile(config);
}

// ns per lookup of `path` over one timed run.
double time_once(const Engine& engine, const std::string& path, long iterations) {
  long sink = 0;
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < iterations; ++i) {
    const auto m = engine.match("GET", path);
    sink += m.route + static_cast<long>(m.allow.size());
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  asm volatile("" : : "r"(sink) : "memory");  // keep the loop
  return std::chrono::duration<double, std::nano>(elapsed).count() / static_cast<double>(iterations);
}

void expect(const Engine& engine, const std::string& path, int route) {
  if (engine.match("GET", path).route != route) {
    fmt::print(stderr, "unexpected match for {}\n", path);
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 200'000;
  constexpr int kRuns = 25;
  const int sizes[2] = {10, 1000};
  const std::shared_ptr<const Engine> engines[2] = {make_engine(sizes[0]), make_engine(sizes[1])};
  struct Probe {
    const char* name;
    std::string paths[2];
    int routes[2];
    double ns[2] = {1e18, 1e18};
  };
  std::vector<Probe> probes = {
      {"hit last route", {"/svc9/items/42/detail", "/svc999/items/42/detail"}, {9, 999}},
      {"miss: unknown prefix", {"/nosuch/items/42/detail", "/nosuch/items/42/detail"}, {-1, -1}},
      {"miss: known prefix", {"/svc9/items/42/other", "/svc999/items/42/other"}, {-1, -1}},
  };
  // Runs of the two table sizes alternate and the fastest run of each counts, so
  // load from other processes on a shared machine skews neither side.
  for (auto& p : probes) {
    for (int s = 0; s < 2; ++s) expect(*engines[s], p.paths[s], p.routes[s]);
    for (int run = 0; run < kRuns; ++run)
      for (int s = 0; s < 2; ++s) p.ns[s] = std::min(p.ns[s], time_once(*engines[s], p.paths[s], iterations));
  }
  fmt::print("{:<24} {:>14} {:>14} {:>8}\n", "lookup", "10 routes", "1000 routes", "ratio");
  for (const auto& p : probes)
    fmt::print("{:<24} {:>11.1f} ns {:>11.1f} ns {:>7.2f}x\n", p.name, p.ns[0], p.ns[1], p.ns[1] / p.ns[0]);
  return 0;
}
