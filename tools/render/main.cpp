// main.cpp: the ./render program: a PNG contact sheet of meshes, or the
// training curves of a run (tools/render_cli.cpp reads the flags; tools/render.h
// and tools/plot_log.h do the work).
#include "tools/render_cli.h"

int main(int argc, char** argv) { return iflame::render_main(argc, argv); }
