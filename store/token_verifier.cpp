// The in-memory token directory and its per-thread replicas: verification without
// disk access, kept exact by the store's change listener (no TTL).
#include "store/token_verifier.hpp"

#include <algorithm>

namespace tokengate::store {
namespace {

// Bounds changes_; a replica further behind than this re-copies the whole directory.
constexpr std::size_t kMaxChanges = 4096;

}  // namespace

TokenDirectory::TokenDirectory(TokenStore& store) : store_(store) {
  // Subscribe first, then load under the mutex: a write that lands in between is
  // either already in load_all() or is applied (again, idempotently) after us.
  store_.set_change_listener([this](std::string_view id, const StoredToken* now) { on_change(id, now); });
  try {
    std::lock_guard lock(mutex_);
    for (auto& t : store_.load_all()) {
      std::string id = t.record.id;
      tokens_.insert_or_assign(std::move(id), std::make_shared<const StoredToken>(std::move(t)));
    }
  } catch (...) {
    store_.set_change_listener(nullptr);
    throw;
  }
}

TokenDirectory::~TokenDirectory() { store_.set_change_listener(nullptr); }

void TokenDirectory::on_change(std::string_view id, const StoredToken* now) {
  std::lock_guard lock(mutex_);
  std::string key(id);
  if (now) {
    tokens_.insert_or_assign(key, std::make_shared<const StoredToken>(*now));
  } else {
    tokens_.erase(key);
  }
  const std::uint64_t version = version_.load(std::memory_order_relaxed) + 1;
  changes_.emplace_back(version, std::move(key));
  if (changes_.size() > kMaxChanges) {
    const std::size_t drop = changes_.size() / 2;
    trimmed_version_ = changes_[drop - 1].first;
    changes_.erase(changes_.begin(), changes_.begin() + static_cast<std::ptrdiff_t>(drop));
  }
  // Published last and with release order: a replica that sees this version also
  // sees the map and changes_ above (it reads them under the same mutex anyway).
  version_.store(version, std::memory_order_release);
}

std::unique_ptr<TokenDirectory::Replica> TokenDirectory::make_replica() {
  return std::unique_ptr<Replica>(new Replica(*this));
}

std::size_t TokenDirectory::size() const {
  std::lock_guard lock(mutex_);
  return tokens_.size();
}

TokenDirectory::Replica::Replica(TokenDirectory& directory) : directory_(directory) {
  std::lock_guard lock(directory_.mutex_);
  copy_all();
}

void TokenDirectory::Replica::copy_all() {
  tokens_.clear();
  tokens_.reserve(directory_.tokens_.size());
  for (const auto& [id, token] : directory_.tokens_) {
    tokens_.emplace(id, std::make_shared<const StoredToken>(*token));
  }
  applied_version_ = directory_.version_.load(std::memory_order_relaxed);
}

void TokenDirectory::Replica::sync() {
  std::lock_guard lock(directory_.mutex_);
  if (applied_version_ < directory_.trimmed_version_) {
    copy_all();
    return;
  }
  const auto& changes = directory_.changes_;
  auto it = std::upper_bound(changes.begin(), changes.end(), applied_version_,
                             [](std::uint64_t v, const auto& change) { return v < change.first; });
  for (; it != changes.end(); ++it) {
    const std::string& id = it->second;
    auto found = directory_.tokens_.find(id);
    if (found == directory_.tokens_.end()) {
      tokens_.erase(id);
    } else {
      // A new object owned by this replica: a verify in flight elsewhere keeps the
      // old one, and reference counts stay on this thread.
      tokens_.insert_or_assign(id, std::make_shared<const StoredToken>(*found->second));
    }
  }
  applied_version_ = directory_.version_.load(std::memory_order_relaxed);
}

VerifyResult TokenDirectory::Replica::verify(std::string_view token, TimePoint now) {
  auto parsed = parse_token(token);
  if (!parsed) return {VerifyFailure::Malformed, nullptr};
  if (directory_.version_.load(std::memory_order_acquire) != applied_version_) sync();
  auto found = tokens_.find(parsed->id);
  if (found == tokens_.end()) return {VerifyFailure::Unknown, nullptr};
  VerifyFailure f = check_secret(*found->second, parsed->secret, directory_.store_.key(), now);
  if (f != VerifyFailure::None) return {f, nullptr};
  return {f, found->second};
}

}  // namespace tokengate::store
