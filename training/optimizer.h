// optimizer.h: Muon for the hidden 2-D weights, AdamW for the rest (spec §3).
//
// Muon takes every 2-D weight except output_proj.weight (the embedding is
// included: the reference's exclusion of "embed_tokens" matches nothing here).
// State is f32 and lives beside the parameters. The per-element arithmetic is in
// ops/optimizer_ops.h; this class decides which rule each parameter follows and
// keeps the state, in the order the reference's optimizer numbers it.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/checkpoint.h"
#include "nn/torch_checkpoint.h"

namespace iflame {

struct OptimizerConfig {
  float lr = 1e-3f;
  float weight_decay = 0.1f;
  float momentum = 0.95f;  // Muon
  int ns_steps = 5;        // Newton-Schulz iterations
  DType ns_dtype = DType::F32;
  float adam_beta1 = 0.95f, adam_beta2 = 0.95f, adam_eps = 1e-8f;
};

// True for parameters that Muon updates (as the reference: every 2-D weight
// except output_proj.weight); AdamW updates the others.
bool uses_muon(const std::string& name, const Shape& shape);
// The parameter name of each optimizer index, as the reference builds its
// optimizer: first the Muon parameters in state-dict order, then all others in
// state-dict order (how a PyTorch checkpoint's optimizer state is read,
// nn/torch_checkpoint.h).
std::vector<std::string> optimizer_param_order(const std::vector<std::pair<std::string, Shape>>& params_in_state_dict_order);

class MuonAdamW {
 public:
  MuonAdamW(ParameterList& params, const OptimizerConfig& config);

  // One update of every parameter from its gradient buffer, at learning rate lr.
  void step(float lr);

  struct Slot {
    std::string name;
    Variable param;
    bool muon = false;
    Tensor momentum;           // Muon
    Tensor moment1, moment2;   // AdamW
    int64_t step = 0;          // AdamW step count
  };
  // In the reference optimizer's index order: Muon parameters first, then AdamW,
  // each group in state-dict order.
  std::vector<Slot>& slots() { return slots_; }
  const OptimizerConfig& config() const { return config_; }

  // The Muon parameters that have a gradient, in groups of one shape up to
  // transposition (keyed by [min, max] of the shape), as step() updates them.
  using MuonGroups = std::map<std::pair<int64_t, int64_t>, std::vector<Slot*>>;
  MuonGroups muon_groups();
  // Muon on one group's members with ns_steps Newton-Schulz steps: batched by
  // ops::muon_update_group, at most ops::kMuonGroupMax parameters per call.
  void muon_group_step(const std::vector<Slot*>& members, float lr, int ns_steps);

  // Takes the hyperparameters and per-parameter state of a reference
  // checkpoint's optimizer_state_dict (spec §5); `source` names the file in errors.
  void load_torch_state(const TorchCheckpoint& ckpt, const std::string& source);

  // Native checkpoints: tensors "opt.momentum/<name>", "opt.m/<name>", "opt.v/<name>"
  // and meta "opt.step/<name>".
  void add_to_checkpoint(CheckpointData& out) const;
  void load_from_checkpoint(const CheckpointData& ckpt, const std::string& source);

 private:
  OptimizerConfig config_;
  std::vector<Slot> slots_;
};

}  // namespace iflame
