// hubspot_peer: the HubSpot simulator as a program of its own, for the demo (scripts/run).
//   hubspot_peer [--port N] [--token TOKEN] [--burst-max N] [--interval-ms MS] [--daily-max N] [--delay-ms MS]
//                [--contact EMAIL]...
// Serves on 127.0.0.1 until SIGTERM or SIGINT. Configure the printed URL as the hubspot system's base_url and put
// the token (default pat-na1-test-token) in its access_token_file. Each --contact adds a contact with that email.
#include <signal.h>

#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "peers/hubspot/hubspot_peer.h"

namespace {

int Usage() {
  std::cerr << "usage: hubspot_peer [--port N] [--token TOKEN] [--burst-max N] [--interval-ms MS] [--daily-max N]\n"
               "                    [--delay-ms MS] [--contact EMAIL]...\n";
  return 2;
}

std::optional<long long> ParseInt(std::string_view text, long long min, long long max) {
  if (text.empty() || text.size() > 12) return std::nullopt;
  long long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  rightsd::test::HubspotPeerOptions options;
  std::vector<std::string> contacts;
  long long delay_ms = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string_view value = argv[++i];
    std::optional<long long> n;
    if (arg == "--port" && (n = ParseInt(value, 0, 65535))) {
      options.port = static_cast<int>(*n);
    } else if (arg == "--token" && !value.empty()) {
      options.token = value;
    } else if (arg == "--burst-max" && (n = ParseInt(value, 1, 100000))) {
      options.burst_max = static_cast<int>(*n);
    } else if (arg == "--interval-ms" && (n = ParseInt(value, 1, 3600000))) {
      options.interval = std::chrono::milliseconds(*n);
    } else if (arg == "--daily-max" && (n = ParseInt(value, 1, 1000000000))) {
      options.daily_max = *n;
    } else if (arg == "--delay-ms" && (n = ParseInt(value, 0, 60000))) {
      delay_ms = *n;
    } else if (arg == "--contact" && !value.empty()) {
      contacts.emplace_back(value);
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
    rightsd::test::HubspotPeer peer(options);
    peer.SetDelay(std::chrono::milliseconds(delay_ms));
    int n = 0;
    for (const auto& email : contacts) {
      ++n;
      peer.AddContact({{"email", email}, {"firstname", "Demo"}, {"lastname", "Contact " + std::to_string(n)},
                       {"lifecyclestage", "subscriber"}});
    }
    peer.Start();
    std::cout << "hubspot peer listening on " << peer.base_url() << std::endl;
    int received = 0;
    sigwait(&signals, &received);
    peer.Stop();
    const auto stats = peer.Stats();
    std::cout << "hubspot peer stopped: " << stats.accepted << " calls, " << peer.ContactCount() << " contacts left, "
              << stats.refused_burst + stats.refused_secondly + stats.refused_daily << " refused for rate limits"
              << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "hubspot peer: " << e.what() << "\n";
    return 1;
  }
}
