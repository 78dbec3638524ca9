// device_sampler.cpp: DeviceSampler's set-up, checks and host reads; each step
// is the sampling op (ops/sample_step.h) on the rows it keeps.
#include "infer/device_sampler.h"

#include <algorithm>

#include "core/counter_poll.h"
#include "core/error.h"
#include "infer/row_gather.h"
#include "ops/dispatch.h"

namespace iflame::infer {

constexpr int64_t kRowWords = sizeof(SampleRow) / sizeof(int32_t);

namespace {

SampleRow* row_data(const Tensor& rows) { return reinterpret_cast<SampleRow*>(rows.data<int32_t>()); }

}  // namespace

DeviceSampler::DeviceSampler(Device device, int batch, const std::vector<int32_t>& prompt, int64_t capacity,
                             int vocab, const SamplingConfig& cfg, bool constrained, uint64_t first_sample_id,
                             int64_t samples)
    : device_(device),
      batch_(batch),
      vocab_(vocab),
      capacity_(capacity),
      samples_(samples > 0 ? samples : batch),
      cfg_(cfg),
      constrained_(constrained),
      refill_(samples > batch),
      first_sample_id_(first_sample_id) {
  IFLAME_CHECK(batch >= 1, "DeviceSampler: batch must be >= 1, got ", batch);
  IFLAME_CHECK(samples >= 0 && samples < (int64_t(1) << 31) - 1 - batch, "DeviceSampler: ", samples,
               " samples is out of range");
  IFLAME_CHECK(vocab >= kVocabSize, "DeviceSampler: vocabulary of ", vocab, " is smaller than ", kVocabSize);
  IFLAME_CHECK(device == Device::CPU || vocab <= ops::kMaxSampleStepVocab,
               "DeviceSampler: the CUDA sampler takes at most ", ops::kMaxSampleStepVocab, " tokens, got ", vocab);
  IFLAME_CHECK(prompt.size() >= size_t(kTokensPerFace) &&
                   std::all_of(prompt.begin(), prompt.begin() + kTokensPerFace,
                               [](int32_t t) { return t == kStartToken; }),
               "DeviceSampler: the prompt must begin with the START row");
  IFLAME_CHECK(int64_t(prompt.size()) <= capacity && capacity < (int64_t(1) << 31) - 1, "DeviceSampler: prompt of ",
               prompt.size(), " tokens for a capacity of ", capacity);
  for (int32_t t : prompt)
    IFLAME_CHECK(t >= 0 && t < vocab, "DeviceSampler: prompt token ", t, " outside the vocabulary");
  // Rows below batch: the first samples; rows past samples_ (fewer samples than rows): idle.
  const int64_t rows_with_samples = std::min<int64_t>(batch, samples_);

  fresh_ = SampleRow{};
  fresh_.constraint = ops::constraint_start();
  for (size_t i = kTokensPerFace; i < prompt.size(); i++) ops::constraint_push(fresh_.constraint, prompt[i]);
  fresh_.length = static_cast<int32_t>(prompt.size());
  Tensor rows = Tensor::zeros({batch, kRowWords}, DType::I32);
  Tensor history = Tensor::zeros({samples_, capacity + 1}, DType::I32);
  for (int b = 0; b < batch; b++) {
    row_data(rows)[b] = fresh_;
    row_data(rows)[b].sample_id = first_sample_id + std::min<int64_t>(b, rows_with_samples - 1);
    if (b >= rows_with_samples) row_data(rows)[b].idle = row_data(rows)[b].done = 1;
  }
  for (int64_t i = 0; i < samples_; i++)
    std::copy(prompt.begin(), prompt.end(), history.data<int32_t>() + i * (capacity + 1));
  rows_ = rows.to(device);
  history_ = history.to(device);
  feed_ = Tensor::full({batch}, float(prompt[0]), DType::I32, device);
  counters_ = Tensor::from_ints({static_cast<int32_t>(samples_), static_cast<int32_t>(rows_with_samples)}, {2})
                  .to(device);
  active_ = counters_.slice(0, 0, 1);
  next_ = counters_.slice(0, 1, 2);
  ends_ = Tensor::zeros({samples_, 2}, DType::I32, device);
  restarts_ = Tensor::zeros({batch}, DType::I32, device);
  std::vector<int32_t> live(batch);
  for (int b = 0; b < batch; b++) live[b] = ops::row_is_live(row_data(rows)[b]);
  live_ = Tensor::from_ints(live, {batch}).to(device);
  queue_.refill = refill_;
  queue_.fresh = fresh_;
  queue_.first_sample_id = first_sample_id_;
  queue_.samples = samples_;
  queue_.next = next_.data<int32_t>();
  queue_.ends = reinterpret_cast<SampleEnd*>(ends_.data<int32_t>());
  queue_.restarts = restarts_.data<int32_t>();
  queue_.live = live_.data<int32_t>();
#ifdef IFLAME_CUDA
  if (device == Device::CUDA) poll_ = new CounterPoll;
#endif
}

DeviceSampler::~DeviceSampler() {
#ifdef IFLAME_CUDA
  delete poll_;
#endif
}

void DeviceSampler::check_position(int64_t position) const {
  IFLAME_CHECK(position == next_position_ && (refill_ || position < capacity_), "DeviceSampler: step at position ",
               position, ", expected ", next_position_, " (capacity ", capacity_, ")");
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
  ops::sample_step(logits, history_, rows_, feed_, active_, cfg_, constrained_, capacity_, queue_);
}

bool DeviceSampler::finished() {
  if (finished_) return true;
  if (!refill_ && next_position_ >= capacity_) {
    finished_ = true;  // the draw at capacity - 1 ends every row
  } else if (device_ == Device::CPU) {
    finished_ = *active_.data<int32_t>() == 0;
  } else if (next_position_ % kPollEvery == 0) {
    CUDA_ONLY(if (poll_->poll(counters_, polled_)) finished_ = polled_[0] == 0);
  }
  return finished_;
}

int DeviceSampler::drain_rows() const {
  const int32_t* c = polled_;
  if (device_ == Device::CPU) c = counters_.data<int32_t>();
  return c[1] >= samples_ ? c[0] : -1;
}

std::vector<int> DeviceSampler::live_rows() const {
  const std::vector<int32_t> live = live_.to_ints();
  std::vector<int> rows;
  for (int b = 0; b < batch_; b++)
    if (live[b]) rows.push_back(b);
  return rows;
}

void DeviceSampler::keep_rows(const std::vector<int>& keep) {
  check_kept_rows(keep, batch_, "DeviceSampler::keep_rows");
  std::vector<char> kept(batch_, 0);
  for (int b : keep) kept[b] = 1;
  const std::vector<SampleRow> now = rows();
  for (int b = 0; b < batch_; b++)
    if (!kept[b]) dropped_draws_ += now[b].draws;
  rows_ = gather_rows(rows_, keep);
  feed_ = gather_rows(feed_, keep);
  restarts_ = gather_rows(restarts_, keep);
  live_ = gather_rows(live_, keep);
  queue_.restarts = restarts_.data<int32_t>();
  queue_.live = live_.data<int32_t>();
  batch_ = static_cast<int>(keep.size());
}

int DeviceSampler::active_rows() const { return active_.to(Device::CPU).data<int32_t>()[0]; }

std::vector<SampleRow> DeviceSampler::rows() const {
  Tensor host = rows_.to(Device::CPU);
  return std::vector<SampleRow>(row_data(host), row_data(host) + batch_);
}

std::vector<GeneratedSequence> DeviceSampler::results() const {
  // Finished samples as they ended; the samples rows hold now (done or not) as they stand.
  Tensor end_host = ends_.to(Device::CPU);
  std::vector<SampleEnd> ends(reinterpret_cast<const SampleEnd*>(end_host.data<int32_t>()),
                              reinterpret_cast<const SampleEnd*>(end_host.data<int32_t>()) + samples_);
  for (const SampleRow& r : rows())
    if (!r.idle) ends[r.sample_id - first_sample_id_] = {r.length, r.ended};
  Tensor history = history_.to(Device::CPU);
  std::vector<GeneratedSequence> out(samples_);
  for (int64_t i = 0; i < samples_; i++) {
    const int32_t* h = history.data<int32_t>() + i * (capacity_ + 1);
    out[i].tokens.assign(h, h + ends[i].length);
    out[i].ended = ends[i].ended != 0;
  }
  return out;
}

int64_t DeviceSampler::sampled_tokens() const {
  int64_t n = dropped_draws_;
  for (const SampleRow& r : rows()) n += r.draws;
  return n;
}

}  // namespace iflame::infer
