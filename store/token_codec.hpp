// The stored form of a token (record + credential digests, never a secret) and the
// rules that turn a request into the next state of a token. Shared by the RocksDB
// store and the PostgreSQL source (cluster/), so a token written by either is the
// same bytes and a create, update or rotate means the same thing on both.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "store/token_store.hpp"

namespace tokengate::store {

// JSON: {"v","record" (without last_used_at),"current","previous","previous_until"}.
std::string encode_token(const StoredToken& token);
// Throws std::runtime_error naming the malformed field; `id` must match the record's.
StoredToken decode_token(std::string_view id, std::string_view text);

// A new token with id `id` whose current secret digest is `digest`, created at `now`.
StoredToken make_token(const NewToken& request, std::string id, const Sha256& digest, TimePoint now);
// The fields the patch sets, names normalized, updated_at = now.
void apply_patch(TokenRecord& record, const TokenPatch& patch, TimePoint now);
// `digest` becomes the current secret; the old one stays valid for `grace` (zero: not at all).
void rotate_credential(StoredToken& token, const Sha256& digest, std::chrono::seconds grace, TimePoint now);

}  // namespace tokengate::store
