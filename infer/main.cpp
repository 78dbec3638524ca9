// main.cpp: the ./sample program (placeholder until the sampling issue lands).
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  std::printf(
      "usage: ./sample --ckpt FILE [flags]\n"
      "Samples meshes from a trained iFlame model. Not implemented yet.\n");
  for (int i = 1; i < argc; i++)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return 0;
  return argc > 1 ? 1 : 0;
}
