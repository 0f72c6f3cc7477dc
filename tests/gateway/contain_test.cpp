// Exception containment: a handler or coroutine that throws ends itself, is logged
// and counted, and the io_context goes on serving everything else.
#include "gateway/obs/contain.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>

namespace asio = boost::asio;
using namespace tokengate::gateway;

TEST_CASE("run_contained resumes after a handler that throws outside any coroutine") {
  asio::io_context context;
  const auto before = internal_errors();
  int ran = 0;
  // What a composed operation does when a library throws in its intermediate
  // handler: the exception reaches run(), not the coroutine.
  asio::post(context, [] { throw std::length_error("field value too large"); });
  asio::post(context, [&] { ++ran; });
  asio::post(context, [] { throw 42; });
  asio::post(context, [&] { ++ran; });
  run_contained(context, "test worker");
  CHECK(ran == 2);
  CHECK(internal_errors() == before + 2);
}

TEST_CASE("a coroutine that throws is ended, counted, and the others go on") {
  asio::io_context context;
  const auto before = internal_errors();
  bool other_finished = false;
  asio::co_spawn(
      context,
      []() -> asio::awaitable<void> {
        co_await asio::post(asio::use_awaitable);
        throw std::runtime_error("bug in one connection");
      },
      ContainExceptions{"test connection"});
  asio::co_spawn(
      context,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
        co_await timer.async_wait(asio::use_awaitable);
        other_finished = true;
      },
      ContainExceptions{"test connection"});
  run_contained(context, "test worker");
  CHECK(other_finished);
  CHECK(internal_errors() == before + 1);
}
