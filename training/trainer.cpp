// trainer.cpp: the training loop, validation, checkpoints and progress output.
#include "training/trainer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "core/gpu_capability.h"
#include "core/interrupt.h"
#include "core/philox.h"
#include "core/random.h"
#include "core/tokens.h"
#include "nn/state.h"
#include "ops/grad_norm.h"
#include "training/memory_model.h"
#include "training/sample_preview.h"
#include "training/schedule.h"

namespace iflame {

namespace {
void on_stop_signal(int) { g_stop_requested = true; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = static_cast<long>(seconds);
  char buf[32];
  if (s >= 3600) snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

int64_t count_non_pad(const Tensor& tokens) {
  const int32_t* p = tokens.data<int32_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < tokens.numel(); i++) n += p[i] != kPadToken;
  return n;
}
}  // namespace

void install_stop_signal_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

int64_t resume_batch_in_epoch(int64_t saved_batch, int64_t saved_global_batch, int64_t global_batch,
                              int64_t batches_in_epoch) {
  if (saved_global_batch == global_batch) return std::min(saved_batch, batches_in_epoch);
  const int64_t meshes = saved_batch * saved_global_batch;
  return std::min((meshes + global_batch - 1) / global_batch, batches_in_epoch);
}

Trainer::Trainer(const TrainConfig& config, std::shared_ptr<Communicator> comm)
    : config_(config), comm_(comm ? std::move(comm) : std::make_shared<LocalCommunicator>()) {
  const int world = comm_->world_size();
  if (!is_root()) config_.quiet = true;  // one progress line per run, from rank 0
  // Device and precision.
  device_ = config_.resolved_device();
  matmul_ = config_.resolved_matmul(device_);
  const ForwardContext forward_ctx = config_.forward_context(device_);
  const std::string precision = forward_ctx.matmul == DType::F32 ? "f32"
                                : forward_ctx.activations == DType::BF16 ? "bf16 (products and block activations)"
                                                                         : "bf16 products";
  IFLAME_REQUIRE(comm_->supports(device_), "data-parallel training over ", comm_->describe(), " needs --device cuda");
  if (device_ == Device::CPU && config_.model == "shapenet" && config_.init_from.empty() && config_.resume.empty())
    IFLAME_REJECT("the published shapenet model (75.7M parameters) needs a GPU (", cuda_unavailable_reason(),
                  "). Pick a smaller one: --model small or --model tiny");

  // Data.
  dataset_ = std::make_unique<MeshDataset>(config_.dataset, config_.max_faces);
  train_indices_ = dataset_->indices("train");
  val_indices_ = dataset_->indices("val");
  if (!dataset_->has_sidecar() || val_indices_.empty()) {
    // No validation split recorded: hold out --val-fraction of the meshes, each
    // chosen by a fixed draw of its own (the same whatever the seed or world size).
    train_indices_.clear();
    val_indices_.clear();
    for (int64_t i : dataset_->indices("")) {
      bool held_out = philox_unit_float(philox_draw(0x7661l, 0, static_cast<uint64_t>(i)).v[0]) < config_.val_fraction;
      (held_out ? val_indices_ : train_indices_).push_back(i);
    }
  }
  if (config_.render_samples < 0) config_.render_samples = device_ == Device::CUDA ? 4 : 0;
  IFLAME_REQUIRE(!train_indices_.empty(), config_.dataset, ": no usable training meshes");
  LoaderOptions lo;
  lo.batch_size = config_.batch_size;
  lo.seed = config_.seed;
  lo.augment = config_.augment;
  lo.bucket_window = config_.bucket_window;
  lo.threads = config_.loader_threads;
  lo.rank = comm_->rank();
  lo.world_size = world;
  loader_ = std::make_unique<Loader>(*dataset_, train_indices_, lo);
  loader_->start_epoch(0);
  batches_per_epoch_ = loader_->batches_in_epoch();
  IFLAME_REQUIRE(batches_per_epoch_ > 0, config_.dataset, ": not enough meshes for one batch");
  total_steps_ = config_.steps > 0 ? config_.steps : batches_per_epoch_ * config_.epochs;

  // Model and optimizer.
  // --init-from and --resume take the model's shape from their checkpoint;
  // otherwise --model names a preset, initialised from --seed.
  CheckpointData resumed;
  if (!config_.init_from.empty()) {
    model_ = load_model(config_.init_from, device_);
    model_label_ = "weights of " + config_.init_from;
  } else if (!config_.resume.empty()) {
    resumed = load_checkpoint(config_.resume);
    model_ = std::make_unique<IFlame>(config_from_checkpoint(resumed, config_.resume), device_);
    if (const std::string* saved = resumed.find_meta("train.model")) model_label_ = *saved;
  } else {
    model_ = std::make_unique<IFlame>(IFlameConfig::preset(config_.model), device_);
    model_label_ = config_.model;
    Generator gen(config_.seed);
    model_->init(gen);
  }
  OptimizerConfig oc;
  oc.lr = config_.lr;
  oc.weight_decay = config_.weight_decay;
  oc.ns_dtype = config_.muon_ns_dtype(device_);
  optimizer_ = std::make_unique<MuonAdamW>(model_->parameters(), oc);
  recompute_ = config_.resolved_recompute(device_, model_->config());
  if (!config_.resume.empty()) resume_from(resumed, config_.resume);
  {  // every rank starts from rank 0's parameters and optimizer state
    std::vector<Tensor> state;
    for (auto& kv : model_->parameters().items()) state.push_back(kv.second.mutable_value());
    for (auto& slot : optimizer_->slots())
      for (Tensor* t : {&slot.momentum, &slot.moment1, &slot.moment2})
        if (t->defined()) state.push_back(*t);
    comm_->broadcast(state, 0);
  }

  // The run folder, claimed once the inputs have loaded and before anything is
  // written (training/run_folder.h).
  if (is_root()) {
    run_folder_ = RunFolder(config_.run_dir(), config_.name.empty(), !config_.resume.empty());
    if (run_folder_.renamed())
      std::fprintf(stderr, "train: %s already holds a run; this run goes to %s\n", config_.run_dir().c_str(),
                   run_folder_.path().c_str());
    const std::filesystem::path claimed(run_folder_.path());
    config_.out_dir = claimed.parent_path().string();
    config_.name = claimed.filename().string();
    if (!config_.resume.empty()) {
      const int64_t dropped = run_folder_.prepare_resume(step_);
      if (dropped > 0)
        std::fprintf(stderr, "train: dropped %lld rows of steps after %lld from %s/log.jsonl\n",
                     static_cast<long long>(dropped), static_cast<long long>(step_), config_.run_dir().c_str());
    }
    std::string log_path = config_.run_dir() + "/log.jsonl";
    log_ = std::fopen(log_path.c_str(), "a");
    IFLAME_REQUIRE(log_, "cannot open ", log_path, " for appending: ", std::strerror(errno));
  }

  if (!config_.quiet) {
    const std::string cpu_note = cuda_available() ? "" : " (" + cuda_unavailable_reason() + ")";
    std::printf("device    %s\n", device_ == Device::CUDA ? cuda_device_description().c_str() : ("cpu" + cpu_note).c_str());
    if (device_ == Device::CUDA) std::printf("gpu paths %s\n", gpu_paths_description().c_str());
    std::printf("model     %s (%s), %.2fM parameters, %s matrix products, recompute %s\n", model_label_.c_str(),
                model_->config().describe().c_str(), model_->parameters().count() / 1e6, precision.c_str(),
                recompute_label(recompute_, config_.forward_context(device_).ffn_recompute_blocks).c_str());
    std::printf("data      %s: %zu training meshes, %zu validation meshes, %lld batches of %d per epoch\n",
                config_.dataset.c_str(), train_indices_.size(), val_indices_.size(),
                static_cast<long long>(batches_per_epoch_), config_.batch_size * world);
    if (world > 1)
      std::printf("parallel  %d processes (%s), %d meshes per process and step\n", world,
                  comm_->describe().c_str(), config_.batch_size);
    for (const auto& [reason, n] : dataset_->skipped())
      std::printf("          skipped %lld meshes: %s\n", static_cast<long long>(n), reason.c_str());
    // What a batch of the longest mesh holds (long meshes, issue 25: 4,000 faces are 36,018 tokens).
    ForwardContext memory_ctx = config_.forward_context(device_);
    memory_ctx.recompute = recompute_;
    const int faces = longest_training_faces();
    const int64_t longest = int64_t{faces + 2} * kTokensPerFace;
    std::printf("memory    about %.2f GiB per step at %d x %lld tokens (the longest training mesh, %d faces; "
                "recompute %s; ./train --estimate-memory compares the choices)\n",
                estimate_training_memory(model_->config(), config_.batch_size, longest, memory_ctx).total() /
                    double(1ull << 30),
                config_.batch_size, static_cast<long long>(longest), faces,
                recompute_label(recompute_, memory_ctx.ffn_recompute_blocks).c_str());
    std::printf("run       %s, steps %lld -> %lld\n", config_.run_dir().c_str(), static_cast<long long>(step_),
                static_cast<long long>(total_steps_));
    std::fflush(stdout);
  }
}

Trainer::~Trainer() {
  if (log_) std::fclose(log_);
}

void Trainer::log_json(const std::string& line) {
  if (!log_) return;  // ranks other than 0 keep no log
  std::fprintf(log_, "%s\n", line.c_str());
  std::fflush(log_);
}

Batch Trainer::next_batch() {
  Batch b;
  while (!loader_->next(b)) {
    epoch_++;
    batch_in_epoch_ = 0;
    loader_->start_epoch(epoch_);
  }
  batch_in_epoch_++;
  return b;
}

void Trainer::save(const std::string& file_name) {
  if (!is_root()) return;  // every rank holds the same state; rank 0 writes it
  CheckpointData ck;
  ck.meta.push_back({"kind", "iflame-train"});
  add_model_to_checkpoint(*model_, ck);
  optimizer_->add_to_checkpoint(ck);
  ck.meta.push_back({"train.model", model_label_});
  ck.meta.push_back({"train.step", std::to_string(step_)});
  ck.meta.push_back({"train.total_steps", std::to_string(total_steps_)});
  ck.meta.push_back({"train.epoch", std::to_string(epoch_)});
  ck.meta.push_back({"train.batch_in_epoch", std::to_string(batch_in_epoch_)});
  ck.meta.push_back({"train.seed", std::to_string(config_.seed)});
  ck.meta.push_back({"train.batch_size", std::to_string(config_.batch_size)});
  ck.meta.push_back({"train.world_size", std::to_string(comm_->world_size())});
  // Position in the epoch: batch_in_epoch global batches of this many meshes.
  ck.meta.push_back({"train.global_batch", std::to_string(int64_t{config_.batch_size} * comm_->world_size())});
  ck.meta.push_back({"train.skipped_steps", std::to_string(skipped_total_)});
  ck.meta.push_back({"train.dataset", config_.dataset});
  std::string path = config_.run_dir() + "/" + file_name;
  save_checkpoint(path, ck);
  if (file_name != "last.ckpt") save_checkpoint(config_.run_dir() + "/last.ckpt", ck);
}

int Trainer::stop_and_save(bool tty) {
  if (!config_.quiet)
    std::printf("%sstopping at step %lld: saving %s\n", tty ? "\n" : "", static_cast<long long>(step_),
                last_checkpoint().c_str());
  save("last.ckpt");
  return 0;
}

int Trainer::longest_training_faces() const {
  int faces = 0;
  for (int64_t i : train_indices_) faces = std::max(faces, dataset_->faces(i));
  return faces;
}

void Trainer::check_step_time() {
  // Every preset's step takes well under a second on a GPU (docs/perf.md); --force trains unasked.
  if (device_ != Device::CPU || config_.force) return;
  const int max_faces = longest_training_faces();
  const int64_t longest = int64_t{max_faces + 2} * kTokensPerFace;  // START row, faces, END row
  ForwardContext ctx = config_.forward_context(device_);
  ctx.recompute = recompute_;
  step_estimate_ = estimate_step_time(*model_, ctx, config_.batch_size, longest);
  if (step_estimate_.seconds > kMaxStepSeconds) throw Error(step_too_slow_message(step_estimate_, "this CPU"));
  if (!config_.quiet) {
    std::printf("estimate  about %.3g s per step of %lld x %lld tokens (the longest training mesh: %d faces)\n",
                step_estimate_.seconds, static_cast<long long>(step_estimate_.batch),
                static_cast<long long>(step_estimate_.length), max_faces);
    std::fflush(stdout);
  }
}

void Trainer::resume_from(const CheckpointData& ck, const std::string& path) {
  const std::string* kind = ck.find_meta("kind");
  IFLAME_REQUIRE(kind && *kind == "iflame-train", path, ": not a training checkpoint (no optimizer state)");
  std::vector<std::pair<std::string, Tensor>> params;
  for (const auto& [name, t] : ck.tensors)
    if (name.rfind("param/", 0) == 0) params.push_back({name.substr(6), t});
  load_parameters(*model_, params, path);
  optimizer_->load_from_checkpoint(ck, path);
  auto num = [&](const char* key) { return ck.meta_integer(key, path, 0); };
  const std::string* saved_dataset = ck.find_meta("train.dataset");
  if (saved_dataset && *saved_dataset != config_.dataset && is_root())
    std::fprintf(stderr, "train: warning: %s was trained on %s; this run continues it on %s\n", path.c_str(),
                 saved_dataset->c_str(), config_.dataset.c_str());
  IFLAME_REQUIRE(num("train.seed") == static_cast<long long>(config_.seed), path, ": checkpoint was trained with --seed ",
               num("train.seed"), ", not ", config_.seed, " (the data order would differ)");
  // Checkpoints from before data parallelism: one process, global batch = batch.
  const int64_t saved_global =
      ck.find_meta("train.global_batch") ? num("train.global_batch") : num("train.batch_size");
  const int64_t global = int64_t{config_.batch_size} * comm_->world_size();
  step_ = num("train.step");
  if (config_.steps == 0) total_steps_ = num("train.total_steps");  // the schedule stays the saved one
  epoch_ = num("train.epoch");
  batch_in_epoch_ = resume_batch_in_epoch(num("train.batch_in_epoch"), saved_global, global, batches_per_epoch_);
  skipped_total_ = num("train.skipped_steps");
  if (saved_global != global && is_root() && !config_.quiet)
    std::printf("resume    global batch %lld -> %lld: epoch %lld continues at batch %lld of %lld (after %lld meshes)\n",
                static_cast<long long>(saved_global), static_cast<long long>(global), static_cast<long long>(epoch_),
                static_cast<long long>(batch_in_epoch_), static_cast<long long>(batches_per_epoch_),
                static_cast<long long>(num("train.batch_in_epoch") * saved_global));
  loader_->start_epoch(epoch_, batch_in_epoch_);
}

Trainer::ValidationResult Trainer::validate() {
  ValidationResult r;
  if (val_indices_.empty()) return r;
  LoaderOptions lo;
  lo.batch_size = config_.batch_size;
  lo.seed = config_.seed;
  lo.shuffle = false;
  lo.augment = false;
  lo.threads = config_.loader_threads;
  lo.rank = comm_->rank();  // each rank evaluates its share; the sums are reduced
  lo.world_size = comm_->world_size();
  Loader val(*dataset_, val_indices_, lo);
  val.start_epoch(0);
  NoGrad no_grad;
  const ForwardContext ctx = config_.forward_context(device_);
  double loss_sum = 0, correct = 0;
  int64_t counted = 0;
  Batch b;
  for (int n = 0; (config_.val_batches == 0 || n < config_.val_batches) && val.next(b); n++) {
    IFlame::LossOutput out = model_->loss(b.tokens, ctx);
    double c = out.counted.item();
    loss_sum += out.loss.value().item() * c;
    correct += out.accuracy.item() * c;
    counted += static_cast<int64_t>(c);
  }
  std::vector<double> sums{loss_sum, correct, static_cast<double>(counted)};
  comm_->all_reduce_sum(sums);
  loss_sum = sums[0];
  correct = sums[1];
  counted = static_cast<int64_t>(sums[2]);
  if (counted == 0) return r;
  r.loss = loss_sum / counted;
  r.accuracy = correct / counted;
  r.perplexity = std::exp(r.loss);
  r.tokens = counted;
  return r;
}

int Trainer::run() {
  using clock = std::chrono::steady_clock;
  const bool tty = isatty(fileno(stdout)) && !config_.quiet;
  ForwardContext ctx = config_.forward_context(device_);
  ctx.recompute = recompute_;
  int consecutive_bad = 0;
  auto run_start = clock::now();
  auto window_start = clock::now();
  int64_t window_tokens = 0, window_useful = 0, window_steps = 0, start_step = step_;
  double window_loss = 0, window_acc = 0;
  int exit_code = 0;
  // Work a stop request may cut short; several processes stop together between steps instead.
  const bool interruptible = comm_->world_size() == 1;
  auto drop_unfinished_work = [&] {
    tape().clear();
    model_->zero_grad();
  };
  try {
    InterruptibleScope scope(interruptible);
    check_step_time();
  } catch (const Interrupted&) {
    drop_unfinished_work();
    return stop_and_save(tty);
  }

  while (step_ < total_steps_) {
    const bool out_of_time = config_.time_limit_s > 0 &&
                             std::chrono::duration<double>(clock::now() - run_start).count() > config_.time_limit_s;
    bool stop = g_stop_requested || out_of_time || (stop_at_step_ >= 0 && step_ >= stop_at_step_);
    if (comm_->world_size() > 1) stop = comm_->any(stop);  // all ranks stop at the same step
    if (stop) return stop_and_save(tty);
    const int64_t epoch_before = epoch_, batch_before = batch_in_epoch_;
    Batch batch = next_batch();
    const float lr = learning_rate(step_, total_steps_, config_.lr, config_.min_lr, config_.warmup_fraction);
    IFlame::LossOutput out;
    try {  // a stop request here drops this step: its batch is trained after a resume
      InterruptibleScope scope(interruptible);
      model_->zero_grad();
      out = model_->loss(batch.tokens, ctx);
      tape().backward(out.loss);
    } catch (const Interrupted&) {
      drop_unfinished_work();
      epoch_ = epoch_before;
      batch_in_epoch_ = batch_before;
      return stop_and_save(tty);
    }
    std::vector<Tensor> grads;
    for (auto& kv : model_->parameters().items())
      if (kv.second.grad().defined()) grads.push_back(kv.second.grad());
    // The loss is a mean over this rank's counted tokens; the global batch's loss is
    // the mean over all of them, so rank r's gradient enters the sum with weight
    // counted_r / counted. Figures for the log are summed the same way.
    const double counted = out.counted.item();
    std::vector<double> sums{counted, out.loss.value().item() * counted, out.accuracy.item() * counted,
                             static_cast<double>(batch.tokens.numel()),
                             static_cast<double>(count_non_pad(batch.tokens))};
    comm_->all_reduce_sum(sums);
    // (One process: the weight is exactly 1 and the local communicator does nothing.)
    comm_->all_reduce_sum(grads, static_cast<float>(counted / sums[0]));
    float grad_norm = ops::clip_grad_norm(grads, config_.grad_clip).item();
    const float loss = static_cast<float>(sums[1] / sums[0]), accuracy = static_cast<float>(sums[2] / sums[0]);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm)) {
      skipped_total_++;
      consecutive_bad++;
      log_json(str("{\"step\": ", step_, ", \"skipped\": true, \"loss\": \"", loss, "\", \"grad_norm\": \"",
                   grad_norm, "\"}"));
      if (is_root())
        std::fprintf(stderr, "%sstep %lld: non-finite loss %g or gradient norm %g: step skipped (%d in a row)\n",
                     tty ? "\n" : "", static_cast<long long>(step_), loss, grad_norm, consecutive_bad);
      if (consecutive_bad >= config_.max_bad_steps) {
        bool have_checkpoint = access(last_checkpoint().c_str(), R_OK) == 0;
        if (is_root()) std::fprintf(stderr, "giving up after %d consecutive non-finite steps; %s (try a lower --lr)\n",
                     consecutive_bad,
                     have_checkpoint ? ("the last good checkpoint is " + last_checkpoint()).c_str()
                                     : "no checkpoint was written before the failure");
        exit_code = 1;
        break;
      }
      continue;
    }
    consecutive_bad = 0;
    optimizer_->step(lr);
    step_++;

