// device_sampler.cpp: DeviceSampler's set-up, checks and host reads, and its CPU
// step: the row sampler of infer/sampling_core.h in a loop over the rows (the
// CUDA step is in device_sampler.cu).
#include "infer/device_sampler.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "ops/dispatch.h"

namespace iflame::infer {

static_assert(std::is_trivially_copyable<SampleRow>::value && sizeof(SampleRow) % 8 == 0,
              "SampleRow is stored as raw i32 words on the device");
constexpr int64_t kRowWords = sizeof(SampleRow) / sizeof(int32_t);

namespace {

SampleRow* row_data(const Tensor& rows) { return reinterpret_cast<SampleRow*>(rows.data<int32_t>()); }

// The largest vocabulary the CUDA step takes: a block keeps each token's logit,
// weight, rank slot and flag in shared memory (17 bytes a token, 48 KiB at most).
constexpr int kMaxCudaVocab = 2048;

}  // namespace

int32_t sample_row(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                   const ConstraintState* constraint, std::vector<int32_t>& candidates,
                   std::vector<double>& weights) {
  candidates.clear();
  if (constraint) {
    const ConstraintMask mask = constraint_mask(*constraint);
    for (int32_t t = 0; t < vocab; t++)
      if (constraint_allows(mask, t)) candidates.push_back(t);
  } else {
    for (int32_t t = 0; t < vocab; t++)
      if (plain_allows(t)) candidates.push_back(t);
  }
  if (candidates.empty())
    for (int32_t t = 0; t < vocab; t++) candidates.push_back(t);
  const int n = static_cast<int>(candidates.size());
  const int keep = sampling_is_greedy(cfg) ? 1 : sampling_keep(cfg, n);
  // candidate_before is a total order, so the first `keep` are those a full sort puts there.
  std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(), [&](int32_t a, int32_t b) {
    return candidate_before(logits[a], a, logits[b], b);
  });
  if (sampling_is_greedy(cfg)) return candidates[0];
  weights.resize(keep);
  const float top = logits[candidates[0]];
  for (int i = 0; i < keep; i++) weights[i] = candidate_weight(logits[candidates[i]], top, cfg.temperature);
  return candidates[nucleus_pick(weights.data(), keep, cfg.top_p, u)];
}

DeviceSampler::DeviceSampler(Device device, int batch, const std::vector<int32_t>& prompt, int64_t capacity,
                             int vocab, const SamplingConfig& cfg, bool constrained, uint64_t first_sample_id)
    : device_(device), batch_(batch), vocab_(vocab), capacity_(capacity), cfg_(cfg), constrained_(constrained) {
  IFLAME_CHECK(batch >= 1, "DeviceSampler: batch must be >= 1, got ", batch);
  IFLAME_CHECK(vocab >= kVocabSize, "DeviceSampler: vocabulary of ", vocab, " is smaller than ", kVocabSize);
  IFLAME_CHECK(device == Device::CPU || vocab <= kMaxCudaVocab, "DeviceSampler: the CUDA sampler takes at most ",
               kMaxCudaVocab, " tokens, got ", vocab);
  IFLAME_CHECK(prompt.size() >= size_t(kTokensPerFace) &&
                   std::all_of(prompt.begin(), prompt.begin() + kTokensPerFace,
                               [](int32_t t) { return t == kStartToken; }),
               "DeviceSampler: the prompt must begin with the START row");
  IFLAME_CHECK(int64_t(prompt.size()) <= capacity && capacity < (int64_t(1) << 31) - 1, "DeviceSampler: prompt of ",
               prompt.size(), " tokens for a capacity of ", capacity);
  for (int32_t t : prompt)
    IFLAME_CHECK(t >= 0 && t < vocab, "DeviceSampler: prompt token ", t, " outside the vocabulary");

  SampleRow first{};
  first.constraint = constraint_start();
  for (size_t i = kTokensPerFace; i < prompt.size(); i++) constraint_push(first.constraint, prompt[i]);
  first.length = static_cast<int32_t>(prompt.size());
  Tensor rows = Tensor::zeros({batch, kRowWords}, DType::I32);
  Tensor history = Tensor::zeros({batch, capacity + 1}, DType::I32);
  for (int b = 0; b < batch; b++) {
    row_data(rows)[b] = first;
    row_data(rows)[b].sample_id = first_sample_id + b;
    std::copy(prompt.begin(), prompt.end(), history.data<int32_t>() + b * (capacity + 1));
  }
  rows_ = rows.to(device);
  history_ = history.to(device);
  feed_ = Tensor::full({batch}, float(prompt[0]), DType::I32, device);
  active_ = Tensor::full({1}, float(batch), DType::I32, device);
  candidates_.reserve(vocab);
  weights_.reserve(vocab);
#ifdef IFLAME_CUDA
  if (device == Device::CUDA) poll_ = cuda::counter_poll_create();
#endif
}

