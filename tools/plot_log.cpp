// plot_log.cpp: reading log.jsonl and drawing the training curves (see plot_log.h).
#include "tools/plot_log.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "data/json.h"
#include "data/mesh.h"

namespace iflame {

TrainingLog parse_training_log(const std::string& text, const std::string& name) {
  TrainingLog log;
  size_t pos = 0;
  for (int line_no = 1; pos < text.size(); line_no++) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    log.lines++;
    const std::string where = str(name, ":", line_no, ": ");
    JsonValue row;
    try {
      row = parse_json(line, name);
    } catch (const Error& e) {
      IFLAME_FAIL(where, "malformed log line (", e.what(), ")");
    }
    IFLAME_CHECK(row.is_object(), where, "expected a JSON object per line");
    const JsonValue* step = row.find("step");
    IFLAME_CHECK(step && step->kind == JsonValue::Kind::Number, where, "no numeric \"step\"");
    const JsonValue* skipped = row.find("skipped");
    if (skipped && skipped->kind == JsonValue::Kind::Bool && skipped->boolean) {
      log.skipped_steps++;
      continue;
    }
    auto take = [&](const char* key, std::vector<TrainingLog::Point>& series) {
      const JsonValue* v = row.find(key);
      if (!v) return;
      IFLAME_CHECK(v->kind == JsonValue::Kind::Number, where, "\"", key, "\" is not a number");
      series.push_back({step->number, v->number});
    };
    take("loss", log.loss);
    take("accuracy", log.accuracy);
    take("lr", log.lr);
    take("val_loss", log.val_loss);
    take("val_accuracy", log.val_accuracy);
  }
  return log;
}

TrainingLog read_training_log(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = path + "/log.jsonl";
  return parse_training_log(read_file_bytes(file), file);
}

namespace {

const Rgb kTrain = {31, 119, 180}, kVal = {230, 110, 10}, kLr = {44, 160, 44};
const Rgb kAxis = {60, 60, 60}, kGridLine = {232, 232, 232}, kText = {30, 30, 30};

// About `target` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

// One format per axis: scientific when the ticks are tiny or huge (learning rates).
std::vector<std::string> tick_labels(const std::vector<double>& ticks) {
  double big = 0;
  for (double t : ticks) big = std::max(big, std::fabs(t));
  const bool sci = big > 0 && (big < 1e-2 || big >= 1e6);
  std::vector<std::string> out;
  for (double t : ticks) {
    char buf[32];
    std::snprintf(buf, sizeof buf, sci && t != 0 ? "%.1e" : "%g", t);
    out.push_back(buf);
  }
  return out;
}

struct Series {
  const std::vector<TrainingLog::Point>* points;
  Rgb color;
  std::string name;
};

struct Panel {
  int x0, y0, x1, y1;  // plot area in pixels
  double s0, s1;       // step range
};

void draw_panel(Image& img, const Panel& p, const std::string& title, const std::vector<Series>& series) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : series)
    for (const auto& pt : *s.points) lo = std::min(lo, pt.value), hi = std::max(hi, pt.value);
  const bool empty = !(lo <= hi);
  if (empty) lo = 0, hi = 1;
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {  // a flat series: give it some room
    const double pad = std::fabs(hi) > 0 ? 0.1 * std::fabs(hi) : 1.0;
    lo -= pad, hi += pad;
  } else {
    const double pad = 0.06 * (hi - lo);
    lo -= pad, hi += pad;
  }
  auto X = [&](double s) { return p.x0 + (s - p.s0) / (p.s1 - p.s0) * (p.x1 - p.x0); };
  auto Y = [&](double v) { return p.y1 - (v - lo) / (hi - lo) * (p.y1 - p.y0); };

  const std::vector<double> yt = nice_ticks(lo, hi, 5), xt = nice_ticks(p.s0, p.s1, 8);
  const std::vector<std::string> yl = tick_labels(yt), xl = tick_labels(xt);
  for (size_t i = 0; i < yt.size(); i++) {
    const int y = int(std::lround(Y(yt[i])));
    fill_rect(img, p.x0, y, p.x1, y + 1, kGridLine);
    fill_rect(img, p.x0 - 4, y, p.x0, y + 1, kAxis);
    const std::string& label = yl[i];
    draw_text(img, p.x0 - 7 - text_width(label), y - text_height() / 2, label, kText);
  }
  for (size_t i = 0; i < xt.size(); i++) {
    const int x = int(std::lround(X(xt[i])));
    fill_rect(img, x, p.y0, x + 1, p.y1, kGridLine);
    fill_rect(img, x, p.y1, x + 1, p.y1 + 4, kAxis);
    const std::string& label = xl[i];
    draw_text(img, x - text_width(label) / 2, p.y1 + 7, label, kText);
  }
  fill_rect(img, p.x0, p.y0, p.x0 + 1, p.y1 + 1, kAxis);
  fill_rect(img, p.x0, p.y1, p.x1 + 1, p.y1 + 1, kAxis);

  for (const Series& s : series) {
    const auto& pts = *s.points;
    for (size_t i = 1; i < pts.size(); i++)
      draw_line(img, X(pts[i - 1].step), Y(pts[i - 1].value), X(pts[i].step), Y(pts[i].value), s.color, 1.6);
    if (pts.size() <= 60)
      for (const auto& pt : pts) draw_dot(img, X(pt.step), Y(pt.value), 2.6, s.color);
  }

  // Above the plot area: the title on the left, the legend on the right (a short
  // line in each series' colour, its name and its number of points).
  const int title_y = p.y0 - text_height(2) - 8;
  draw_text(img, p.x0, title_y, title, kText, 2);
  if (empty) draw_text(img, (p.x0 + p.x1) / 2 - text_width("no data yet", 2) / 2, (p.y0 + p.y1) / 2, "no data yet", kText, 2);
  int lx = p.x1;
  for (auto it = series.rbegin(); it != series.rend(); ++it) {
    if (it->points->empty()) continue;
    const std::string label = str(it->name, " (", it->points->size(), ")");
    lx -= text_width(label);
    draw_text(img, lx, title_y + 5, label, kText);
    lx -= 24;
    draw_line(img, lx, title_y + 8, lx + 18, title_y + 8, it->color, 2.5);
    lx -= 18;
  }
}

}  // namespace

