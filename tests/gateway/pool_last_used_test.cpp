// The upstream pool's bookkeeping (LIFO reuse, dropping the connections idle as
// long as a dead one, the peek before reuse) and the last-used write-behind (one
// write per token per minute, the latest time wins, everything at shutdown).
#include <doctest/doctest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "gateway/obs/metrics.hpp"
#include "gateway/proxy/upstream_pool.hpp"
#include "gateway/server/last_used.hpp"
#include "store/token_store.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace tokengate::gateway;

namespace {

// A connected pair on loopback: `conn` is the pool's side, `peer` the upstream's.
struct ConnectedPair {
  asio::io_context context;
  tcp::acceptor acceptor{context, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::unique_ptr<UpstreamConn> conn = std::make_unique<UpstreamConn>();
  tcp::socket peer{context};
  ConnectedPair() {
    conn->plain = std::make_unique<tcp::socket>(context);
    conn->plain->connect(acceptor.local_endpoint());
    acceptor.accept(peer);
  }
};

bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 200; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

tokengate::conf::Upstream upstream_conf() {
  tokengate::conf::Upstream u;
  u.name = "up";
  u.url = "http://127.0.0.1:9";
  u.host = "127.0.0.1";
  u.port = 9;
  return u;
}

}  // namespace

TEST_CASE("idle_connection_alive: quiet is alive; stray bytes or a close are not") {
  ConnectedPair quiet;
  CHECK(idle_connection_alive(*quiet.conn));

  ConnectedPair stray;
  asio::write(stray.peer, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON")));
  CHECK(eventually([&] { return !idle_connection_alive(*stray.conn); }));

  ConnectedPair closed;
  closed.peer.close();
  CHECK(eventually([&] { return !idle_connection_alive(*closed.conn); }));

  ConnectedPair buffered;  // bytes already read but not parsed count as stray too
  buffered.conn->buffer.commit(asio::buffer_copy(buffered.conn->buffer.prepare(3), asio::buffer("abc", 3)));
  CHECK_FALSE(idle_connection_alive(*buffered.conn));
}

TEST_CASE("UpstreamPool: last in, first out; a dead connection drops those idle as long") {
  UpstreamPool pool(upstream_conf());
  CHECK(pool.take() == nullptr);
  CHECK(pool.host_header() == "127.0.0.1:9");
  std::vector<UpstreamConn*> order;
  for (int i = 0; i < 3; ++i) {
    auto conn = std::make_unique<UpstreamConn>();
    order.push_back(conn.get());
    pool.give_back(std::move(conn));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // distinct idle_since
  }
  auto newest = pool.take();
  CHECK(newest.get() == order[2]);
  auto middle = pool.take();
  CHECK(middle.get() == order[1]);
  pool.give_back(std::move(middle));  // now the newest again
  // The oldest (order[0]) turned out dead: it and everything idle as long go.
  UpstreamConn dead_probe;
  dead_probe.idle_since = std::chrono::steady_clock::now() - std::chrono::hours(1);
  pool.drop_idle_since(dead_probe);
  auto still = pool.take();
  CHECK(still.get() == order[1]);
  auto old = pool.take();
  CHECK(old.get() == order[0]);
  pool.give_back(std::move(old));
  pool.give_back(std::move(still));
  pool.drop_idle_since(*pool.take());  // the newest died: all others had waited longer
  CHECK(pool.take() == nullptr);
}

TEST_CASE("LastUsedWriter: once a minute per token, latest time wins, all at shutdown") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("tokengate-last-used-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto store =
      tokengate::store::TokenStore::open({dir / "tokens", dir / "key", tokengate::store::system_now});
  tokengate::store::NewToken request;
  request.name = "used";
  const std::string id = store->create(request).record.id;

  Metrics metrics(1);
  LastUsedWriter writer(*store, &metrics);
  const auto t0 = tokengate::store::system_now();
  using std::chrono::seconds;
  writer.add({{id, t0}, {id, t0 - seconds(5)}});  // an older use does not win
  writer.flush(t0);
  CHECK(metrics.last_used_writes() == 1);
  CHECK(store->get(id)->last_used_at == t0);

  writer.add({{id, t0 + seconds(10)}});
  writer.flush(t0 + seconds(10));
  CHECK(metrics.last_used_writes() == 1);  // within the minute: held back
  writer.flush(t0 + seconds(61));
  CHECK(metrics.last_used_writes() == 2);
  CHECK(store->get(id)->last_used_at == t0 + seconds(10));

  writer.add({{id, t0 + seconds(62)}});
  writer.flush(t0 + seconds(62), true);  // shutdown writes whatever is pending
  CHECK(metrics.last_used_writes() == 3);
  CHECK(store->get(id)->last_used_at == t0 + seconds(62));
  writer.flush(t0 + seconds(200), true);  // nothing pending: no write
  CHECK(metrics.last_used_writes() == 3);
  store.reset();
  fs::remove_all(dir);
}
