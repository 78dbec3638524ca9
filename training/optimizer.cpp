// optimizer.cpp: bookkeeping of the Muon + AdamW optimizer.
#include "training/optimizer.h"

#include "core/error.h"
#include "ops/optimizer_ops.h"

namespace iflame {

bool uses_muon(const std::string& name, const Shape& shape) {
  return shape.size() == 2 && name != "output_proj.weight";
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

void MuonAdamW::step(float lr) {
  for (Slot& s : slots_) {
    Tensor& p = s.param.mutable_value();
    const Tensor& g = s.param.grad();
    if (!g.defined()) continue;  // a parameter no loss reached
    if (s.muon) {
      ops::muon_update(p, g, s.momentum, lr, config_.weight_decay, config_.momentum, config_.ns_steps,
                       config_.ns_dtype);
    } else {
      s.step++;
      ops::adamw_update(p, g, s.moment1, s.moment2, lr, config_.adam_beta1, config_.adam_beta2,
                        config_.adam_eps, config_.weight_decay, s.step);
    }
  }
}

}  // namespace iflame
