// render_cli.h: the ./render program as a function, so tests can run it
// in-process (tools/render/main.cpp only calls it).
#pragma once

namespace iflame {

// Parses flags (see --help), draws the sheet or the curves. Returns the exit
// status: 0, 1 on an error (printed to stderr, naming the file), 2 on bad flags.
int render_main(int argc, char** argv);

}  // namespace iflame