DeviceSampler::~DeviceSampler() {
#ifdef IFLAME_CUDA
  if (poll_) cuda::counter_poll_destroy(poll_);
#endif
}

void DeviceSampler::check_position(int64_t position) const {
  IFLAME_CHECK(position == next_position_ && position < capacity_, "DeviceSampler: step at position ", position,
               ", expected ", next_position_, " (capacity ", capacity_, ")");
}

void DeviceSampler::step(const Tensor& logits, int64_t position) {
  check_position(position);
  queue_draws(logits);
  next_position_++;
}

void DeviceSampler::count_step(int64_t position) {
  check_position(position);
  next_position_++;
}

void DeviceSampler::queue_draws(const Tensor& logits) {
  IFLAME_CHECK(logits.defined() && logits.dtype() == DType::F32 && logits.is_contiguous() &&
                   logits.device() == device_ && logits.shape() == Shape({batch_, vocab_}),
               "DeviceSampler: logits must be contiguous f32 [", batch_, ", ", vocab_, "] on ", device_name(device_),
               ", got ", logits.describe());
  if (device_ == Device::CUDA) {
    CUDA_ONLY(cuda::sample_step(logits, history_, rows_, feed_, active_, cfg_, constrained_, capacity_));
    return;
  }
  const float* L = logits.data<float>();
  int32_t* history = history_.data<int32_t>();
  int32_t* feed = feed_.data<int32_t>();
  SampleRow* rows = row_data(rows_);
  for (int b = 0; b < batch_; b++) {
    SampleRow& r = rows[b];
    int32_t* h = history + b * (capacity_ + 1);
    if (row_draws_at(r, r.position)) {
      const float u = sampling_uniform(cfg_.seed, r.position + 1, r.sample_id);
      const int32_t token = sample_row(L + int64_t(b) * vocab_, vocab_, cfg_, u,
                                       constrained_ ? &r.constraint : nullptr, candidates_, weights_);
      if (accept_draw(r, h, token, r.position, capacity_)) (*active_.data<int32_t>())--;
    }
    feed[b] = finish_step(r, h);
  }
}

bool DeviceSampler::finished() {
  if (finished_) return true;
  if (next_position_ >= capacity_) {
    finished_ = true;  // the draw at capacity - 1 ends every row
  } else if (device_ == Device::CPU) {
    finished_ = *active_.data<int32_t>() == 0;
  } else if (next_position_ % kPollEvery == 0) {
    CUDA_ONLY(finished_ = cuda::counter_poll(poll_, active_) == 0);
  }
  return finished_;
}

int DeviceSampler::active_rows() const { return active_.to(Device::CPU).data<int32_t>()[0]; }

std::vector<SampleRow> DeviceSampler::rows() const {
  Tensor host = rows_.to(Device::CPU);
  return std::vector<SampleRow>(row_data(host), row_data(host) + batch_);
}

std::vector<GeneratedSequence> DeviceSampler::results() const {
  const std::vector<SampleRow> state = rows();
  Tensor history = history_.to(Device::CPU);
  std::vector<GeneratedSequence> out(batch_);
  for (int b = 0; b < batch_; b++) {
    const int32_t* h = history.data<int32_t>() + b * (capacity_ + 1);
    out[b].tokens.assign(h, h + state[b].length);
    out[b].ended = state[b].ended != 0;
  }
  return out;
}

int64_t DeviceSampler::sampled_tokens() const {
  int64_t n = 0;
  for (const SampleRow& r : rows()) n += r.draws;
  return n;
}

}  // namespace iflame::infer
