#include "peers/fhir/fhir_peer.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

extern char** environ;

namespace rightsd::test {

namespace {

using nlohmann::json;

constexpr const char* kListening = "fhir peer listening on ";

[[noreturn]] void OpenSslFailure(const std::string& what) {
  const unsigned long code = ERR_get_error();
  char buf[256] = {0};
  if (code != 0) ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  throw std::runtime_error(fmt::format("fhir peer: {}: {}", what, code != 0 ? buf : "unknown OpenSSL error"));
}

std::string WriteBio(int (*writer)(BIO*, EVP_PKEY*), EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || writer(bio.get(), key) != 1) OpenSslFailure("cannot write a key");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

int WritePrivate(BIO* b, EVP_PKEY* k) { return PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr); }
int WritePublic(BIO* b, EVP_PKEY* k) { return PEM_write_bio_PUBKEY(b, k); }

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::filesystem::path& path, const std::string& text, std::filesystem::perms mode) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw std::runtime_error(fmt::format("fhir peer: cannot write {}", path.string()));
  std::filesystem::permissions(path, mode);
}

// Exit status, or -1 if it was still running after `timeout`.
int WaitPid(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return 0;  // not our child any more
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

FhirPeer::FhirPeer(FhirPeerOptions options) : options_(std::move(options)) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{nullptr, EVP_PKEY_free};
  if (options_.algorithm == "RS384") {
    key.reset(EVP_RSA_gen(2048));
    if (!key) OpenSslFailure("cannot generate an RSA 2048 key");
  } else if (options_.algorithm == "ES384") {
    key.reset(EVP_EC_gen("P-384"));
    if (!key) OpenSslFailure("cannot generate an EC P-384 key");
  } else {
    throw std::invalid_argument(
        fmt::format("fhir peer: algorithm '{}' is not supported (RS384 or ES384)", options_.algorithm));
  }
  private_key_pem_ = WriteBio(WritePrivate, key.get());
  public_key_pem_ = WriteBio(WritePublic, key.get());

  std::string tmpl = (std::filesystem::temp_directory_path() / "rightsd-fhir-peer-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error(fmt::format("fhir peer: mkdtemp {}: {}", tmpl, std::strerror(errno)));
  }
  dir_ = tmpl;
  WriteFile(dir_ / "client-public.pem", public_key_pem_,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

FhirPeer::~FhirPeer() {
  try {
    Stop();
  } catch (...) {
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void FhirPeer::Start() {
  if (pid_ > 0) throw std::logic_error("fhir peer: already started");
  const std::filesystem::path script_dir = RIGHTSD_FHIR_PEER_DIR;
  if (!std::filesystem::exists(script_dir / "node_modules" / "@medplum" / "fhir-router" / "package.json")) {
    throw std::runtime_error(fmt::format(
        "fhir peer: {}/node_modules is missing: run `npm ci --no-audit --no-fund` in {} (scripts/test and "
        "scripts/run do it through rightsd::install_deps)",
        script_dir.string(), script_dir.string()));
  }
  const std::filesystem::path log = dir_ / "server.log";
  const std::vector<std::string> args{RIGHTSD_NODE,
                                      (script_dir / "server.js").string(),
                                      "--port",
                                      "0",
                                      "--client-id",
                                      options_.client_id,
                                      "--public-key",
                                      (dir_ / "client-public.pem").string(),
                                      "--kid",
                                      options_.kid,
                                      "--page-size",
                                      std::to_string(options_.page_size),
                                      "--token-lifetime",
                                      std::to_string(options_.token_lifetime_seconds),
                                      "--exit-with-stdin"};
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  // stdout: a pipe we read the listening line from. stdin: a pipe whose write end only we hold (close-on-exec, so
  // no other child inherits it): when this process goes, however it goes, the server sees the end of its input and
  // exits (--exit-with-stdin).
  int fds[2];
  int in[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error(fmt::format("fhir peer: pipe: {}", std::strerror(errno)));
  }
  if (::pipe2(in, O_CLOEXEC) != 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw std::runtime_error(fmt::format("fhir peer: pipe: {}", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  ::close(in[0]);
  if (rc != 0) {
    ::close(fds[0]);
    ::close(in[1]);
    throw std::runtime_error(fmt::format("fhir peer: cannot start {}: {}", args[0], std::strerror(rc)));
  }
  pid_ = pid;
  stdin_fd_ = in[1];

  // Read stdout until the listening line, the end of the output, or the deadline.
  std::string out;
  std::string failure;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const auto newline = out.find('\n');
    if (newline != std::string::npos) {
      const std::string line = out.substr(0, newline);
      const auto at = line.find(kListening);
      const std::string url = at == std::string::npos ? "" : line.substr(at + std::strlen(kListening));
      const auto colon = url.rfind(':');
      if (url.rfind("http://127.0.0.1:", 0) == 0 && colon != std::string::npos) {
        port_ = std::atoi(url.c_str() + colon + 1);
      }
      if (port_ <= 0) failure = "unexpected output";
      break;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      failure = "no listening line after 10 s";
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[4096];
    const ssize_t got = ::read(fds[0], buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      failure = "the process ended its output without a listening line";
      break;
    }
    out.append(buf, static_cast<std::size_t>(got));
  }
  // Nothing more is printed to stdout once the server listens; the pipe is not read again.
  ::close(fds[0]);
  if (!failure.empty()) {
    Stop();
    throw std::runtime_error(fmt::format("fhir peer: {} ({} {}):\nstdout: {}\nstderr: {}", failure, args[0],
                                         args[1], out, ReadAll(log)));
  }
}

void FhirPeer::Stop() {
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);
    stdin_fd_ = -1;
  }
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (WaitPid(pid_, std::chrono::seconds(5)) == -1) {
    ::kill(pid_, SIGKILL);
    WaitPid(pid_, std::chrono::seconds(5));
  }
  pid_ = -1;
}

int FhirPeer::port() const { return port_; }
std::string FhirPeer::base_url() const { return fmt::format("http://127.0.0.1:{}/fhir/R4", port_); }
std::string FhirPeer::token_url() const { return fmt::format("http://127.0.0.1:{}/auth/token", port_); }
const FhirPeerOptions& FhirPeer::options() const { return options_; }
const std::string& FhirPeer::private_key_pem() const { return private_key_pem_; }

void FhirPeer::WritePrivateKeyPem(const std::filesystem::path& path) const {
  WriteFile(path, private_key_pem_, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

FhirPeer::Response FhirPeer::Control(const std::string& method, const std::string& path, const std::string& body) {
  if (pid_ <= 0 || port_ <= 0) throw std::logic_error("fhir peer: not started");
  httplib::Client client("127.0.0.1", port_);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(30, 0);
  httplib::Result result{nullptr, httplib::Error::Unknown};
  if (method == "GET") {
    result = client.Get(path.c_str());
  } else if (method == "POST") {
    result = client.Post(path.c_str(), body, "application/json");
  } else if (method == "DELETE") {
    result = client.Delete(path.c_str());
  } else {
    throw std::logic_error("fhir peer: unsupported control method " + method);
  }
  if (!result) {
    throw std::runtime_error(fmt::format("fhir peer: {} {}: no answer ({})", method, path,
                                         httplib::to_string(result.error())));
  }
  return {result->status, result->body};
}

FhirPeer::Response FhirPeer::ControlOk(const std::string& method, const std::string& path, const std::string& body) {
  Response r = Control(method, path, body);
  if (r.status < 200 || r.status > 299) {
    throw std::runtime_error(fmt::format("fhir peer: {} {}: {} {}", method, path, r.status, r.body));
  }
  return r;
}

json FhirPeer::Seed(const json& bundle) {
  const Response r = Control("POST", "/_peer/seed", bundle.dump());
  if (r.status != 200) throw std::runtime_error(fmt::format("fhir peer: seeding refused: {} {}", r.status, r.body));
  return json::parse(r.body);
}

std::vector<json> FhirPeer::Calls() {
  const json calls = json::parse(ControlOk("GET", "/_peer/calls").body);
  return std::vector<json>(calls.begin(), calls.end());
}

std::vector<json> FhirPeer::CallsTo(std::string method, std::string path_prefix) {
  std::vector<json> out;
  for (auto& call : Calls()) {
    if (!method.empty() && call.value("method", "") != method) continue;
    if (call.value("path", "").rfind(path_prefix, 0) != 0) continue;
    out.push_back(std::move(call));
  }
  return out;
}

void FhirPeer::ClearCalls() { ControlOk("DELETE", "/_peer/calls"); }

void FhirPeer::FailNext(int count, int status, int retry_after, std::string path_prefix, std::string code,
                        std::string text) {
  json body{{"count", count}, {"status", status}, {"path_prefix", path_prefix}};
  if (retry_after >= 0) body["retry_after"] = retry_after;
  if (!code.empty()) body["code"] = code;
  if (!text.empty()) body["text"] = text;
  ControlOk("POST", "/_peer/fail", body.dump());
}

void FhirPeer::BumpBeforeNextPatch(std::string reference) {
  ControlOk("POST", "/_peer/bump-before-next-patch", json{{"resource", reference}}.dump());
}

void FhirPeer::ExpireTokens() { ControlOk("POST", "/_peer/expire-tokens"); }

void FhirPeer::Delay(std::chrono::milliseconds delay) {
  ControlOk("POST", "/_peer/delay", json{{"ms", delay.count()}}.dump());
}

json FhirPeer::Read(std::string reference) {
  return json::parse(ControlOk("GET", "/_peer/read/" + reference).body);
}

}  // namespace rightsd::test
