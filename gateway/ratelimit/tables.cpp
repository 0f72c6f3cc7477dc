// The budget tables (see tables.hpp).
#include "gateway/ratelimit/tables.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <functional>

namespace tokengate::gateway::ratelimit {
namespace {

std::size_t mix(std::uint64_t x) noexcept {
  // splitmix64's finalizer: every input bit reaches every output bit.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return static_cast<std::size_t>(x);
}

}  // namespace

std::shared_ptr<Budget> BudgetTable::acquire(std::string_view key) {
  Shard& shard = shards_[mix(Hash{}(key)) % kShards];
  std::lock_guard lock(shard.mutex);
  // A retired budget never stays in the map (sweep erases under this lock), so
  // what is found is live.
  auto it = shard.budgets.find(key);
  if (it == shard.budgets.end())
    it = shard.budgets.emplace(std::string(key), std::make_shared<Budget>()).first;
  return it->second;
}

std::size_t BudgetTable::sweep(std::uint64_t now) {
  std::size_t remaining = 0;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    boost::unordered::erase_if(shard.budgets,
                               [now](const auto& entry) { return entry.second->retire_if_idle(now); });
    remaining += shard.budgets.size();
  }
  return remaining;
}

std::size_t BudgetTable::size() const {
  std::size_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    n += shard.budgets.size();
  }
  return n;
}

std::size_t AddressTable::KeyHash::operator()(const Key& k) const noexcept {
  std::uint64_t a = 0, b = 0;
  std::memcpy(&a, k.address.data(), 8);
  std::memcpy(&b, k.address.data() + 8, 8);
  return mix(a ^ mix(b ^ mix((static_cast<std::uint64_t>(k.route) << 32) | k.limit)));
}

AddressTable::AddressTable(std::size_t capacity) {
  per_shard_ = std::max<std::size_t>(1, capacity / kShards);
  capacity_ = per_shard_ * kShards;
  shards_.reserve(kShards);
  for (std::size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>());
}

AddressTable::Key AddressTable::make_key(std::string_view address, std::uint32_t route,
                                         const GcraParams& params) noexcept {
  Key key;
  key.route = route;
  key.limit = static_cast<std::uint32_t>(mix(params.interval_ns ^ mix(params.tolerance_ns)));
  char text[INET6_ADDRSTRLEN] = {};
  if (address.size() < sizeof text) std::memcpy(text, address.data(), address.size());
  in_addr v4{};
  if (address.size() < sizeof text && ::inet_pton(AF_INET6, text, key.address.data()) == 1) return key;
  if (address.size() < sizeof text && ::inet_pton(AF_INET, text, &v4) == 1) {
    key.address[10] = key.address[11] = 0xFF;
    std::memcpy(key.address.data() + 12, &v4, 4);
    return key;
  }
  // Not an IP literal (never from a TCP peer): its hash stands for it.
  const std::uint64_t h = mix(std::hash<std::string_view>{}(address));
  std::memcpy(key.address.data(), &h, 8);
  key.address[8] = 0xFE;
  return key;
}

void AddressTable::Shard::unlink(std::uint32_t i) noexcept {
  Slot& s = slots[i];
  if (s.prev != kNone)
    slots[s.prev].next = s.next;
  else
    head = s.next;
  if (s.next != kNone)
    slots[s.next].prev = s.prev;
  else
    tail = s.prev;
  s.prev = s.next = kNone;
}

void AddressTable::Shard::push_front(std::uint32_t i) noexcept {
  Slot& s = slots[i];
  s.prev = kNone;
  s.next = head;
  if (head != kNone) slots[head].prev = i;
  head = i;
  if (tail == kNone) tail = i;
}

GcraResult AddressTable::take(std::string_view address, std::uint32_t route, const GcraParams& params,
                              std::uint64_t now) {
  const Key key = make_key(address, route, params);
  Shard& shard = *shards_[KeyHash{}(key) >> 58];  // the top 6 bits: 64 shards
  static_assert(kShards == 64);
  std::lock_guard lock(shard.mutex);
  if (shard.slots.empty()) {
    // A shard's slots are allocated on its first use, all at once: a gateway with
    // no limit on a public route never pays for them.
    shard.slots.resize(per_shard_);
    shard.index.reserve(per_shard_);
  }
  std::uint32_t i;
  if (auto it = shard.index.find(key); it != shard.index.end()) {
    i = it->second;
    shard.unlink(i);
  } else {
    if (shard.used < shard.slots.size()) {
      i = shard.used++;
    } else {
      i = shard.tail;  // the least recently used budget makes room
      shard.unlink(i);
      shard.index.erase(shard.slots[i].key);
    }
    shard.slots[i].key = key;
    shard.slots[i].tat = 0;
    shard.index.emplace(key, i);
  }
  shard.push_front(i);
  return gcra_step(shard.slots[i].tat, now, params);
}

std::size_t AddressTable::size() const {
  std::size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    n += shard->index.size();
  }
  return n;
}

}  // namespace tokengate::gateway::ratelimit
