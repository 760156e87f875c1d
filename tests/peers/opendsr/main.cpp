// opendsr_peer: the OpenDSR processor simulator as a program of its own, for the demo (scripts/run).
//   opendsr_peer [--port N] [--complete-after-polls K] [--complete-after-seconds S] [--public-key-out FILE]
//                [--certificate-out FILE] [--demo-records-for EMAIL] [--delay-ms MS]
// Serves on 127.0.0.1 until SIGTERM or SIGINT. The OpenDSR root to configure as the webhook's base_url is the
// printed URL followed by /v2.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "peers/opendsr/opendsr_peer.h"

namespace {

int Usage() {
  std::cerr << "usage: opendsr_peer [--port N] [--complete-after-polls K] [--complete-after-seconds S]\n"
               "                    [--public-key-out FILE] [--certificate-out FILE] [--demo-records-for EMAIL]\n"
               "                    [--delay-ms MS]\n";
  return 2;
}

std::optional<int> ParseInt(std::string_view text, int min, int max) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  rightsd::test::OpenDsrPeerOptions options;
  std::string public_key_out;
  std::string certificate_out;
  std::string demo_email;
  int delay_ms = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string_view value = argv[++i];
    if (arg == "--port") {
      auto port = ParseInt(value, 0, 65535);
      if (!port) return Usage();
      options.port = *port;
    } else if (arg == "--complete-after-polls") {
      auto polls = ParseInt(value, 0, 1000000);
      if (!polls) return Usage();
      options.complete_after_polls = *polls;
    } else if (arg == "--complete-after-seconds") {
      auto seconds = ParseInt(value, 0, 86400);
      if (!seconds) return Usage();
      options.complete_after = std::chrono::seconds(*seconds);
    } else if (arg == "--public-key-out") {
      public_key_out = value;
    } else if (arg == "--certificate-out") {
      certificate_out = value;
    } else if (arg == "--demo-records-for") {
      demo_email = value;
    } else if (arg == "--delay-ms") {
      // A slow processor (every API call answered this much later), for measuring the daemon with calls in flight.
      auto delay = ParseInt(value, 0, 600000);
      if (!delay) return Usage();
      delay_ms = *delay;
    } else {
      return Usage();
    }
  }

  // Before any thread starts, so that every thread inherits the mask and only sigwait below sees the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    rightsd::test::OpenDsrPeer peer(options);
    peer.SetDelay(std::chrono::milliseconds(delay_ms));
    if (!public_key_out.empty()) peer.WritePublicKeyPem(public_key_out);
    if (!certificate_out.empty()) peer.WriteCertificatePem(certificate_out);
    if (!demo_email.empty()) {
      // What the demo's access package shows: ordinary records, and an SSN the package must withhold.
      peer.SeedRecord("email", demo_email, "identifiers",
                      {{"email", demo_email}, {"name", "Jane Demo"}, {"ssn", "078-05-1120"}});
      peer.SeedRecord("email", demo_email, "internet or other electronic network activity",
                      {{"last_login", "2026-11-02T17:04:00Z"}, {"device", "iPhone"}, {"appointments_booked", 3}});
    }
    peer.Start();
    std::cout << "opendsr peer listening on http://127.0.0.1:" << peer.port() << std::endl;
    std::cout << "opendsr base_url " << peer.base_url() << std::endl;
    int received = 0;
    sigwait(&signals, &received);
    peer.Stop();
    std::cout << "opendsr peer stopped: " << peer.CreatedCount() << " requests created" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "opendsr peer: " << e.what() << "\n";
    return 1;
  }
}
