// main.cpp: the ./train program (placeholder until the training issue lands).
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  std::printf(
      "usage: ./train DATASET.npy [flags]\n"
      "Trains an iFlame mesh generator. Not implemented yet: this build has the\n"
      "tensor, op and model layers; the training loop comes next.\n");
  for (int i = 1; i < argc; i++)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return 0;
  return argc > 1 ? 1 : 0;
}
