// sample_preview.h: what ./train --render-samples N does at each validation:
// sample N meshes from the current weights and draw them as one PNG contact
// sheet, RUN/samples/step-S.png, so a run can be watched learning shapes.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "nn/iflame.h"
#include "training/train_config.h"

namespace iflame {

// Samples config.render_samples meshes (temperature 1, top-k 50, top-p 0.95,
// seed config.seed, so every preview of a run uses the same random draws; at
// most config.max_faces faces each) with `matmul` precision, writes the sheet
// and prints its path unless config.quiet. Returns the path.
std::string render_sample_preview(const IFlame& model, const TrainConfig& config, DType matmul, int64_t step);

}  // namespace iflame
