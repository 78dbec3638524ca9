// sample_cli.h: the ./sample program as a function, so tests can run it in-process.
#pragma once

namespace iflame::infer {

// Parses flags (see --help), samples meshes or runs the decoding benchmark.
// Returns the exit status; errors are printed to stderr and give 1 (2 for bad flags).
int sample_main(int argc, char** argv);

}  // namespace iflame::infer
