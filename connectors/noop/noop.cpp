#include "connectors/noop/noop.h"

namespace rightsd::connectors::noop {

namespace {

class NoopConnector final : public Connector {
 public:
  explicit NoopConnector(std::string outcome) : outcome_(std::move(outcome)) {}
  bool Supports(TaskAction) const override { return true; }
  void Run(const TaskInput& input, OutcomeCallback done) override {
    nlohmann::json receipt = {{"connector", "noop"}, {"action", ToString(input.action)}};
    if (input.action == TaskAction::kLocate) {
      Outcome o;
      o.kind = OutcomeKind::kRetainedExempt;
      receipt["retain_basis"] = input.retain_basis;
      o.receipt = receipt;
      done(std::move(o));
      return;
    }
    if (outcome_ == "not_found") {
      done(Outcome::NotFound(receipt));
      return;
    }
    Outcome o = Outcome::Done(receipt);
    if (input.action == TaskAction::kAccess) o.records = nlohmann::json::object();
    done(std::move(o));
  }

 private:
  std::string outcome_;
};

}  // namespace

std::unique_ptr<Connector> MakeNoopConnector(const nlohmann::json& settings, const ConnectorEnv&) {
  return std::make_unique<NoopConnector>(settings.value("outcome", "done"));
}

}  // namespace rightsd::connectors::noop
