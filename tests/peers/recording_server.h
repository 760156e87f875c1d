// A loopback HTTP server for test peers: binds 127.0.0.1 on a port of the kernel's choosing, serves on its own
// thread, and records every request it is sent (method, path, headers, body) before the peer's handler runs, so a
// test can assert on both sides of a conversation. Register handlers on server() before Start().
#pragma once
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <httplib.h>

namespace rightsd::test {

struct RecordedCall {
  std::string method;
  std::string path;      // without the query string
  std::string target;    // path with the query string
  std::string body;
  httplib::Headers headers;
  std::chrono::steady_clock::time_point at;
};

class RecordingServer {
 public:
  RecordingServer();
  ~RecordingServer();
  RecordingServer(const RecordingServer&) = delete;
  RecordingServer& operator=(const RecordingServer&) = delete;

  httplib::Server& server() { return server_; }
  void Start();
  void Stop();
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::vector<RecordedCall> Calls() const;
  std::vector<RecordedCall> CallsTo(std::string_view method, std::string_view path_prefix) const;
  void ClearCalls();

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<RecordedCall> calls_;
};

}  // namespace rightsd::test
