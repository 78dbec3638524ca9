// loader.cpp: epoch planning (shuffle, bucketing, sharding), batch building and
// the background workers.
#include "data/loader.h"

#include <algorithm>

#include "core/error.h"
#include "core/philox.h"

namespace iflame {
namespace {

// Key offsets keep the shuffle streams apart from the augmentation draws.
constexpr uint64_t kShuffleKey = 0x5368756666ull;  // "Shuff"
constexpr uint64_t kBucketKey = 0x4275636b65ull;   // "Bucke"

uint64_t random_below(uint64_t seed, uint64_t stream, uint64_t i, uint64_t n) {
  Philox4 r = philox_draw(seed, stream, i);
  uint64_t w = (static_cast<uint64_t>(r.v[0]) << 32) | r.v[1];
  return w % n;  // bias below 2^-40 for any realistic n
}

template <typename T>
void shuffle_with(std::vector<T>& v, uint64_t seed, uint64_t stream) {
  for (size_t j = v.size(); j > 1; j--) std::swap(v[j - 1], v[random_below(seed, stream, j, j)]);
}

}  // namespace

std::vector<int32_t> dataset_mesh_tokens(const MeshDataset& ds, int64_t i, bool augment, uint64_t seed,
                                         int64_t epoch, const AugmentOptions& opt) {
  IFLAME_CHECK(i >= 0 && i < ds.size() && ds.usable(i), ds.path(), ": mesh ", i, " is not usable");
  const int nf = ds.faces(i);
  const std::vector<Triangle> t = ds.triangles(i);
  std::vector<Vec3d> v(static_cast<size_t>(nf) * 3);
  std::vector<std::array<int, 3>> faces(nf);
  for (int f = 0; f < nf; f++) {
    for (int k = 0; k < 3; k++) v[3 * f + k] = {t[f][3 * k], t[f][3 * k + 1], t[f][3 * k + 2]};
    faces[f] = {3 * f, 3 * f + 1, 3 * f + 2};
  }
  normalize_vertices(v);
  normalize_vertices(v);
  if (augment) apply_augmentation(v, draw_augmentation(seed, augmentation_stream(epoch, i), opt));
  return emit_tokens(quantize_canonical(v, faces));
}

std::vector<std::vector<int64_t>> plan_epoch(const MeshDataset& ds, const std::vector<int64_t>& indices,
                                             const LoaderOptions& opt, int64_t epoch) {
  IFLAME_CHECK(opt.batch_size > 0, "loader: batch_size must be positive");
  IFLAME_CHECK(opt.world_size > 0 && opt.rank >= 0 && opt.rank < opt.world_size, "loader: rank ", opt.rank,
               " outside world size ", opt.world_size);
  std::vector<int64_t> order = indices;
  if (opt.shuffle) shuffle_with(order, opt.seed ^ kShuffleKey, static_cast<uint64_t>(epoch));
  const size_t global = static_cast<size_t>(opt.batch_size) * opt.world_size;
  std::vector<std::vector<int64_t>> globals;
  if (opt.bucket_window > 0) {
    const size_t window = global * opt.bucket_window;
    for (size_t w0 = 0; w0 < order.size(); w0 += window) {
      size_t w1 = std::min(order.size(), w0 + window);
      std::vector<int64_t> win(order.begin() + w0, order.begin() + w1);
      std::stable_sort(win.begin(), win.end(), [&](int64_t a, int64_t b) { return ds.faces(a) < ds.faces(b); });
      std::vector<std::vector<int64_t>> batches;
      for (size_t b0 = 0; b0 < win.size(); b0 += global)
        batches.emplace_back(win.begin() + b0, win.begin() + std::min(win.size(), b0 + global));
      // Keep a short batch last so drop_last drops only the epoch's tail.
      size_t full = batches.size() - (batches.back().size() < global ? 1 : 0);
      std::vector<std::vector<int64_t>> head(batches.begin(), batches.begin() + full);
      shuffle_with(head, opt.seed ^ kBucketKey, (static_cast<uint64_t>(epoch) << 32) ^ (w0 / window));
      for (auto& b : head) globals.push_back(std::move(b));
      if (full < batches.size()) globals.push_back(std::move(batches.back()));
    }
    // Windows hold whole global batches, so only the last window can end short.
  } else {
    for (size_t b0 = 0; b0 < order.size(); b0 += global)
      globals.emplace_back(order.begin() + b0, order.begin() + std::min(order.size(), b0 + global));
  }
  std::vector<std::vector<int64_t>> mine;
  for (const auto& g : globals) {
    if (opt.drop_last && g.size() < global) continue;
    size_t per_rank = g.size() / opt.world_size;
    if (per_rank == 0) continue;
    std::vector<int64_t> b;
    for (size_t k = 0; k < per_rank; k++) b.push_back(g[k * opt.world_size + opt.rank]);
    mine.push_back(std::move(b));
  }
  return mine;
}

Batch build_batch(const MeshDataset& ds, const std::vector<int64_t>& meshes, const LoaderOptions& opt,
                  int64_t epoch, int64_t index) {
  std::vector<std::vector<int32_t>> rows;
  size_t longest = 0;
  for (int64_t m : meshes) {
    rows.push_back(dataset_mesh_tokens(ds, m, opt.augment, opt.seed, epoch, opt.augment_options));
    longest = std::max(longest, rows.back().size());
  }
  longest = (longest + kTokensPerFace - 1) / kTokensPerFace * kTokensPerFace;
  Batch b;
  b.tokens = Tensor::full({static_cast<int64_t>(rows.size()), static_cast<int64_t>(longest)},
                          static_cast<float>(kPadToken), DType::I32);
  int32_t* out = b.tokens.data<int32_t>();
  for (size_t r = 0; r < rows.size(); r++) std::copy(rows[r].begin(), rows[r].end(), out + r * longest);
  b.meshes = meshes;
  b.epoch = epoch;
  b.index = index;
  return b;
}

Loader::Loader(const MeshDataset& ds, std::vector<int64_t> indices, LoaderOptions opt)
    : ds_(ds), indices_(std::move(indices)), opt_(opt) {
  for (int64_t i : indices_)
    IFLAME_CHECK(i >= 0 && i < ds.size() && ds.usable(i), ds.path(), ": loader given mesh ", i,
                 ", which is not usable");
  IFLAME_CHECK(opt_.prefetch > 0, "loader: prefetch must be positive");
}

Loader::~Loader() { stop(); }

void Loader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  stop();
  epoch_ = epoch;
  plan_ = plan_epoch(ds_, indices_, opt_, epoch);
  ready_.clear();
  IFLAME_CHECK(first_batch >= 0 && first_batch <= batches_in_epoch(), ds_.path(), ": cannot start epoch ",
               epoch, " at batch ", first_batch, " of ", batches_in_epoch());
  next_to_build_ = next_to_return_ = first_batch;
  stopping_ = false;
  error_ = nullptr;
  for (int t = 0; t < opt_.threads; t++) workers_.emplace_back([this] { work(); });
}

void Loader::work() {
  while (true) {
    int64_t k;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || error_ || next_to_build_ >= batches_in_epoch() ||
               next_to_build_ < next_to_return_ + opt_.prefetch;
      });
      if (stopping_ || error_ || next_to_build_ >= batches_in_epoch()) return;
      k = next_to_build_++;
    }
    try {
      Batch b = build_batch(ds_, plan_[k], opt_, epoch_, k);
      std::lock_guard<std::mutex> lock(mu_);
      ready_.emplace(k, std::move(b));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!error_) error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

bool Loader::next(Batch& out) {
  if (next_to_return_ >= batches_in_epoch()) return false;
  if (opt_.threads <= 0) {
    out = build_batch(ds_, plan_[next_to_return_], opt_, epoch_, next_to_return_);
    next_to_return_++;
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return error_ || ready_.count(next_to_return_); });
  if (!ready_.count(next_to_return_) && error_) std::rethrow_exception(error_);
  out = std::move(ready_.at(next_to_return_));
  ready_.erase(next_to_return_);
  next_to_return_++;
  lock.unlock();
  cv_.notify_all();
  return true;
}

}  // namespace iflame
