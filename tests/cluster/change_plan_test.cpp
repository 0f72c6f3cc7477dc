// The catch-up rule (cluster/change_plan.hpp): a page of the change log is applied
// only when it continues exactly where the node stopped; anything else is a full
// reload, never a skipped change.
#include "cluster/change_plan.hpp"

#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

using namespace tokengate::cluster;
using Step = CatchUpPlan::Step;

namespace {

ChangeBatch batch(std::uint64_t head, std::vector<std::uint64_t> revisions) {
  ChangeBatch b;
  b.head = head;
  for (auto r : revisions) b.changes.push_back(Change{r, "id" + std::to_string(r), std::string("{}")});
  return b;
}

// A node following a change log: applies pages the way ClusterNode::catch_up does
// (plan, then apply or reload) against a log that may have been pruned.
struct Follower {
  std::uint64_t applied = 0;
  std::map<std::string, int> state;  // id -> value
  int reloads = 0;

  void catch_up(const std::vector<std::pair<std::uint64_t, std::pair<std::string, int>>>& log,
                std::uint64_t pruned_through, const std::map<std::string, int>& truth, std::size_t page) {
    for (;;) {
      ChangeBatch b;
      b.head = log.empty() ? 0 : log.back().first;
      for (const auto& [rev, change] : log) {
        if (rev > applied && rev > pruned_through && b.changes.size() < page)
          b.changes.push_back(Change{rev, change.first, std::to_string(change.second)});
      }
      const auto plan = plan_catch_up(applied, b);
      if (plan.step == Step::UpToDate) return;
      if (plan.step == Step::FullReload) {
        state = truth;
        applied = b.head;
        ++reloads;
        return;
      }
      for (const auto& c : b.changes) state[c.id] = std::stoi(*c.data);
      applied = b.changes.back().revision;
      if (applied >= b.head) return;
    }
  }
};

}  // namespace

TEST_CASE("change plan: a page continuing at applied+1 is applied") {
  CHECK(plan_catch_up(0, batch(3, {1, 2, 3})).step == Step::Apply);
  CHECK(plan_catch_up(5, batch(9, {6, 7})).step == Step::Apply);  // a page: more to read
  CHECK(plan_catch_up(5, batch(5, {})).step == Step::UpToDate);
}

TEST_CASE("change plan: any skipped revision means a full reload") {
  SUBCASE("the first change is not applied+1 (history pruned)") {
    auto p = plan_catch_up(5, batch(9, {7, 8, 9}));
    CHECK(p.step == Step::FullReload);
    CHECK(p.reason.find("skips from revision 5 to 7") != std::string::npos);
  }
  SUBCASE("a hole inside the page") { CHECK(plan_catch_up(0, batch(4, {1, 2, 4})).step == Step::FullReload); }
  SUBCASE("out of order") { CHECK(plan_catch_up(0, batch(2, {2, 1})).step == Step::FullReload); }
  SUBCASE("a repeated revision") { CHECK(plan_catch_up(0, batch(2, {1, 1, 2})).step == Step::FullReload); }
  SUBCASE("nothing after applied although the head moved on (all pruned)") {
    auto p = plan_catch_up(5, batch(9, {}));
    CHECK(p.step == Step::FullReload);
    CHECK(p.reason.find("6..9") != std::string::npos);
  }
  SUBCASE("the database went back (restored from a backup)") {
    auto p = plan_catch_up(9, batch(4, {}));
    CHECK(p.step == Step::FullReload);
    CHECK(p.reason.find("behind") != std::string::npos);
  }
  SUBCASE("a change beyond the head it was read with") {
    CHECK(plan_catch_up(0, batch(1, {1, 2})).step == Step::FullReload);
  }
}

TEST_CASE("change plan: a follower ends at the truth whatever it missed") {
  // 50 writes over 7 ids; the follower catches up after every 0..7 writes with
  // pages of 3, and from the 30th write on everything below 25 is pruned.
  std::vector<std::pair<std::uint64_t, std::pair<std::string, int>>> log;
  std::map<std::string, int> truth;
  Follower f;
  std::uint64_t pruned = 0;
  for (int i = 1; i <= 50; ++i) {
    const std::string id = "t" + std::to_string(i % 7);
    log.push_back({static_cast<std::uint64_t>(i), {id, i}});
    truth[id] = i;
    if (i == 30) {
      pruned = 25;
      f.applied = std::min<std::uint64_t>(f.applied, 20);  // this follower was away: it needs 21.. again
    }
    if (i % 8 == 0 || i == 50) {
      f.catch_up(log, pruned, truth, 3);
      CHECK(f.state == truth);
      CHECK(f.applied == static_cast<std::uint64_t>(i));
    }
  }
  CHECK(f.reloads == 1);  // only the pruned history forced one
}
