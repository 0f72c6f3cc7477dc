// Where the node's rate-limit budgets live (README.md, "Rate limits"). Every
// worker of the node takes the same budget for the same key: budgets are never
// split per worker.
//
// - BudgetTable: budgets of tokens and of (token, route) pairs. A worker takes a
//   budget from here once per token and config generation and keeps the pointer;
//   each request is then one compare-and-swap on the budget (gcra.hpp). The table
//   is sharded by key hash, each shard with its own mutex, so no lock is shared by
//   all threads, and the hot path takes none. sweep() drops idle budgets.
// - AddressTable: budgets of client addresses on public routes. A fixed number
//   of slots, sharded, least recently used evicted first: a flood of distinct
//   addresses recycles slots and never grows memory.
#pragma once

#include <array>
#include <boost/unordered/unordered_flat_map.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/ratelimit/gcra.hpp"

namespace tokengate::gateway::ratelimit {

// The limiter's clock: steady, in nanoseconds.
inline std::uint64_t steady_now_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

class BudgetTable {
 public:
  // The budget for `key`, created full when absent. Takes the key's shard lock.
  std::shared_ptr<Budget> acquire(std::string_view key);
  // Drops every idle budget (retired first, so a worker still holding one takes
  // a fresh one from the table next time). Returns how many budgets remain.
  std::size_t sweep(std::uint64_t now);
  std::size_t size() const;

 private:
  static constexpr std::size_t kShards = 64;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const noexcept { return std::hash<std::string_view>{}(key); }
  };
  struct Equal {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  };
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    boost::unordered_flat_map<std::string, std::shared_ptr<Budget>, Hash, Equal> budgets;
  };
  std::array<Shard, kShards> shards_;
};

class AddressTable {
 public:
  // The default bound: 65,536 client budgets (about 80 bytes each, ~5 MiB).
  static constexpr std::size_t kDefaultCapacity = 65536;
  static constexpr std::size_t kShards = 64;

  // `capacity` is split evenly over the shards (at least one slot each); a
  // shard allocates all its slots on first use and never more.
  explicit AddressTable(std::size_t capacity = kDefaultCapacity);

  // One GCRA step on the budget of (address, route, limit) under its shard's
  // lock; a new key takes the shard's least recently used slot when it is full.
  GcraResult take(std::string_view address, std::uint32_t route, const GcraParams& params, std::uint64_t now);

  std::size_t size() const;  // budgets held
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  struct Key {
    std::array<std::uint8_t, 16> address{};  // IPv6, or IPv4 mapped (::ffff:a.b.c.d)
    std::uint32_t route = 0;
    std::uint32_t limit = 0;  // a hash of the limit: a changed limit starts afresh
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  static constexpr std::uint32_t kNone = 0xFFFFFFFF;
  struct Slot {
    Key key;
    std::uint64_t tat = 0;
    std::uint32_t prev = kNone;  // towards the most recently used
    std::uint32_t next = kNone;  // towards the least recently used
  };
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::vector<Slot> slots;  // fixed size
    std::uint32_t used = 0;
    std::uint32_t head = kNone;  // most recently used
    std::uint32_t tail = kNone;  // least recently used: evicted first
    boost::unordered_flat_map<Key, std::uint32_t, KeyHash> index;
    void unlink(std::uint32_t i) noexcept;
    void push_front(std::uint32_t i) noexcept;
  };
  static Key make_key(std::string_view address, std::uint32_t route, const GcraParams& params) noexcept;

  std::size_t per_shard_;
  std::size_t capacity_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace tokengate::gateway::ratelimit
