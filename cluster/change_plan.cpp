#include "cluster/change_plan.hpp"

#include <fmt/format.h>

namespace tokengate::cluster {

CatchUpPlan plan_catch_up(std::uint64_t applied, const ChangeBatch& batch) {
  using Step = CatchUpPlan::Step;
  if (batch.head < applied) {
    return {Step::FullReload,
            fmt::format("PostgreSQL is at revision {}, behind this node's {} (restored from a backup?)",
                        batch.head, applied)};
  }
  if (batch.changes.empty()) {
    if (batch.head == applied) return {Step::UpToDate, {}};
    return {Step::FullReload,
            fmt::format("the change log no longer holds revisions {}..{} (pruned)", applied + 1, batch.head)};
  }
  std::uint64_t expected = applied + 1;
  for (const auto& c : batch.changes) {
    if (c.revision != expected) {
      return {Step::FullReload,
              fmt::format("the change log skips from revision {} to {} (pruned)", expected - 1, c.revision)};
    }
    ++expected;
  }
  if (expected - 1 > batch.head) {
    return {Step::FullReload,
            fmt::format("the change log holds revision {} beyond its head {}", expected - 1, batch.head)};
  }
  return {Step::Apply, {}};
}

}  // namespace tokengate::cluster
