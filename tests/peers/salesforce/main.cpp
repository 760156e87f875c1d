// salesforce_peer: the Salesforce org simulator as a program of its own, for the demo (scripts/run).
//   salesforce_peer [--port N] [--private-key-out FILE] [--batch-size N] [--daily-limit N] [--no-demo-data]
// Serves on 127.0.0.1 until SIGTERM or SIGINT. Configure the connector with login_url = the printed URL,
// client_id and username as printed, and private_key_file = the file written by --private-key-out. Unless
// --no-demo-data is given the org holds a few people: jane@example.com (a contact with an Individual, a lead and
// two cases), pat@example.com (a person account) and o'brien@example.com (a contact without an Individual).
#include <signal.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "peers/salesforce/salesforce_peer.h"

namespace {

int Usage() {
  std::cerr << "usage: salesforce_peer [--port N] [--private-key-out FILE] [--batch-size N] [--daily-limit N]\n"
               "                       [--no-demo-data]\n";
  return 2;
}

std::optional<long long> ParseNumber(std::string_view text, long long min, long long max) {
  if (text.empty() || text.size() > 12) return std::nullopt;
  long long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < min || value > max) return std::nullopt;
  return value;
}

void SeedDemo(rightsd::test::SalesforcePeer& peer) {
  const std::string jane_individual =
      peer.Insert("Individual", {{"FirstName", "Jane"}, {"LastName", "Doe"}, {"BirthDate", "1985-04-12"}});
  const std::string jane = peer.Insert("Contact", {{"FirstName", "Jane"},
                                                   {"LastName", "Doe"},
                                                   {"Email", "jane@example.com"},
                                                   {"Phone", "(415) 555-0100"},
                                                   {"MailingCity", "San Francisco"},
                                                   {"IndividualId", jane_individual}});
  peer.Insert("Lead", {{"FirstName", "Jane"}, {"LastName", "Doe"}, {"Email", "jane@example.com"}, {"Company", "Doe LLC"},
                       {"IndividualId", jane_individual}});
  peer.Insert("Case", {{"Subject", "Billing question"}, {"Status", "Closed"}, {"ContactId", jane}});
  peer.Insert("Case", {{"Subject", "Password reset"}, {"Status", "New"}, {"SuppliedEmail", "jane@example.com"}});
  peer.Insert("Account", {{"FirstName", "Pat"},
                          {"LastName", "Lee"},
                          {"IsPersonAccount", true},
                          {"PersonEmail", "pat@example.com"},
                          {"PersonMobilePhone", "+1 415 555 0199"}});
  peer.Insert("Contact", {{"FirstName", "Sean"}, {"LastName", "O'Brien"}, {"Email", "o'brien@example.com"}});
  peer.Insert("Contact", {{"FirstName", "Other"}, {"LastName", "Person"}, {"Email", "someone.else@example.com"}});
  peer.Insert("DataUsePurpose", {{"Name", "Sale or sharing of personal information"}});
}

}  // namespace

int main(int argc, char** argv) {
  rightsd::test::SalesforcePeerOptions options;
  std::string private_key_out;
  bool demo_data = true;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--no-demo-data") {
      demo_data = false;
      continue;
    }
    if (i + 1 >= argc) return Usage();
    const std::string_view value = argv[++i];
    if (arg == "--port") {
      auto port = ParseNumber(value, 0, 65535);
      if (!port) return Usage();
      options.port = static_cast<int>(*port);
    } else if (arg == "--private-key-out") {
      private_key_out = value;
    } else if (arg == "--batch-size") {
      auto batch = ParseNumber(value, 1, 2000);
      if (!batch) return Usage();
      options.batch_size = static_cast<int>(*batch);
    } else if (arg == "--daily-limit") {
      auto limit = ParseNumber(value, 1, 1000000000);
      if (!limit) return Usage();
      options.daily_limit = *limit;
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
    rightsd::test::SalesforcePeer peer(options);
    if (!private_key_out.empty()) peer.WritePrivateKeyPem(private_key_out);
    if (demo_data) SeedDemo(peer);
    peer.Start();
    std::cout << "salesforce peer listening on " << peer.base_url() << std::endl;
    std::cout << "salesforce login_url " << peer.base_url() << std::endl;
    std::cout << "salesforce client_id " << peer.options().consumer_key << std::endl;
    std::cout << "salesforce username " << peer.options().username << std::endl;
    int received = 0;
    sigwait(&signals, &received);
    peer.Stop();
    std::cout << "salesforce peer stopped: " << peer.ApiUsed() << " API calls counted" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "salesforce peer: " << e.what() << "\n";
    return 1;
  }
}
