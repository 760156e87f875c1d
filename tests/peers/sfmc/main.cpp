// sfmc_peer: the Marketing Cloud simulator as a program of its own, for the demo (scripts/run).
//   sfmc_peer [--port N] [--queued-polls K] [--in-process-polls K] [--queued-seconds S --in-process-seconds S]
//             [--client-secret-out FILE] [--contact KEY=EMAIL]... [--suppression-de KEY]
// Serves on 127.0.0.1 until SIGTERM or SIGINT. Configure the sfmc connector with auth_base_url = the printed URL,
// client_id as printed, and client_secret_file = the file written by --client-secret-out. --suppression-de adds a
// data extension with the primary key SubscriberKey.
#include <signal.h>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "peers/sfmc/sfmc_peer.h"

namespace {

int Usage() {
  std::cerr << "usage: sfmc_peer [--port N] [--queued-polls K] [--in-process-polls K]\n"
               "                 [--queued-seconds S --in-process-seconds S] [--client-secret-out FILE]\n"
               "                 [--contact KEY=EMAIL]... [--suppression-de KEY]\n";
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
  rightsd::test::SfmcPeerOptions options;
  std::string secret_out;
  std::vector<std::pair<std::string, std::string>> contacts;
  std::vector<std::string> data_extensions;
  std::optional<int> queued_seconds, in_process_seconds;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string_view value = argv[++i];
    if (arg == "--port") {
      auto port = ParseInt(value, 0, 65535);
      if (!port) return Usage();
      options.port = *port;
    } else if (arg == "--queued-polls" || arg == "--in-process-polls") {
      auto polls = ParseInt(value, 0, 1000000);
      if (!polls) return Usage();
      (arg == "--queued-polls" ? options.queued_polls : options.in_process_polls) = *polls;
    } else if (arg == "--queued-seconds" || arg == "--in-process-seconds") {
      auto seconds = ParseInt(value, 0, 86400);
      if (!seconds) return Usage();
      (arg == "--queued-seconds" ? queued_seconds : in_process_seconds) = *seconds;
    } else if (arg == "--client-secret-out") {
      secret_out = value;
    } else if (arg == "--contact") {
      const auto eq = value.find('=');
      if (eq == std::string_view::npos || eq == 0) return Usage();
      contacts.emplace_back(std::string(value.substr(0, eq)), std::string(value.substr(eq + 1)));
    } else if (arg == "--suppression-de") {
      data_extensions.emplace_back(value);
    } else {
      return Usage();
    }
  }
  if (queued_seconds.has_value() != in_process_seconds.has_value()) return Usage();
  if (queued_seconds) {
    options.queued_for = std::chrono::seconds(*queued_seconds);
    options.in_process_for = std::chrono::seconds(*in_process_seconds);
  }

  // Before any thread starts, so that every thread inherits the mask and only sigwait below sees the signals.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    rightsd::test::SfmcPeer peer(options);
    if (!secret_out.empty()) peer.WriteClientSecret(secret_out);
    for (const auto& [key, email] : contacts) peer.SeedContact(key, email);
    for (const auto& key : data_extensions) peer.AddDataExtension(key, {"SubscriberKey"});
    peer.Start();
    std::cout << "sfmc peer listening on " << peer.base_url() << std::endl;
    std::cout << "sfmc auth_base_url " << peer.base_url() << " client_id " << options.client_id << std::endl;
    int received = 0;
    sigwait(&signals, &received);
    peer.Stop();
    std::cout << "sfmc peer stopped: " << peer.OperationIds().size() << " delete operations, "
              << peer.ContactCount() << " contacts left" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sfmc peer: " << e.what() << "\n";
    return 1;
  }
}
