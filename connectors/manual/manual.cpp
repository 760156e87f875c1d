#include "connectors/manual/manual.h"

namespace rightsd::connectors::manual {

namespace {

class ManualConnector final : public Connector {
 public:
  ManualConnector(std::string instructions, std::string assignee)
      : instructions_(std::move(instructions)), assignee_(std::move(assignee)) {}
  bool Supports(TaskAction) const override { return true; }
  void Run(const TaskInput& input, OutcomeCallback done) override {
    Outcome o;
    o.kind = OutcomeKind::kNeedsManual;
    o.message = "waiting for a person to complete the task";
    o.receipt = {{"connector", "manual"}, {"action", ToString(input.action)}, {"instructions", instructions_}};
    if (!assignee_.empty()) o.receipt["assignee"] = assignee_;
    done(std::move(o));
  }

 private:
  std::string instructions_;
  std::string assignee_;
};

}  // namespace

std::unique_ptr<Connector> MakeManualConnector(const nlohmann::json& settings, const ConnectorEnv&) {
  return std::make_unique<ManualConnector>(settings.value("instructions", ""), settings.value("assignee", ""));
}

}  // namespace rightsd::connectors::manual
