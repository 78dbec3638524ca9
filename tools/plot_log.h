// plot_log.h: training curves from a run's log.jsonl (written by ./train).
//
// Every line of log.jsonl is one JSON object with a "step". Training rows carry
// loss, accuracy and lr (averaged over the logging window); validation rows
// carry val_loss, val_accuracy, val_perplexity; rows of skipped steps have
// "skipped": true (their loss is a string such as "nan") and are counted, not
// plotted. A line that is not such an object is an error naming the file and
// the line number: nothing is dropped silently.
//
// The plot stacks three panels sharing the step axis: loss (train and
// validation), accuracy (train and validation) and learning rate, with tick
// labels in the built-in bitmap font.
#pragma once
#include <string>
#include <vector>

#include "tools/image.h"

namespace iflame {

struct TrainingLog {
  struct Point {
    double step, value;
  };
  std::vector<Point> loss, accuracy, lr, val_loss, val_accuracy;
  int skipped_steps = 0;
  int lines = 0;  // non-empty lines read
};

// text: the file's contents; name: used in error messages ("NAME:LINE: ...").
TrainingLog parse_training_log(const std::string& text, const std::string& name);
// A log.jsonl file, or a run folder holding one.
TrainingLog read_training_log(const std::string& path);

// width x height pixels; title goes on top (e.g. the run name).
Image plot_training_log(const TrainingLog& log, const std::string& title, int width = 900, int height = 900);

}  // namespace iflame
