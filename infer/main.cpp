// main.cpp: the ./sample program (infer/sample_cli.cpp does the work).
#include "infer/sample_cli.h"

int main(int argc, char** argv) { return iflame::infer::sample_main(argc, argv); }
