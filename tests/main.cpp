// main.cpp: doctest's runner. Every other file in tests/ adds test cases.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
