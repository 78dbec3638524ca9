// sample_preview.cpp: samples drawn during training (see sample_preview.h).
#include "training/sample_preview.h"

#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "core/error.h"
#include "data/tokenize.h"
#include "infer/clean.h"
#include "infer/generate.h"
#include "tools/render.h"

namespace iflame {

std::string render_sample_preview(const IFlame& model, const TrainConfig& config, DType matmul, int64_t step) {
  const std::string dir = config.run_dir() + "/samples";
  char name[64];
  std::snprintf(name, sizeof name, "/step-%07lld.png", static_cast<long long>(step));
  const std::string path = dir + name;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  IFLAME_CHECK(!ec, "cannot create '", dir, "': ", ec.message());

  infer::GenerateConfig cfg;
  cfg.sampling = {1.0f, 50, 0.95f, config.seed};
  cfg.max_faces = config.max_faces;
  cfg.ctx.matmul = matmul;
  NoGrad no_grad;
  // Decoding multiplies N-row matrices: on the CPU one thread is faster than a
  // team spinning over so little work (see infer/sample_cli.cpp).
  const int threads = omp_get_max_threads();
  if (model.device() == Device::CPU) omp_set_num_threads(1);
  std::vector<infer::GeneratedSequence> seqs = infer::generate(model, config.render_samples, {}, cfg, 0);
  omp_set_num_threads(threads);

  std::vector<Mesh> meshes;
  std::vector<std::string> labels;
  int faces = 0;
  for (size_t i = 0; i < seqs.size(); i++) {
    infer::CleanedSample c = infer::clean_sample(seqs[i].tokens);
    meshes.push_back(decode_tokens(c.tokens));
    labels.push_back(str("step ", step, " #", i, "  ", c.faces, " faces, ", infer::sample_status_name(c.status)));
    faces += c.faces;
  }
  RenderOptions opts;
  opts.cell = 192;
  render_meshes_to_png(meshes, labels, path, opts);
  if (!config.quiet)
    std::printf("samples at step %lld: %zu meshes, %d faces in all -> %s\n", static_cast<long long>(step),
                meshes.size(), faces, path.c_str());
  return path;
}

}  // namespace iflame
