// evaluate: generated meshes against a reference set (tools/evaluate_cli.cpp).
#include "tools/evaluate_cli.h"

int main(int argc, char** argv) { return iflame::evaluate_main(argc, argv); }
