// Text and JSON rendering shared by the CLI commands: aligned `key: value` blocks,
// padded tables, one-line JSON, and the human form of a token record.
#pragma once

#include <boost/json/value.hpp>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/token_record.hpp"

namespace tokengate::cli {

using Fields = std::vector<std::pair<std::string, std::string>>;

std::string join(const std::vector<std::string>& items, std::string_view separator);

// "key: value" lines with the values aligned one column after the longest key.
std::string render_fields(const Fields& fields);

// Columns padded to the widest cell, two spaces apart, no trailing blanks.
std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);

// Compact JSON and a newline on stdout.
void print_json(const boost::json::value& value);

// A time for people: RFC 3339, or `none` when absent.
std::string format_time(const std::optional<store::TimePoint>& t, std::string_view none);
// A token's own rate limit as `--rate-limit` takes it ("100/s:200"), or "default".
std::string rate_limit_text(const std::optional<conf::RateLimit>& limit);

// The record as `key: value` pairs (show, update, and the details of create/rotate).
Fields record_fields(const store::TokenRecord& record, store::TimePoint now);

// The record as one JSON object, with the plaintext first when given.
boost::json::object record_json(const store::TokenRecord& record, const std::string* plaintext = nullptr);

// The error line of exit code 1: "error: ..." with any newline folded away.
void print_error(std::string_view message);

}  // namespace tokengate::cli
