#include "server/api/oip_engine.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/admin/metrics.h"

namespace sluice::server {

struct OipEngine::ModelStats {
  uint64_t success_count = 0;
  uint64_t success_ns = 0;
  uint64_t fail_count = 0;
  uint64_t fail_ns = 0;
  uint64_t last_inference_ms = 0;
};

struct OipEngine::Stats {
  absl::Mutex mu;
  std::map<std::string, ModelStats> models ABSL_GUARDED_BY(mu);
};

OipEngine::OipEngine(ServiceContext context)
    : context_(context), table_(std::make_shared<Table>()), stats_(std::make_shared<Stats>()) {}

OipEngine::~OipEngine() {
  std::vector<std::shared_ptr<OipSequence>> live;
  {
    absl::MutexLock lock(&table_->mu);
    for (auto& [raw, weak] : table_->live) {
      if (auto sequence = weak.lock()) live.push_back(std::move(sequence));
    }
    table_->live.clear();
    table_->by_id.clear();
  }
  for (auto& sequence : live) sequence->Abandon();
}

absl::StatusOr<ServedModel*> OipEngine::FindModel(const std::string& name,
                                                  const std::string& version) const {
  ServedModel* model = context_.repository->Find(name);
  if (model == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  if (!version.empty() && version != kOipModelVersion) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version,
                                            "' (sluice serves version ", kOipModelVersion, ")"));
  }
  return model;
}

bool OipEngine::ServerReady() const {
  if (context_.draining != nullptr && context_.draining->load()) return false;
  for (ServedModel* model : context_.repository->models()) {
    if (model->ready()) return true;
  }
  return false;
}

OipReply OipEngine::Counted(const std::string& model, OipReply reply) {
  const absl::Time start = absl::Now();
  return [stats = stats_, metrics = context_.metrics, model, start,
          reply = std::move(reply)](absl::StatusOr<inference::ModelInferResponse> result) {
    const absl::Time end = absl::Now();
    const auto ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(end - start));
    {
      absl::MutexLock lock(&stats->mu);
      ModelStats& s = stats->models[model];
      if (result.ok()) {
        ++s.success_count;
        s.success_ns += ns;
      } else {
        ++s.fail_count;
        s.fail_ns += ns;
      }
      s.last_inference_ms = static_cast<uint64_t>(absl::ToUnixMillis(end));
    }
    if (!result.ok() && metrics != nullptr) metrics->CountError(result.status().code());
    reply(std::move(result));
  };
}

absl::StatusOr<std::shared_ptr<OipSequence>> OipEngine::OpenSequence(
    ServedModel* model, const OipSequenceParams& params, const std::string& key) {
  if (context_.draining != nullptr && context_.draining->load()) {
    return absl::UnavailableError("the server is shutting down");
  }
  absl::StatusOr<std::string> id =
      context_.registry->Admit(model->name, model->config.max_sessions(), &model->sessions_active);
  if (!id.ok()) return id.status();
  std::weak_ptr<Table> weak_table = table_;
  auto on_end = [weak_table, key](OipSequence* sequence) {
    std::shared_ptr<Table> table = weak_table.lock();
    if (table == nullptr) return;
    std::shared_ptr<OipSequence> dropped;  // Destroyed after the lock is released.
    absl::MutexLock lock(&table->mu);
    table->live.erase(sequence);
    if (key.empty()) return;
    auto it = table->by_id.find(key);
    if (it != table->by_id.end() && it->second.get() == sequence) {
      dropped = std::move(it->second);
      table->by_id.erase(it);
    }
  };
  std::shared_ptr<OipSequence> sequence =
      OipSequence::Open(context_, model, *std::move(id), params, std::move(on_end));
  absl::MutexLock lock(&table_->mu);
  table_->live[sequence.get()] = sequence;
  return sequence;
}

