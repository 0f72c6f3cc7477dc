// What a node does with a page of the change log: apply it, nothing, or reload the
// whole set. Pure logic (no I/O) so the rule that no change is ever skipped is
// tested on its own (tests/cluster/change_plan_test.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tokengate::cluster {

struct Change {
  std::uint64_t revision = 0;
  std::string id;
  std::optional<std::string> data;  // the stored token (token_codec), nullopt = deleted (tombstone)
};

// One read of the change log, taken in one statement (one snapshot): the head
// revision and the changes after the node's revision, ascending, possibly a page.
struct ChangeBatch {
  std::uint64_t head = 0;
  std::vector<Change> changes;
};

struct CatchUpPlan {
  enum class Step { UpToDate, Apply, FullReload } step = Step::UpToDate;
  std::string reason;  // for FullReload, one line for the log
};

// Revisions are dense: every committed write takes n+1 from the counter row and a
// rolled-back one gives its number back with the rollback, so the log after
// `applied` must start at applied+1 and go up by one. A hole means the history the
// node needs was pruned; a head below `applied` means the database went back (a
// restore); both are a full reload, never a silent skip.
CatchUpPlan plan_catch_up(std::uint64_t applied, const ChangeBatch& batch);

}  // namespace tokengate::cluster
