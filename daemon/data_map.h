// The data map: which systems hold a consumer's data, which connector reaches each, and what each request type
// means there (e.g. a delete in the EHR is "retain" with its legal basis: the task locates the records and
// reports them as retained_exempt). Built once at start-up from [[systems]]; unknown or duplicate names, unknown
// connector types, settings that fail their schema and actions a connector cannot do stop start-up with one
// message. Immutable after Build, so safe to share between threads.
#pragma once
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "config.h"
#include "connectors/connector.h"
#include "request_model.h"
#include "url_policy.h"

namespace rightsd {

struct SystemPlan {
  std::string name;
  std::string connector_type;
  std::shared_ptr<connectors::Connector> connector;
  std::vector<std::string> categories;
  std::string on_delete;
  std::string retain_basis;
  std::set<RequestType> request_types;
  int max_concurrency = 4;
  double rate_per_second = 10;
  int burst = 10;
  int max_attempts = 8;
};

struct PlannedTask {
  const SystemPlan* system;
  connectors::TaskAction action;
};

connectors::TaskAction ActionFor(RequestType type, const std::string& on_delete);

class DataMap {
 public:
  DataMap() = default;
  // Throws ConfigError naming the system and the problem. With a policy, every URL in a system's settings (a
  // top-level key ending in _url, but callback_url: that is this daemon's own address, given to the peer) must
  // match it.
  static DataMap Build(const Config& config, connectors::HttpClient* http, const OutboundPolicy* outbound = nullptr);
  // One task per system that takes this request type, in data-map order.
  std::vector<PlannedTask> Plan(RequestType type) const;
  const SystemPlan* Find(const std::string& name) const;
  const std::vector<SystemPlan>& systems() const { return systems_; }

 private:
  std::vector<SystemPlan> systems_;
};

}  // namespace rightsd