bool OipEngine::Infer(const inference::ModelInferRequest& request, OipReply reply, OipNotice notice,
                      std::function<void()> resume) {
  absl::StatusOr<ServedModel*> found = FindModel(request.model_name(), request.model_version());
  if (!found.ok()) {
    if (context_.metrics != nullptr) context_.metrics->CountError(found.status().code());
    reply(found.status());
    return true;
  }
  ServedModel* model = *found;
  reply = Counted(model->name, std::move(reply));
  if (!model->ready()) {
    reply(absl::UnavailableError(
        absl::StrCat("model ", model->name, " is not ready: ", model->load_status.message())));
    return true;
  }
  absl::StatusOr<OipSequenceParams> params = ParseSequenceParams(request);
  if (!params.ok()) {
    reply(params.status());
    return true;
  }
  absl::StatusOr<OipDecoded> decoded = DecodeInferRequest(request, model->name, *model->program);
  if (!decoded.ok()) {
    reply(decoded.status());
    return true;
  }
  OipRequest item;
  item.id = request.id();
  item.frames = std::move(decoded->frames);
  item.outputs = std::move(decoded->outputs);
  item.reply = std::move(reply);
  item.notice = std::move(notice);

  std::shared_ptr<OipSequence> sequence;
  if (!params->has_id) {
    // A whole sequence in one request.
    if (item.frames.empty()) {
      item.reply(absl::InvalidArgumentError(
          "a request without sequence_id is a whole sequence and needs at least one frame"));
      return true;
    }
    absl::StatusOr<std::shared_ptr<OipSequence>> opened = OpenSequence(model, *params, "");
    if (!opened.ok()) {
      item.reply(opened.status());
      return true;
    }
    item.end = true;
    return (*opened)->Submit(std::move(item), std::move(resume));
  }

  const std::string key = absl::StrCat(model->name, "\n", params->Key());
  if (params->start) {
    absl::StatusOr<std::shared_ptr<OipSequence>> opened = OpenSequence(model, *params, key);
    if (!opened.ok()) {
      item.reply(opened.status());
      return true;
    }
    sequence = *opened;
    std::shared_ptr<OipSequence> replaced;
    {
      absl::MutexLock lock(&table_->mu);
      std::shared_ptr<OipSequence>& slot = table_->by_id[key];
      replaced = std::exchange(slot, params->end ? nullptr : sequence);
      if (params->end) table_->by_id.erase(key);
    }
    if (replaced != nullptr) replaced->End();
  } else {
    absl::MutexLock lock(&table_->mu);
    auto it = table_->by_id.find(key);
    if (it != table_->by_id.end()) {
      sequence = it->second;
      // The id is free as soon as its end is queued.
      if (params->end) table_->by_id.erase(it);
    }
  }
  if (sequence == nullptr) {
    item.reply(absl::InvalidArgumentError(
        absl::StrCat("sequence_id ", params->Display(), " is not active on model ", model->name,
                     "; send sequence_start to begin a sequence")));
    return true;
  }
  item.end = params->end;
  return sequence->Submit(std::move(item), std::move(resume));
}

absl::StatusOr<inference::ModelStatisticsResponse> OipEngine::Statistics(
    const std::string& name) const {
  std::vector<ServedModel*> models;
  if (name.empty()) {
    models = context_.repository->models();
  } else {
    ServedModel* model = context_.repository->Find(name);
    if (model == nullptr) return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
    models.push_back(model);
  }
  inference::ModelStatisticsResponse response;
  absl::MutexLock lock(&stats_->mu);
  for (ServedModel* model : models) {
    ModelStats s;
    if (auto it = stats_->models.find(model->name); it != stats_->models.end()) s = it->second;
    auto* out = response.add_model_stats();
    out->set_name(model->name);
    out->set_version(kOipModelVersion);
    out->set_last_inference(s.last_inference_ms);
    out->set_inference_count(s.success_count);
    out->set_execution_count(s.success_count);
    auto* infer = out->mutable_inference_stats();
    infer->mutable_success()->set_count(s.success_count);
    infer->mutable_success()->set_ns(s.success_ns);
    infer->mutable_fail()->set_count(s.fail_count);
    infer->mutable_fail()->set_ns(s.fail_ns);
    // sluice does not split a request's time into queue / compute phases; report it as compute.
    infer->mutable_compute_infer()->set_count(s.success_count);
    infer->mutable_compute_infer()->set_ns(s.success_ns);
    infer->mutable_queue()->set_count(s.success_count);
    infer->mutable_compute_input()->set_count(s.success_count);
    infer->mutable_compute_output()->set_count(s.success_count);
  }
  return response;
}

}  // namespace sluice::server
