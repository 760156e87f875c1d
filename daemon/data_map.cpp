#include "data_map.h"

#include <regex>

#include <fmt/format.h>

namespace rightsd {

using connectors::TaskAction;

TaskAction ActionFor(RequestType type, const std::string& on_delete) {
  switch (type) {
    case RequestType::kAccess: return TaskAction::kAccess;
    case RequestType::kCorrect: return TaskAction::kCorrect;
    case RequestType::kOptOut: return TaskAction::kOptOut;
    case RequestType::kLimit: return TaskAction::kLimit;
    case RequestType::kDelete:
      if (on_delete == "retain") return TaskAction::kLocate;
      if (on_delete == "deidentify") return TaskAction::kDeidentify;
      return TaskAction::kDelete;
  }
  return TaskAction::kAccess;
}

DataMap DataMap::Build(const Config& config, connectors::HttpClient* http, const OutboundPolicy* outbound) {
  DataMap map;
  static const std::regex kName("^[a-z][a-z0-9_-]{0,62}$");
  std::set<std::string> names;
  for (const auto& sys : config.systems) {
    auto fail = [&](const std::string& what) {
      throw ConfigError(fmt::format("{}: system {}: {}", config.file.string(), sys.name, what));
    };
    if (!std::regex_match(sys.name, kName)) fail("name must be lower-case letters, digits, '-' or '_'");
    if (!names.insert(sys.name).second) fail("the name is used twice");
    const auto* type = connectors::FindConnectorType(sys.connector);
    if (!type) fail(fmt::format("unknown connector type '{}'", sys.connector));
    SystemPlan plan;
    plan.name = sys.name;
    plan.connector_type = sys.connector;
    plan.categories = sys.categories;
    plan.on_delete = sys.on_delete;
    plan.retain_basis = sys.retain_basis;
    plan.max_concurrency = sys.max_concurrency;
    plan.rate_per_second = sys.rate_per_second;
    plan.burst = sys.burst;
    plan.max_attempts = sys.max_attempts;
    for (const auto& t : sys.request_types) {
      auto parsed = ParseRequestType(t);
      if (!parsed) fail(fmt::format("request_types: unknown request type '{}'", t));
      plan.request_types.insert(*parsed);
    }
    if (outbound && sys.settings.is_object()) {
      for (const auto& [key, value] : sys.settings.items()) {
        if (!key.ends_with("_url") || key == "callback_url" || !value.is_string()) continue;
        if (auto refused = outbound->Check(value.get<std::string>())) fail(fmt::format("settings.{}: {}", key, *refused));
      }
    }
    connectors::ConnectorEnv env{sys.name, config.file.parent_path(), http, sys.categories};
    try {
      connectors::ValidateSettings(*type, sys.name, sys.settings);
      plan.connector = std::shared_ptr<connectors::Connector>(type->make(sys.settings, env));
    } catch (const connectors::ConnectorConfigError& e) {
      throw ConfigError(fmt::format("{}: {}", config.file.string(), e.what()));
    }
    for (RequestType t : plan.request_types) {
      const TaskAction action = ActionFor(t, plan.on_delete);
      if (!plan.connector->Supports(action)) {
        fail(fmt::format("connector {} cannot {} (needed for {} requests); remove {} from request_types",
                         sys.connector, connectors::ToString(action), ToString(t), ToString(t)));
      }
    }
    map.systems_.push_back(std::move(plan));
  }
  return map;
}

std::vector<PlannedTask> DataMap::Plan(RequestType type) const {
  std::vector<PlannedTask> out;
  for (const auto& sys : systems_) {
    if (sys.request_types.count(type)) out.push_back(PlannedTask{&sys, ActionFor(type, sys.on_delete)});
  }
  return out;
}

const SystemPlan* DataMap::Find(const std::string& name) const {
  for (const auto& sys : systems_) {
    if (sys.name == name) return &sys;
  }
  return nullptr;
}

}  // namespace rightsd
