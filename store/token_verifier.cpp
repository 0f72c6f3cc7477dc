// The in-memory token directory and its per-thread replicas: verification without
// disk access, kept exact by the store's change listener (no TTL).
#include "store/token_verifier.hpp"

#include <algorithm>
#include <boost/container_hash/hash.hpp>

namespace tokengate::store {
namespace {

// Bounds changes_; a replica further behind than this copies the whole overlay.
constexpr std::size_t kMaxChanges = 4096;

// The overlay's size that triggers a new base: a sixteenth of the tokens, so
// rebuilding costs each change about sixteen slot copies, and never less than
// this many changes.
constexpr std::size_t kMinOverlay = 1024;

}  // namespace

ActiveToken::ActiveToken(StoredToken&& stored, std::shared_ptr<const TokenProfile> p)
    : id(std::move(stored.record.id)),
      name(std::move(stored.record.name)),
      profile(std::move(p)),
      expires_at(stored.record.expires_at),
      current(stored.credential.current) {
  if (stored.credential.previous) {
    previous =
        std::make_unique<const Grace>(Grace{*stored.credential.previous, stored.credential.previous_until});
  }
}

VerifyFailure check_secret(const ActiveToken& token, std::string_view secret, const ServerKey& key,
                           TimePoint now) noexcept {
  const ActiveToken::Grace* grace = token.previous.get();
  return check_digest(key.hmac(secret), token.current, grace ? &grace->digest : nullptr,
                      grace ? grace->until : std::nullopt, token.expires_at, now);
}

std::size_t TokenDirectory::IdHash::operator()(std::string_view id) const noexcept {
  return boost::hash<std::string_view>{}(id);
}

std::size_t TokenDirectory::ProfileHash::operator()(const TokenProfile& p) const noexcept {
  std::size_t seed = 0;
  for (const auto* names : {&p.roles, &p.groups, &p.permissions, &p.licenses}) {
    boost::hash_combine(seed, names->size());
    for (const auto& n : *names) boost::hash_combine(seed, n);
  }
  if (p.rate_limit) {
    boost::hash_combine(seed, p.rate_limit->count);
    boost::hash_combine(seed, p.rate_limit->window_s);
    boost::hash_combine(seed, p.rate_limit->burst);
  }
  return seed;
}

TokenDirectory::TokenDirectory(TokenStore& store) : store_(store) {
  // Subscribe first, then load under the writer lock: a write that lands in
  // between is either already in the scan or is applied (again, idempotently) after us.
  store_.set_change_listener([this](std::string_view id, const StoredToken* now) { on_change(id, now); });
  try {
    std::lock_guard writer(writer_mutex_);
    auto base = std::make_shared<Table>();
    base->reserve(store_.count_estimate());
    // Ids are unique in a scan: insert without looking for an old slot first.
    store_.scan([&](StoredToken&& t) { base->insert(activate(std::move(t))); });
    profiles_after_sweep_ = profiles_.size();
    std::lock_guard lock(mutex_);
    size_ = base->size();
    base_ = std::move(base);
  } catch (...) {
    store_.set_change_listener(nullptr);
    throw;
  }
}

TokenDirectory::~TokenDirectory() { store_.set_change_listener(nullptr); }

std::shared_ptr<const ActiveToken> TokenDirectory::activate(StoredToken stored) {
  auto& r = stored.record;
  TokenProfile wanted{std::move(r.roles), std::move(r.groups), std::move(r.permissions),
                      std::move(r.licenses), r.rate_limit};
  auto found = profiles_.find(wanted);
  if (found == profiles_.end()) {
    // Drop the sets no token uses any more (only this set holds them) once the set
    // has doubled: amortised, and bounded by twice the sets in use.
    if (profiles_.size() >= 2 * profiles_after_sweep_ + 64) {
      boost::unordered::erase_if(profiles_, [](const auto& p) { return p.use_count() == 1; });
      profiles_after_sweep_ = profiles_.size();
    }
    found = profiles_.insert(std::make_shared<const TokenProfile>(std::move(wanted))).first;
  }
  return std::make_shared<const ActiveToken>(std::move(stored), *found);
}

const std::shared_ptr<const ActiveToken>* TokenDirectory::find(const Table& base, const Overlay& overlay,
                                                               std::string_view id) {
  if (!overlay.empty()) {
    if (auto o = overlay.find(id); o != overlay.end()) return o->second ? &o->second : nullptr;
  }
  auto b = base.find(id);
  return b != base.end() ? &*b : nullptr;
}

void TokenDirectory::on_change(std::string_view id, const StoredToken* now) {
  std::lock_guard writer(writer_mutex_);
  auto token = now ? activate(*now) : nullptr;  // a copy: the store keeps its own
  {
    std::lock_guard lock(mutex_);
    const bool existed = find(*base_, overlay_, id) != nullptr;
    size_ = size_ - (existed ? 1 : 0) + (token ? 1 : 0);
    overlay_.insert_or_assign(std::string(id), std::move(token));
    const std::uint64_t version = version_.load(std::memory_order_relaxed) + 1;
    changes_.emplace_back(version, std::string(id));
    if (changes_.size() > kMaxChanges) {
      const std::size_t drop = changes_.size() / 2;
      trimmed_version_ = changes_[drop - 1].first;
      changes_.erase(changes_.begin(), changes_.begin() + static_cast<std::ptrdiff_t>(drop));
    }
    // Published last and with release order: a replica that sees this version also
    // sees the overlay and changes_ above (it reads them under the same mutex anyway).
    version_.store(version, std::memory_order_release);
  }
  if (overlay_.size() > std::max(kMinOverlay, base_->size() / 16)) rebuild_base();
}

void TokenDirectory::rebuild_base() {
  // With writer_mutex_ held and without mutex_: the replicas go on reading the old
  // base and the overlay, which only this writer changes.
  auto next = std::make_shared<Table>(*base_);
  for (const auto& [id, token] : overlay_) {
    next->erase(std::string_view(id));
    if (token) next->insert(token);
  }
  std::shared_ptr<const Table> previous;
  {
    std::lock_guard lock(mutex_);
    previous = std::exchange(base_, std::move(next));
    overlay_.clear();
    ++rebuilds_;
  }
  // Replicas drop the old base as they sync. The one before it goes now, on this
  // thread, if no replica holds it any longer: freeing a million slots is not a
  // worker's job in the middle of a request.
  retired_ = std::move(previous);
}

std::unique_ptr<TokenDirectory::Replica> TokenDirectory::make_replica() {
  return std::unique_ptr<Replica>(new Replica(*this));
}

std::size_t TokenDirectory::size() const {
  std::lock_guard lock(mutex_);
  return size_;
}

std::size_t TokenDirectory::profile_count() const {
  std::lock_guard writer(writer_mutex_);
  return profiles_.size();
}

std::uint64_t TokenDirectory::rebuilds() const {
  std::lock_guard lock(mutex_);
  return rebuilds_;
}

TokenDirectory::Replica::Replica(TokenDirectory& directory) : directory_(directory) {
  std::lock_guard lock(directory_.mutex_);
  copy_all();
}

void TokenDirectory::Replica::copy_all() {
  base_ = directory_.base_;
  overlay_ = directory_.overlay_;
  applied_version_ = directory_.version_.load(std::memory_order_relaxed);
}

void TokenDirectory::Replica::sync() {
  std::lock_guard lock(directory_.mutex_);
  if (base_ != directory_.base_ || applied_version_ < directory_.trimmed_version_) {
    copy_all();
    return;
  }
  // Same base: every change since it was built is in the directory's overlay.
  const auto& changes = directory_.changes_;
  auto it = std::upper_bound(changes.begin(), changes.end(), applied_version_,
                             [](std::uint64_t v, const auto& change) { return v < change.first; });
  for (; it != changes.end(); ++it) {
    auto found = directory_.overlay_.find(std::string_view(it->second));
    if (found == directory_.overlay_.end()) {
      copy_all();
      return;
    }
    overlay_.insert_or_assign(found->first, found->second);
  }
  applied_version_ = directory_.version_.load(std::memory_order_relaxed);
}

ActiveVerifyResult TokenDirectory::Replica::verify(std::string_view token, TimePoint now) {
  auto parsed = parse_token(token);
  if (!parsed) return {VerifyFailure::Malformed, nullptr};
  if (directory_.version_.load(std::memory_order_acquire) != applied_version_) sync();
  const auto* found = find(*base_, overlay_, parsed->id);
  if (!found) return {VerifyFailure::Unknown, nullptr};
  VerifyFailure f = check_secret(**found, parsed->secret, directory_.store_.key(), now);
  if (f != VerifyFailure::None) return {f, nullptr};
  return {f, *found};
}

}  // namespace tokengate::store
