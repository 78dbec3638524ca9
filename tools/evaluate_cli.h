// evaluate_cli.h: the ./evaluate program as a function, so tests can run it
// in-process (tools/evaluate/main.cpp only calls it).
#pragma once

namespace iflame {

// Parses flags (see --help), reads the generated and reference meshes, prints
// the metrics table (and writes --json). Returns the exit status: 0, 1 on an
// error (printed to stderr, naming the file), 2 on bad flags.
int evaluate_main(int argc, char** argv);

}  // namespace iflame