    window_tokens += static_cast<int64_t>(sums[3]);  // over all ranks
    window_useful += static_cast<int64_t>(sums[4]);
    window_steps++;
    window_loss += loss;
    window_acc += accuracy;
    if (step_ % config_.log_interval == 0 || step_ == total_steps_) {
      double secs = std::chrono::duration<double>(clock::now() - window_start).count();
      double total_secs = std::chrono::duration<double>(clock::now() - run_start).count();
      double tok_s = window_tokens / secs, useful_s = window_useful / secs;
      double eta = total_secs / (step_ - start_step) * (total_steps_ - step_);
      double l = window_loss / window_steps, a = window_acc / window_steps;
      log_json(str("{\"step\": ", step_, ", \"epoch\": ", epoch_, ", \"loss\": ", l, ", \"accuracy\": ", a,
                   ", \"lr\": ", lr, ", \"grad_norm\": ", grad_norm, ", \"tokens_per_s\": ", tok_s,
                   ", \"useful_tokens_per_s\": ", useful_s, ", \"elapsed_s\": ", total_secs, "}"));
      if (!config_.quiet) {
        std::printf("%sstep %lld/%lld | loss %.4f | acc %.3f | lr %.2e | %.1fk tok/s | ETA %s%s",
                    tty ? "\r" : "", static_cast<long long>(step_), static_cast<long long>(total_steps_), l, a,
                    lr, tok_s / 1e3, format_duration(eta).c_str(), tty ? "   " : "\n");
        std::fflush(stdout);
      }
      window_start = clock::now();
      window_tokens = window_useful = window_steps = 0;
      window_loss = window_acc = 0;
    }
    bool last = step_ == total_steps_;
    if ((config_.val_interval > 0 && step_ % config_.val_interval == 0) || last) {
      ValidationResult v;
      try {  // the step is complete: a stop request here skips the validation only
        InterruptibleScope scope(interruptible);
        v = validate();
      } catch (const Interrupted&) {
        drop_unfinished_work();
        return stop_and_save(tty);
      }
      if (v.tokens > 0 && is_root()) {
        log_json(str("{\"step\": ", step_, ", \"val_loss\": ", v.loss, ", \"val_accuracy\": ", v.accuracy,
                     ", \"val_perplexity\": ", v.perplexity, ", \"val_tokens\": ", v.tokens, "}"));
        if (!config_.quiet)
          std::printf("%svalidation at step %lld: loss %.4f | acc %.3f | perplexity %.2f\n", tty ? "\n" : "",
                      static_cast<long long>(step_), v.loss, v.accuracy, v.perplexity);
      }
      if (config_.render_samples > 0 && is_root()) render_sample_preview(*model_, config_, matmul_, step_);
    }
    if (step_ % config_.ckpt_interval == 0 && !last) save(str("step-", step_, ".ckpt"));
  }
  if (exit_code == 0) {
    save("final.ckpt");
    if (!config_.quiet)
      std::printf("%sdone: %lld steps (%lld skipped), checkpoint %s/final.ckpt\n", tty ? "\n" : "",
                  static_cast<long long>(step_), static_cast<long long>(skipped_total_), config_.run_dir().c_str());
  }
  return exit_code;
}

}  // namespace iflame
