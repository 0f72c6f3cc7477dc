// Rendering helpers of the CLI; see output.hpp.
#include "gateway/cli/output.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <iostream>

namespace tokengate::cli {

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

std::string render_fields(const Fields& fields) {
  std::size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size() + 1);
  std::string out;
  for (const auto& [key, value] : fields) {
    const std::string label = key + ":";
    if (value.empty()) {
      out += label + "\n";
    } else {
      out += fmt::format("{:<{}} {}\n", label, width, value);
    }
  }
  return out;
}

std::string render_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  };
  measure(header);
  for (const auto& row : rows) measure(row);

  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    // A trailing empty cell would otherwise leave padding at the end of the line.
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  };
  emit(header);
  for (const auto& row : rows) emit(row);
  return out;
}

void print_json(const boost::json::value& value) {
  std::cout << boost::json::serialize(value) << '\n' << std::flush;
}

std::string format_time(const std::optional<store::TimePoint>& t, std::string_view none) {
  return t ? store::format_rfc3339(*t) : std::string(none);
}

std::string rate_limit_text(const std::optional<conf::RateLimit>& limit) {
  return limit ? fmt::format("{}:{}", limit->rate_text(), limit->burst) : std::string("default");
}

Fields record_fields(const store::TokenRecord& record, store::TimePoint now) {
  auto set = [](const std::vector<std::string>& names) {
    return names.empty() ? std::string("-") : join(names, ", ");
  };
  std::string expires = format_time(record.expires_at, "never");
  if (record.expired_at(now)) expires += " (expired)";
  return {
      {"id", record.id},
      {"name", record.name},
      {"description", record.description.empty() ? "-" : record.description},
      {"roles", set(record.roles)},
      {"groups", set(record.groups)},
      {"permissions", set(record.permissions)},
      {"licenses", set(record.licenses)},
      {"expires_at", expires},
      {"created_at", store::format_rfc3339(record.created_at)},
      {"updated_at", store::format_rfc3339(record.updated_at)},
      {"last_used_at", format_time(record.last_used_at, "never")},
      {"rotated_at", format_time(record.rotated_at, "never")},
      {"created_by", record.created_by},
      {"rate_limit", rate_limit_text(record.rate_limit)},
  };
}

boost::json::object record_json(const store::TokenRecord& record, const std::string* plaintext) {
  boost::json::object fields = store::to_json(record);
  if (!plaintext) return fields;
  boost::json::object out;
  out["token"] = *plaintext;
  for (const auto& field : fields) out[field.key()] = field.value();
  return out;
}

void print_error(std::string_view message) {
  std::string line(message);
  std::replace(line.begin(), line.end(), '\n', ' ');
  fmt::print(stderr, "error: {}\n", line);
}

}  // namespace tokengate::cli
