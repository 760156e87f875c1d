#include "peers/recording_server.h"

#include <sys/socket.h>

#include <memory>
#include <stdexcept>
#include <utility>

namespace rightsd::test {

namespace {
// httplib runs the pre-routing handler before it reads a request body, and the post-routing handler on the same
// thread after the route's handler, before the response is written: the call recorded by the first gets its body
// from the second. (pre, post) of one request never interleave with another request on that thread.
struct OpenCall {
  const RecordingServer* server = nullptr;
  std::size_t index = 0;
};
thread_local OpenCall t_open_call;
}  // namespace

RecordingServer::RecordingServer() {
  server_.new_task_queue = [] { return new httplib::ThreadPool(16); };
  server_.set_tcp_nodelay(true);
  server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    std::string target = req.path;
    if (!req.params.empty()) {
      target += "?";
      bool first = true;
      for (const auto& [k, v] : req.params) {
        if (!first) target += "&";
        first = false;
        target += k + "=" + v;
      }
    }
    std::lock_guard lock(mu_);
    calls_.push_back(RecordedCall{req.method, req.path, target, req.body, req.headers, std::chrono::steady_clock::now()});
    t_open_call = OpenCall{this, calls_.size() - 1};
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server_.set_post_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    OpenCall open = std::exchange(t_open_call, OpenCall{});
    if (open.server != this || req.body.empty()) return;
    std::lock_guard lock(mu_);
    // ClearCalls() may have run while the handler did.
    if (open.index < calls_.size() && calls_[open.index].method == req.method &&
        calls_[open.index].path == req.path) {
      calls_[open.index].body = req.body;
    }
  });
  // httplib calls this on the socket it is about to bind; keeping its fd lets the constructor widen the backlog.
  auto listen_fd = std::make_shared<socket_t>(INVALID_SOCKET);
  server_.set_socket_options([listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    *listen_fd = sock;
  });
  port_ = server_.bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("test peer: cannot bind 127.0.0.1:0");
  // httplib 0.11 listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed when Debian built libcpp-httplib).
  // A burst of connects beyond it overflows the queue: the kernel answers with SYN cookies and drops handshake ACKs
  // it has no room for (ListenOverflows), so the client's side is established while this server never accepts the
  // connection, and the client's request is retransmitted into nothing for a minute or more. That made ~50 of 200
  // concurrent calls time out at 60 s with every client thread idle. Real servers listen with hundreds (nginx 511,
  // the kernel's somaxconn 4096); a peer that loses connections tests the kernel, not the client.
  // listen() again on a listening socket only changes its backlog.
  if (::listen(*listen_fd, SOMAXCONN) != 0) throw std::runtime_error("test peer: cannot widen the listen backlog");
}

RecordingServer::~RecordingServer() { Stop(); }

void RecordingServer::Start() {
  // The socket is already bound and listening: connections made before the thread accepts simply queue.
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  // httplib's stop() does nothing until the listening loop has marked itself running, and the loop then never
  // ends: a test that stops its peer right after starting it (no call made) would hang in Stop's join.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void RecordingServer::Stop() {
  server_.stop();
  if (thread_.joinable()) thread_.join();
}

std::vector<RecordedCall> RecordingServer::Calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

std::vector<RecordedCall> RecordingServer::CallsTo(std::string_view method, std::string_view path_prefix) const {
  std::lock_guard lock(mu_);
  std::vector<RecordedCall> out;
  for (const auto& c : calls_) {
    if (c.method == method && std::string_view(c.path).starts_with(path_prefix)) out.push_back(c);
  }
  return out;
}

void RecordingServer::ClearCalls() {
  std::lock_guard lock(mu_);
  calls_.clear();
}

}  // namespace rightsd::test
