// pickle_dataset.h: the reference implementation's preprocessed dataset (a
// pickled dict: vertices_train, faces_train, name_train and the same for val;
// lists of numpy arrays, vertices [n, 3] float, faces [m, 3] int) as builder
// inputs, each holding its mesh and its split (build_dataset --from-pickle).
#pragma once
#include <string>
#include <vector>

#include "tools/dataset_builder.h"

namespace iflame {

// One input per mesh of both splits; names from name_<split> when present
// ("<split>_<i>" otherwise). Throws naming the file on anything unexpected.
std::vector<BuildInput> read_reference_pickle(const std::string& path);

}  // namespace iflame
