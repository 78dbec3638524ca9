// main.cpp: the ./train program. Flags and defaults: training/train_config.cpp.
#include <cstdio>

#include "core/error.h"
#include "training/trainer.h"

int main(int argc, char** argv) {
  using namespace iflame;
  try {
    bool help = false;
    TrainConfig config = parse_train_args(argc, argv, help);
    if (help) {
      std::fputs(train_usage().c_str(), stdout);
      return 0;
    }
    install_stop_signal_handlers();
    Trainer trainer(config);
    return trainer.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return 2;
  }
}