Image plot_training_log(const TrainingLog& log, const std::string& title, int width, int height) {
  IFLAME_CHECK(width >= 200 && height >= 240 && width <= 8192 && height <= 8192, "plot size ", width, "x", height,
               " is outside [200..8192]x[240..8192]");
  Image img(width, height);
  double s0 = INFINITY, s1 = -INFINITY;
  for (const auto* series : {&log.loss, &log.accuracy, &log.lr, &log.val_loss, &log.val_accuracy})
    for (const auto& pt : *series) s0 = std::min(s0, pt.step), s1 = std::max(s1, pt.step);
  if (!(s0 <= s1)) s0 = 0, s1 = 1;
  s0 = std::min(s0, 0.0);
  if (s1 <= s0) s1 = s0 + 1;

  std::string heading = title;
  if (log.skipped_steps > 0) heading += str("   (skipped non-finite steps: ", log.skipped_steps, ")");
  draw_text(img, 16, 12, heading, kText, 2);
  const int left = 78, right = width - 20, top = 66, bottom = height - 34;
  const int gap = 54, panel_h = (bottom - top - 2 * gap) / 3;
  const char* names[3] = {"loss", "accuracy", "learning rate"};
  std::vector<Series> panels[3] = {
      {{&log.loss, kTrain, "train"}, {&log.val_loss, kVal, "validation"}},
      {{&log.accuracy, kTrain, "train"}, {&log.val_accuracy, kVal, "validation"}},
      {{&log.lr, kLr, "lr"}},
  };
  for (int i = 0; i < 3; i++) {
    const int y0 = top + i * (panel_h + gap);
    draw_panel(img, {left, y0, right, y0 + panel_h, s0, s1}, names[i], panels[i]);
  }
  draw_text(img, (left + right) / 2 - text_width("step") / 2, height - 16, "step", kText);
  return img;
}

}  // namespace iflame
