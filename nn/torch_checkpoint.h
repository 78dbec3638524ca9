// torch_checkpoint.h: reading a PyTorch checkpoint in the published iFlame
// layout (docs/spec.md §5) without PyTorch: a zip archive whose data.pkl is a
// protocol-2 pickle (parsed by core/pickle, which executes nothing) and whose
// data/<key> entries hold the raw little-endian storages.
//
// Model weights come back as CPU f32 tensors in state-dict order, with the
// `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes stripped; bf16 and
// f16 storages are converted to f32. The Muon + AdamW optimizer state comes back
// per optimizer index; training/optimizer.h's optimizer_param_order() says which
// parameter each index is.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/byte_source.h"
#include "core/tensor.h"

namespace iflame {

// One optimizer index's state. Muon entries: use_muon, momentum_buffer.
// AdamW entries: step, moment1, moment2. `tensors` and `scalars` hold every
// tensor and number of the entry under its own key (the typed fields are
// copies of the ones above), so other optimizers' state is not lost.
struct TorchOptimizerEntry {
  int64_t index = -1;
  bool use_muon = false;
  Tensor momentum_buffer;   // Muon
  double step = 0;          // AdamW (a number or a one-element tensor in the file)
  Tensor moment1, moment2;  // AdamW
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, double> scalars;
};

struct TorchParamGroup {
  // Numeric hyperparameters: lr, wd, momentum, nesterov (0/1), ns_steps,
  // adamw_eps ...; a tuple such as adamw_betas becomes adamw_betas.0, adamw_betas.1.
  std::map<std::string, double> hyper;
  std::vector<int64_t> params;  // the optimizer indices in this group
};

struct TorchCheckpoint {
  std::vector<std::pair<std::string, Tensor>> model;  // state-dict order, CPU f32
  bool has_optimizer = false;
  std::vector<TorchParamGroup> param_groups;
  std::vector<TorchOptimizerEntry> optimizer_state;  // ascending index
  std::optional<int64_t> epoch;
  std::optional<double> loss;
  std::optional<int64_t> data_iter_step;

  const Tensor* find_param(const std::string& name) const;  // nullptr if absent
  const TorchOptimizerEntry* find_state(int64_t index) const;
};

// Loads a checkpoint file. Throws iflame::Error naming the file and the problem
// for anything unexpected (not a zip, a compressed entry, a forbidden pickle
// global, a tensor outside its storage, a missing storage ...).
TorchCheckpoint load_torch_checkpoint(const std::string& path);
// The same over any byte source (the fuzz tests use in-memory archives).
TorchCheckpoint load_torch_checkpoint(std::unique_ptr<ByteSource> source);

// The optimizer state's indices are mapped to parameter names by the
// optimizer, which knows its groups: training/optimizer.h's optimizer_param_order.

// True if the file starts like a zip archive (PyTorch's format since 1.6).
bool looks_like_torch_checkpoint(const std::string& path);

}  // namespace iflame
