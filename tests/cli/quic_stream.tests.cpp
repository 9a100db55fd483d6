// SPDX-License-Identifier: MIT
// Tests of cli/quic_stream.hpp's buffers: byte_queue keeps bytes in order across block
// boundaries, never moves them while they are queued (ngtcp2 may resend from them), shares them
// without copies for an echo, and gives every block back exactly once; block_pool recycles up to
// its limit and frees the rest.
#include "quic_stream.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <tuple>
#include <vector>

using namespace detour::cli;

namespace {

std::vector<std::uint8_t> sequence(std::size_t n, std::uint8_t start = 0) {
  std::vector<std::uint8_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

// Reads everything from |from| on, segment by segment.
std::vector<std::uint8_t> drain_view(const byte_queue& q, std::size_t from = 0) {
  std::vector<std::uint8_t> out;
  for (auto seg = q.segment(from); !seg.empty(); seg = q.segment(from)) {
    out.insert(out.end(), seg.begin(), seg.end());
    from += seg.size();
  }
  return out;
}

constexpr std::size_t block = block_pool::block_size;

} // namespace

TEST_CASE("byte_queue keeps bytes in order across blocks, whatever the append sizes",
          "[quic_stream][byte_queue]") {
  const std::size_t piece =
      GENERATE(std::size_t{1}, std::size_t{1000}, block - 1, block, block + 1, 3 * block + 17);
  block_pool pool;
  byte_queue q(pool);
  const auto data = sequence(5 * block + 123);
  for (std::size_t off = 0; off < data.size(); off += piece) {
    q.append(std::span(data).subspan(off, std::min(piece, data.size() - off)));
  }
  REQUIRE(q.size() == data.size());
  CHECK(drain_view(q) == data);
  CHECK(drain_view(q, block + 5) ==
        std::vector<std::uint8_t>(data.begin() + block + 5, data.end()));
}

TEST_CASE("byte_queue never moves queued bytes and frees blocks as they are popped",
          "[quic_stream][byte_queue]") {
  block_pool pool;
  byte_queue q(pool);
  const auto data = sequence(3 * block);
  q.append(data);
  // Where the last block's bytes live, before anything is popped or appended.
  const std::uint8_t* last = q.segment(2 * block).data();
  CHECK(pool.in_use() == 3);
  q.pop(block + 10);
  CHECK(pool.in_use() == 2); // the first block went back
  CHECK(q.segment(0).size() == block - 10);
  q.append(sequence(100));
  CHECK(q.segment(2 * block - (block + 10)).data() == last); // not moved
  CHECK(q.size() == 2 * block - 10 + 100);
  q.pop(q.size());
  CHECK(q.empty());
  CHECK(pool.in_use() == 0); // an empty queue holds no block
  CHECK(q.segment(0).empty());
}

TEST_CASE("byte_queue::segment past the end is empty, and pop clamps",
          "[quic_stream][byte_queue]") {
  block_pool pool;
  byte_queue q(pool);
  CHECK(q.segment(0).empty());
  q.append(sequence(10));
  CHECK(q.segment(10).empty());
  CHECK(q.segment(11).empty());
  q.pop(1000);
  CHECK(q.empty());
  CHECK(pool.in_use() == 0);
}

TEST_CASE("byte_queue::segment finds the right bytes whatever was read, popped or added before",
          "[quic_stream][byte_queue]") {
  // segment() continues from where its last call ended; pops and appends in between, reads
  // going backwards, shared pieces and an emptied queue must all still give the bytes at
  // |from|. Checked against a plain copy of the queue's bytes, operation by operation.
  block_pool pool;
  byte_queue source(pool); // what a stream received, some of it shared into q
  byte_queue q(pool);
  std::vector<std::uint8_t> model;
  std::uint32_t state = 12345;
  const auto next = [&](std::uint32_t bound) {
    state = state * 1664525u + 1013904223u;
    return (state >> 8) % bound;
  };
  std::uint8_t counter = 0;
  std::size_t reader = 0; // a stream's send position, moving forward like gather()'s
  for (int step = 0; step < 4000; ++step) {
    switch (next(6)) {
    case 0: { // copy bytes in
      std::vector<std::uint8_t> bytes(next(3000) + 1);
      for (auto& b : bytes) b = counter++;
      q.append(bytes);
      model.insert(model.end(), bytes.begin(), bytes.end());
      break;
    }
    case 1: { // share bytes in, as the echo does
      std::vector<std::uint8_t> bytes(next(2000) + 1);
      for (auto& b : bytes) b = counter++;
      source.append(bytes);
      q.share_front(source, source.size());
      model.insert(model.end(), bytes.begin(), bytes.end());
      source.pop(source.size());
      break;
    }
    case 2: { // acknowledged bytes leave the front
      const std::size_t n = model.empty() ? 0 : next(static_cast<std::uint32_t>(model.size()) + 1);
      q.pop(n);
      model.erase(model.begin(), model.begin() + static_cast<std::ptrdiff_t>(n));
      reader = reader > n ? reader - n : 0;
      break;
    }
    default: { // read: mostly forward from the send position, sometimes anywhere
      std::size_t from = reader;
      if (next(4) == 0) from = next(static_cast<std::uint32_t>(model.size()) + 2);
      const auto seg = q.segment(from);
      if (from >= model.size()) {
        CHECK(seg.empty());
        break;
      }
      REQUIRE(!seg.empty());
      REQUIRE(seg.size() <= model.size() - from);
      CHECK(std::equal(seg.begin(), seg.end(), model.begin() + static_cast<std::ptrdiff_t>(from)));
      if (from == reader) reader += seg.size();
      break;
    }
    }
    REQUIRE(q.size() == model.size());
  }
  CHECK(drain_view(q) == model);
}

TEST_CASE("block_pool keeps at most its idle limit and frees the rest", "[quic_stream][pool]") {
  block_pool pool(2);
  std::vector<std::uint8_t*> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(pool.get());
  CHECK(pool.in_use() == 5);
  for (auto* b : blocks) pool.put(b);
  CHECK(pool.in_use() == 0);
  CHECK(pool.idle() == 2);
  // Recycled first.
  std::uint8_t* again = pool.get();
  CHECK((again == blocks[0] || again == blocks[1]));
  pool.put(again);
}

namespace {

// Counts what a stream tells its owner. No ngtcp2 connection: the calls below never reach it.
struct recorder final : quic_stream::listener {
  int events = 0;
  int wants_to_send = 0;
  int budget_freed = 0;
  void on_stream_event(quic_stream&) override { ++events; }
  void on_stream_wants_to_send(quic_stream&) override { ++wants_to_send; }
  void on_send_budget_freed() override { ++budget_freed; }
};

} // namespace

TEST_CASE("quic_stream accepts writes up to its send limit and the connection's budget",
          "[quic_stream][budget]") {
  block_pool pool;
  send_budget budget{100'000, 0, false};
  recorder owner;
  quic_stream a(nullptr, 0, pool, 80'000, budget, owner);
  quic_stream b(nullptr, 4, pool, 80'000, budget, owner);
  const auto data = sequence(90'000);

  CHECK(a.write_some(data) == 80'000); // its own limit
  CHECK(a.write_some(data) == 0);
  CHECK(b.write_some(data) == 20'000); // what the connection has left
  CHECK(budget.used == 100'000);
  CHECK(b.write_some(data) == 0);
  CHECK(budget.starved);
  CHECK(owner.wants_to_send == 2);

  // ngtcp2 takes 30 000 bytes of a and the peer acknowledges them: room for everyone again.
  a.on_written(30'000, false);
  a.on_acked(30'000);
  CHECK(budget.used == 70'000);
  CHECK(owner.budget_freed == 1);
  CHECK_FALSE(budget.starved);
  CHECK(b.write_some(data) == 30'000);
  CHECK(a.tx_buffered() == 50'000);
  CHECK(b.tx_buffered() == 50'000);
}

TEST_CASE("quic_stream gives its share of the budget back when it goes", "[quic_stream][budget]") {
  block_pool pool;
  send_budget budget{1'000'000, 0, false};
  recorder owner;
  {
    quic_stream a(nullptr, 0, pool, 500'000, budget, owner);
    CHECK(a.write_some(sequence(300'000)) == 300'000);
    CHECK(budget.used == 300'000);
  }
  CHECK(budget.used == 0);
  CHECK(pool.in_use() == 0);
}

TEST_CASE("quic_stream takes nothing more after close_write or a STOP_SENDING", "[quic_stream]") {
  block_pool pool;
  send_budget budget{1'000'000, 0, false};
  recorder owner;
  quic_stream a(nullptr, 0, pool, 500'000, budget, owner);
  CHECK(a.write_some(sequence(10)) == 10);
  a.close_write();
  CHECK(a.write_some(sequence(10)) == 0);
  quic_stream b(nullptr, 4, pool, 500'000, budget, owner);
  b.on_write_shut(); // ngtcp2 refused a write: the peer sent STOP_SENDING
  CHECK(b.send_stopped() == std::optional<detour::app_code>(0));
  CHECK(b.write_some(sequence(10)) == 0);
  CHECK_FALSE(b.has_pending_send());
}

TEST_CASE("byte_queue shares the front of another queue without a copy, each block returned once",
          "[quic_stream][byte_queue][echo]") {
  block_pool pool;
  byte_queue rx(pool);
  byte_queue tx(pool);
  const auto data = sequence(3000);
  rx.append(data);
  const std::uint8_t* first = rx.segment(0).data();
  tx.share_front(rx, 1000);
  CHECK(tx.segment(0).data() == first); // the very bytes, not a copy
  CHECK(tx.size() == 1000);
  CHECK(rx.size() == 3000); // the source is unchanged
  CHECK(pool.in_use() == 1);
  rx.pop(1000);
  rx.append(sequence(500, 0xb8)); // 3000 % 256 = 0xb8: the sequence goes on
  CHECK(rx.segment(0).data() == first + 1000);
  tx.share_front(rx, 2500); // contiguous with what tx has: one reference, one piece
  CHECK(tx.blocks() == 1);
  CHECK(drain_view(tx) == sequence(3500));
  rx.pop(2500);
  // Empty, but it keeps the block it fills while tx refers to it: the next bytes go there.
  CHECK(rx.empty());
  CHECK(rx.blocks() == 1);
  rx.append(sequence(10));
  CHECK(rx.segment(0).data() == first + 3500);
  CHECK(pool.in_use() == 1);
  rx.pop(10);
  tx.pop(3500);
  CHECK(pool.in_use() == 1); // rx's kept block
  rx.pop(0);                 // nobody else holds it now: an empty queue lets go of it
  CHECK(rx.blocks() == 0);
  CHECK(pool.in_use() == 0);
  CHECK(pool.idle() == 1); // returned once, not twice

  // Across block edges: every block of the source is shared, and freed when both let go.
  const auto big = sequence(2 * block + 100);
  rx.append(big);
  tx.share_front(rx, big.size());
  CHECK(drain_view(tx) == big);
  CHECK(tx.blocks() == 3);
  rx.pop(big.size());
  CHECK(pool.in_use() == 3); // tx holds them all
  tx.pop(block);
  CHECK(pool.in_use() == 2);
  tx.pop(tx.size());
  CHECK(pool.in_use() == 1); // the last one: rx keeps it only while shared, and it was
  CHECK(rx.blocks() == 1);
  rx.clear();
  CHECK(pool.in_use() == 0);
}

namespace {

int fill_random(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx*) {
  std::fill_n(dest, len, std::uint8_t{7});
  return 0;
}

void random_cb(std::uint8_t* dest, std::size_t len, const ngtcp2_rand_ctx* ctx) {
  fill_random(dest, len, ctx);
}

int new_cid(ngtcp2_conn*, ngtcp2_cid* cid, std::uint8_t* token, std::size_t cidlen, void*) {
  cid->datalen = cidlen;
  std::fill_n(cid->data, cidlen, std::uint8_t{1});
  std::fill_n(token, NGTCP2_STATELESS_RESET_TOKENLEN, std::uint8_t{2});
  return 0;
}

// A client connection that never sends: enough for the credit calls a stream makes.
struct idle_conn {
  ngtcp2_conn* conn = nullptr;
  sockaddr_in addr{};

  idle_conn() {
    ngtcp2_callbacks cb{};
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb.encrypt = ngtcp2_crypto_encrypt_cb;
    cb.decrypt = ngtcp2_crypto_decrypt_cb;
    cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb.rand = random_cb;
    cb.get_new_connection_id = new_cid;
    cb.update_key = ngtcp2_crypto_update_key_cb;
    cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    ngtcp2_cid dcid{}, scid{};
    dcid.datalen = 18;
    scid.datalen = 16;
    addr.sin_family = AF_INET;
    const ngtcp2_addr a{reinterpret_cast<ngtcp2_sockaddr*>(&addr), sizeof addr};
    const ngtcp2_path path{a, a, nullptr};
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    REQUIRE(ngtcp2_conn_client_new(&conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings,
                                   &params, nullptr, nullptr) == 0);
  }
  ~idle_conn() { ngtcp2_conn_del(conn); }
  idle_conn(const idle_conn&) = delete;
  idle_conn& operator=(const idle_conn&) = delete;
};

// What the relay does for an echo: write the front of readable() to the stream itself and
// consume what was accepted.
std::size_t echo(quic_stream& s) {
  const auto view = s.readable();
  const std::size_t n = s.write_some(view);
  s.consume(n);
  return n;
}

// Hands every unsent byte to "ngtcp2"; returns the first vector's address.
const std::uint8_t* send_all(quic_stream& s) {
  std::array<ngtcp2_vec, 8> vecs{};
  bool fin = false;
  const std::size_t count = s.gather(vecs.data(), vecs.size(), SIZE_MAX, fin);
  std::size_t n = 0;
  for (std::size_t i = 0; i < count; ++i) n += vecs[i].len;
  s.on_written(n, false);
  return count == 0 ? nullptr : vecs[0].base;
}

// A stream of an idle connection, with its pool and a 1 MiB budget and send limit.
struct one_stream {
  idle_conn c;
  block_pool pool;
  send_budget budget{1 << 20, 0, false};
  recorder owner;
  quic_stream s{c.conn, 0, pool, 1 << 20, budget, owner};

  std::tuple<quic_stream&, block_pool&, send_budget&> parts() { return {s, pool, budget}; }
};

} // namespace

TEST_CASE("quic_stream echoes from the received blocks and frees them once on acknowledgement",
          "[quic_stream][echo]") {
  one_stream f;
  auto [s, pool, budget] = f.parts(); // references into f
  const auto data = sequence(3000);

  s.on_data(std::span(data).first(1200), false);
  const std::uint8_t* received = s.readable().data();
  CHECK(echo(s) == 1200);
  CHECK(send_all(s) == received);                  // sent from the bytes received, not from a copy
  s.on_data(std::span(data).subspan(1200), false); // the next packet goes into the same block
  CHECK(s.readable().data() == received + 1200);
  CHECK(echo(s) == 1800);
  CHECK(send_all(s) == received + 1200);
  CHECK(s.rx_buffered() == 0);
  CHECK(s.tx_buffered() == 3000);
  CHECK(budget.used == 3000);
  CHECK(pool.in_use() == 1);

  s.on_acked(1000);
  CHECK(pool.in_use() == 1);
  s.on_acked(2000);
  CHECK(s.tx_buffered() == 0);
  CHECK(pool.in_use() == 0); // both sides empty: an idle stream holds nothing
  CHECK(pool.idle() == 1);   // returned once
  CHECK(budget.used == 0);
}

TEST_CASE("quic_stream gathers what one packet can carry, and the FIN only with the last byte",
          "[quic_stream]") {
  one_stream f;
  auto [s, pool, budget] = f.parts(); // references into f
  const auto data = sequence(3 * block);
  REQUIRE(s.write_some(data) == data.size()); // three blocks: three vectors
  s.close_write();
  std::array<ngtcp2_vec, 8> vecs{};
  bool fin = true;
  CHECK(s.gather(vecs.data(), vecs.size(), 1452, fin) == 1);
  CHECK(!fin);
  CHECK(s.gather(vecs.data(), vecs.size(), block + 1, fin) == 2);
  CHECK(!fin);
  CHECK(s.gather(vecs.data(), vecs.size(), SIZE_MAX, fin) == 3);
  CHECK(fin);
  // From further on, the same: counted from the first unsent byte.
  s.on_written(block + 100, false);
  CHECK(s.gather(vecs.data(), vecs.size(), block - 100, fin) == 1);
  CHECK(vecs[0].len == block - 100);
  CHECK(!fin);
  CHECK(s.gather(vecs.data(), vecs.size(), block - 99, fin) == 2);
  CHECK(fin);
}

TEST_CASE("quic_stream frees echoed blocks once when the stream is reset or closed",
          "[quic_stream][echo]") {
  idle_conn c;
  block_pool pool;
  send_budget budget{1 << 20, 0, false};
  recorder owner;
  const auto data = sequence(2 * block + 500);
  const bool by_reset = GENERATE(true, false);
  {
    quic_stream s(c.conn, 0, pool, 1 << 20, budget, owner);
    s.on_data(data, false);
    // Echo part of it and send part of that: acked, sent, unsent and unread bytes at once.
    CHECK(s.write_some(s.readable()) == block);
    s.consume(block);
    std::array<ngtcp2_vec, 8> vecs{};
    bool fin = false;
    REQUIRE(s.gather(vecs.data(), vecs.size(), SIZE_MAX, fin) == 1);
    s.on_written(1000, false);
    s.on_acked(400);
    CHECK(pool.in_use() == 3);
    if (by_reset) {
      s.on_reset(7);
      s.reset_write(7);          // what the relay answers; ngtcp2 then closes the stream
      CHECK(pool.in_use() == 3); // sent bytes stay until ngtcp2 lets go of the stream
      s.on_closed(7);
      CHECK(pool.in_use() == 0);
      CHECK(budget.used == 0);
    }
  }
  // The connection closed under it: the stream object goes with everything it held.
  CHECK(pool.in_use() == 0);
  CHECK(pool.idle() == 3);
  CHECK(budget.used == 0);
}
