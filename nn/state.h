// state.h: moving an IFlame model's parameters in and out of checkpoints.
//
// Native checkpoints (nn/checkpoint.h) hold the config as meta entries
// ("model.dim", "model.heads", ...) and each parameter as "param/<published name>".
// PyTorch checkpoints (nn/torch_checkpoint.h) hold only the state dict; the
// config is read off its shapes (head dimension 32, as published).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/iflame.h"
#include "nn/torch_checkpoint.h"

namespace iflame {

// Copies named tensors into the model's parameters. Strict: every parameter must
// be present with its exact shape, and no unknown name may appear; `source`
// names the file in the error.
void load_parameters(IFlame& model, const std::vector<std::pair<std::string, Tensor>>& named,
                     const std::string& source);

// Config meta entries and parameters of the model, ready for save_checkpoint.
void add_model_to_checkpoint(const IFlame& model, CheckpointData& out);
// The config entries of a native checkpoint, checked against its tensor table
// (embedding, feed-forward and block count) before anything is allocated.
IFlameConfig config_from_checkpoint(const CheckpointData& ckpt, const std::string& source);
// The config a published state dict implies (head dimension 32).
IFlameConfig config_from_state_dict(const std::vector<std::pair<std::string, Tensor>>& named,
                                    const std::string& source);

// Builds a model from a native or PyTorch checkpoint file.
std::unique_ptr<IFlame> load_model(const std::string& path, Device device);

}  // namespace iflame
