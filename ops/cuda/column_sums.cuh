// column_sums.cuh: deterministic column sums of a row-major [rows, cols] matrix
// that a kernel is streaming anyway (the gradient of a bias is the column sums of
// the output's gradient): the kernel gives each block a run of rows and each
// thread fixed columns, sums them in registers, and writes its block's sums to
// a scratch table [blocks, cols]; add_column_partials then adds the table up
// column by column, in block order, into the target. No atomics: the same
// inputs give the same bits.
#pragma once
#include <algorithm>

#include "core/device.h"
#include "core/tensor.h"

namespace iflame::ops::cuda {

// How a streaming kernel splits `rows` into runs: enough blocks to fill the GPU
// several times over, each with at least one row.
struct RowRuns {
  long long rows_per_block = 1;
  int blocks = 1;
};
inline RowRuns row_runs(long long rows) {
  const long long want = 8LL * cuda_multiprocessors();
  RowRuns r;
  r.rows_per_block = std::max<long long>(1, (rows + want - 1) / want);
  r.blocks = (int)std::max<long long>(1, (rows + r.rows_per_block - 1) / r.rows_per_block);
  return r;
}

// Threads for a block whose thread t takes column groups t, t + blockDim.x, ...:
// one per group, in whole warps, at most 1024 (beyond, threads loop over groups).
inline int column_threads(int groups) { return std::min(1024, std::max(32, (groups + 31) / 32 * 32)); }

// target[c] += sum over b < blocks (in order) of partials[b * cols + c], for
// c < cols (partials f32 [blocks, cols] on the GPU), on the project stream.
void add_column_partials(const Tensor& partials, int blocks, int cols, float* target);

}  // namespace iflame::ops::cuda
