// paths.h: what the programs check about the paths a user gives them: an input
// that is missing or a folder gets a plain message ("no such file: PATH",
// "PATH is a directory"), and an output may not be one of the inputs.
#pragma once
#include <string>
#include <vector>

namespace iflame {

// Throws InputError unless `path` is an existing file other than a directory
// that this process can open for reading: "no such file: PATH", "PATH is a
// directory, not a file". `what` ("--ckpt", "dataset", ...) follows in
// parentheses when not empty.
void require_readable_file(const std::string& path, const std::string& what = "");

// True when both paths exist and name the same file (links followed).
bool same_file(const std::string& a, const std::string& b);

// Throws UsageError (bad usage: exit status 2) when `output`, given by `flag`,
// names one of `inputs`.
void refuse_output_over_input(const std::string& output, const std::vector<std::string>& inputs,
                              const std::string& flag);

}  // namespace iflame
