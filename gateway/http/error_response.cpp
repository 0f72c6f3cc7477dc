// JSON error bodies of the data plane.
#include "gateway/http/error_response.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace tokengate::gateway {

std::string error_body(std::string_view error, std::string_view message) {
  boost::json::object o;
  o.emplace("error", error);
  o.emplace("message", message);
  return boost::json::serialize(o);
}

std::string_view error_code_for(int status) noexcept {
  switch (status) {
    case 400:
      return "bad_request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 408:
      return "request_timeout";
    case 409:
      return "conflict";
    case 413:
      return "payload_too_large";
    case 422:
      return "unprocessable_entity";
    case 431:
      return "request_header_fields_too_large";
    case 500:
      return "internal_error";
    case 502:
      return "bad_gateway";
    case 503:
      return "service_unavailable";
    case 504:
      return "gateway_timeout";
    default:
      return "error";
  }
}

}  // namespace tokengate::gateway
