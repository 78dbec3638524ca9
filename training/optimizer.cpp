// optimizer.cpp: bookkeeping of the Muon + AdamW optimizer.
#include "training/optimizer.h"

#include <algorithm>
#include <map>
#include <utility>

#include "core/error.h"
#include "ops/optimizer_ops.h"

namespace iflame {

bool uses_muon(const std::string& name, const Shape& shape) {
  return shape.size() == 2 && name != "output_proj.weight";
}

std::vector<std::string> optimizer_param_order(
    const std::vector<std::pair<std::string, Shape>>& params_in_state_dict_order) {
  std::vector<std::string> order;
  for (const auto& p : params_in_state_dict_order)
    if (uses_muon(p.first, p.second)) order.push_back(p.first);
  for (const auto& p : params_in_state_dict_order)
    if (!uses_muon(p.first, p.second)) order.push_back(p.first);
  return order;
}

MuonAdamW::MuonAdamW(ParameterList& params, const OptimizerConfig& config) : config_(config) {
  for (int pass = 0; pass < 2; pass++) {
    for (auto& [name, var] : params.items()) {
      bool muon = uses_muon(name, var.value().shape());
      if (muon != (pass == 0)) continue;
      Slot s;
      s.name = name;
      s.param = var;
      s.muon = muon;
      const Tensor& v = var.value();
      if (muon) {
        s.momentum = Tensor::zeros(v.shape(), DType::F32, v.device());
      } else {
        s.moment1 = Tensor::zeros(v.shape(), DType::F32, v.device());
        s.moment2 = Tensor::zeros(v.shape(), DType::F32, v.device());
      }
      slots_.push_back(std::move(s));
    }
  }
}

MuonAdamW::MuonGroups MuonAdamW::muon_groups() {
  MuonGroups groups;
  for (Slot& s : slots_) {
    if (!s.muon || !s.param.grad().defined()) continue;
    const Shape& shape = s.param.value().shape();
    groups[{std::min(shape[0], shape[1]), std::max(shape[0], shape[1])}].push_back(&s);
  }
  return groups;
}

void MuonAdamW::muon_group_step(const std::vector<Slot*>& members, float lr, int ns_steps) {
  for (size_t first = 0; first < members.size(); first += ops::kMuonGroupMax) {
    std::vector<Tensor*> params, momenta;
    std::vector<const Tensor*> grads;
    for (size_t i = first; i < std::min(members.size(), first + ops::kMuonGroupMax); i++) {
      params.push_back(&members[i]->param.mutable_value());
      grads.push_back(&members[i]->param.grad());
      momenta.push_back(&members[i]->momentum);
    }
    ops::muon_update_group(params, grads, momenta, lr, config_.weight_decay, config_.momentum, ns_steps,
                           config_.ns_dtype);
  }
}

void MuonAdamW::step(float lr) {
  // Muon parameters go in groups of one shape (up to transposition): on the GPU
  // a group's Newton-Schulz runs batched (ops::muon_update_group).
  for (auto& kv : muon_groups()) muon_group_step(kv.second, lr, config_.ns_steps);
  for (Slot& s : slots_) {
    Tensor& p = s.param.mutable_value();
    const Tensor& g = s.param.grad();
    if (!g.defined()) continue;  // a parameter no loss reached
    if (s.muon) {
      continue;  // done above
    } else {
      s.step++;
      ops::adamw_update(p, g, s.moment1, s.moment2, lr, config_.adam_beta1, config_.adam_beta2,
                        config_.adam_eps, config_.weight_decay, s.step);
    }
  }
}

namespace {
void copy_state(Tensor& dst, const Tensor& src, const std::string& what, const std::string& source) {
  IFLAME_CHECK(src.defined(), source, ": optimizer state has no ", what);
  IFLAME_CHECK(src.shape() == dst.shape(), source, ": ", what, " has shape ", shape_str(src.shape()),
               ", expected ", shape_str(dst.shape()));
  dst.copy_from(src);
}
}  // namespace

void MuonAdamW::load_torch_state(const TorchCheckpoint& ckpt, const std::string& source) {
  IFLAME_CHECK(ckpt.has_optimizer, source, ": no optimizer_state_dict to resume from");
  IFLAME_CHECK(ckpt.param_groups.size() == 1, source, ": expected one optimizer parameter group, found ",
               ckpt.param_groups.size());
  const auto& h = ckpt.param_groups[0].hyper;
  auto take = [&](const char* key, float& field) {
    auto it = h.find(key);
    if (it != h.end()) field = static_cast<float>(it->second);
  };
  take("lr", config_.lr);
  take("wd", config_.weight_decay);
  take("momentum", config_.momentum);
  take("adamw_betas.0", config_.adam_beta1);
  take("adamw_betas.1", config_.adam_beta2);
  take("adamw_eps", config_.adam_eps);
  if (h.count("ns_steps")) config_.ns_steps = static_cast<int>(h.at("ns_steps"));

  std::vector<std::pair<std::string, Shape>> shapes;
  for (const auto& [name, t] : ckpt.model) shapes.push_back({name, t.shape()});
  std::vector<std::string> order = optimizer_param_order(shapes);
  IFLAME_CHECK(order.size() == slots_.size(), source, ": the checkpoint's optimizer covers ", order.size(),
               " parameters, this model has ", slots_.size());
  for (const TorchOptimizerEntry& e : ckpt.optimizer_state) {
    IFLAME_CHECK(e.index >= 0 && e.index < static_cast<int64_t>(order.size()), source,
                 ": optimizer state index ", e.index, " out of range");
    const std::string& name = order[e.index];
    Slot* slot = nullptr;
    for (Slot& s : slots_)
      if (s.name == name) slot = &s;
    IFLAME_CHECK(slot, source, ": optimizer state for unknown parameter ", name);
    IFLAME_CHECK(slot->muon == e.use_muon, source, ": parameter ", name, " is ",
                 slot->muon ? "Muon" : "AdamW", " here but ", e.use_muon ? "Muon" : "AdamW", " in the file");
    if (slot->muon) {
      copy_state(slot->momentum, e.momentum_buffer, "momentum_buffer of " + name, source);
    } else {
      copy_state(slot->moment1, e.moment1, "moment1 of " + name, source);
      copy_state(slot->moment2, e.moment2, "moment2 of " + name, source);
      slot->step = static_cast<int64_t>(e.step);
    }
  }
}

void MuonAdamW::add_to_checkpoint(CheckpointData& out) const {
  for (const Slot& s : slots_) {
    if (s.muon) {
      out.tensors.push_back({"opt.momentum/" + s.name, s.momentum});
    } else {
      out.tensors.push_back({"opt.m/" + s.name, s.moment1});
      out.tensors.push_back({"opt.v/" + s.name, s.moment2});
      out.meta.push_back({"opt.step/" + s.name, std::to_string(s.step)});
    }
  }
}

void MuonAdamW::load_from_checkpoint(const CheckpointData& ckpt, const std::string& source) {
  for (Slot& s : slots_) {
    auto get = [&](const std::string& key) -> const Tensor& {
      const Tensor* t = ckpt.find_tensor(key);
      IFLAME_CHECK(t, source, ": checkpoint has no optimizer state '", key, "'");
      return *t;
    };
    if (s.muon) {
      copy_state(s.momentum, get("opt.momentum/" + s.name), "opt.momentum/" + s.name, source);
    } else {
      copy_state(s.moment1, get("opt.m/" + s.name), "opt.m/" + s.name, source);
      copy_state(s.moment2, get("opt.v/" + s.name), "opt.v/" + s.name, source);
      const std::string* step = ckpt.find_meta("opt.step/" + s.name);
      IFLAME_CHECK(step, source, ": checkpoint has no 'opt.step/", s.name, "'");
      s.step = std::stoll(*step);
    }
  }
}

}  // namespace iflame
