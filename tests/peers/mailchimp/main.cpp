// mailchimp_peer: the Mailchimp simulator as a program of its own, for the demo (scripts/run).
//   mailchimp_peer [--port N] [--api-key KEY] [--audience ID]... [--delay-ms MS] [--member EMAIL]...
// Serves on 127.0.0.1 until SIGTERM or SIGINT. Configure the printed URL as the mailchimp system's base_url, the
// audiences (default a1b2c3d4e5) as its audiences, and put the key (default
// 0123456789abcdef0123456789abcdef-us21) in its api_key_file. Each --member joins every audience.
#include <signal.h>

#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "peers/mailchimp/mailchimp_peer.h"

namespace {

int Usage() {
  std::cerr << "usage: mailchimp_peer [--port N] [--api-key KEY] [--audience ID]... [--delay-ms MS] [--member EMAIL]...\n";
  return 2;
}

std::optional<long long> ParseInt(std::string_view text, long long min, long long max) {
  if (text.empty() || text.size() > 9) return std::nullopt;
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
  rightsd::test::MailchimpPeerOptions options;
  std::vector<std::string> audiences;
  std::vector<std::string> members;
  long long delay_ms = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string_view value = argv[++i];
    std::optional<long long> n;
    if (arg == "--port" && (n = ParseInt(value, 0, 65535))) {
      options.port = static_cast<int>(*n);
    } else if (arg == "--api-key" && !value.empty()) {
      options.api_key = value;
    } else if (arg == "--audience" && !value.empty()) {
      audiences.emplace_back(value);
    } else if (arg == "--delay-ms" && (n = ParseInt(value, 0, 60000))) {
      delay_ms = *n;
    } else if (arg == "--member" && !value.empty()) {
      members.emplace_back(value);
    } else {
      return Usage();
    }
  }
  if (!audiences.empty()) options.audiences = audiences;

  // Before any thread starts, so that every thread inherits the mask and only sigwait below sees the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    rightsd::test::MailchimpPeer peer(options);
    peer.SetDelay(std::chrono::milliseconds(delay_ms));
    for (const auto& email : members) {
      for (const auto& list : options.audiences) peer.AddMember(list, email, {{"FNAME", "Demo"}, {"LNAME", "Member"}});
    }
    peer.Start();
    std::cout << "mailchimp peer listening on " << peer.base_url() << std::endl;
    int received = 0;
    sigwait(&signals, &received);
    peer.Stop();
    std::cout << "mailchimp peer stopped: at most " << peer.MaxInFlight() << " calls open at once, "
              << peer.TooManyConnections() << " refused as too many connections" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "mailchimp peer: " << e.what() << "\n";
    return 1;
  }
}
