// test_render.cpp: the software renderer, contact sheets, PNG output, the
// training-curve plot and its log reader, and ./sample --png.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/crc32.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/mesh.h"
#include "infer/sample_cli.h"
#include "test_util.h"
#include "tools/plot_log.h"
#include "tools/render.h"
#include "training/trainer.h"

using namespace iflame;
using iflame::test::golden;

namespace {

// An axis-aligned box with corners (0,0,0) and (sx,sy,sz), 12 triangles.
Mesh box(float sx, float sy, float sz) {
  Mesh m;
  for (int c = 0; c < 8; c++) m.vertices.push_back({c & 1 ? sx : 0.0f, c & 2 ? sy : 0.0f, c & 4 ? sz : 0.0f});
  const int quads[6][4] = {{0, 1, 3, 2}, {4, 6, 7, 5}, {0, 4, 5, 1}, {2, 3, 7, 6}, {0, 2, 6, 4}, {1, 5, 7, 3}};
  for (const auto& q : quads) {
    m.faces.push_back({q[0], q[1], q[2]});
    m.faces.push_back({q[0], q[2], q[3]});
  }
  return m;
}

bool is_background(Rgb c) { return c[0] == 255 && c[1] == 255 && c[2] == 255; }

struct Coverage {
  int64_t pixels = 0;
  int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;  // bounding box of the covered pixels
};
Coverage coverage(const Image& img, int x0 = 0, int y0 = 0, int x1 = -1, int y1 = -1) {
  if (x1 < 0) x1 = img.width;
  if (y1 < 0) y1 = img.height;
  Coverage c;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      if (!is_background(img.at(x, y))) {
        c.pixels++;
        c.x0 = std::min(c.x0, x), c.y0 = std::min(c.y0, y), c.x1 = std::max(c.x1, x), c.y1 = std::max(c.y1, y);
      }
  return c;
}

// The three-quarter camera as render.h documents it: azimuth 45, elevation 30, y up.
struct Axes {
  double right[3], up[3], toward[3];
};
Axes three_quarter() {
  const double az = M_PI / 4, el = M_PI / 6;
  Axes a{{std::cos(az), 0, -std::sin(az)},
         {-std::sin(el) * std::sin(az), std::cos(el), -std::sin(el) * std::cos(az)},
         {std::sin(az) * std::cos(el), std::sin(el), std::cos(az) * std::cos(el)}};
  return a;
}
double proj(const double axis[3], double x, double y, double z) { return axis[0] * x + axis[1] * y + axis[2] * z; }

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | uint32_t(b[at + 3]);
}

RenderOptions plain(int cell) {
  RenderOptions o;
  o.cell = cell;
  o.supersample = 1;
  o.edges = false;
  return o;
}

}  // namespace

TEST_CASE("render: a box's silhouette has the area orthographic projection predicts, in both views") {
  const int cell = 160;
  const RenderOptions o = plain(cell);
  // A 2 x 0.4 x 1 box: normalized to 1 x 0.2 x 0.5 (spec §1), whatever its size and place.
  Mesh m = box(2.0f, 0.4f, 1.0f);
  for (auto& v : m.vertices) v[0] += 7, v[2] -= 3;
  const double lx = 1, ly = 0.2, lz = 0.5;

  // Top view: the unit cube's square spans kViewFill of the cell, so the box covers lx * lz of that.
  const double top_scale = kViewFill * cell;  // pixels per unit
  Coverage top = coverage(render_mesh_view(m, View::Top, o));
  const double top_area = lx * lz * top_scale * top_scale;
  CHECK(std::fabs(top.pixels - top_area) <= 0.03 * top_area);
  CHECK(std::abs((top.x1 - top.x0 + 1) - lx * top_scale) <= 2);  // x to the right
  CHECK(std::abs((top.y1 - top.y0 + 1) - lz * top_scale) <= 2);  // z down the picture
  CHECK(std::abs((top.x0 + top.x1 + 1) / 2 - cell / 2) <= 1);   // centred
  CHECK(std::abs((top.y0 + top.y1 + 1) / 2 - cell / 2) <= 1);

  // Three-quarter view: the silhouette of a box is a hexagon of area
  // sum over axes of (product of the other two sides) * |toward . axis|.
  const Axes a = three_quarter();
  double ext = 0;
  for (int c = 0; c < 8; c++) {
    double x = c & 1 ? 0.5 : -0.5, y = c & 2 ? 0.5 : -0.5, z = c & 4 ? 0.5 : -0.5;
    ext = std::max({ext, std::fabs(proj(a.right, x, y, z)), std::fabs(proj(a.up, x, y, z))});
  }
  const double scale = 0.5 * kViewFill * cell / ext;
  const double area = (ly * lz * std::fabs(a.toward[0]) + lx * lz * std::fabs(a.toward[1]) +
                       lx * ly * std::fabs(a.toward[2])) * scale * scale;
  Coverage tq = coverage(render_mesh_view(m, View::ThreeQuarter, o));
  INFO("three-quarter pixels " << tq.pixels << ", predicted " << area);
  CHECK(std::fabs(tq.pixels - area) <= 0.03 * area);
  // Its width: the projections of the box's corners along `right`.
  double w = 0;
  for (int c = 0; c < 8; c++)
    for (int d = 0; d < 8; d++) {
      double dx = (c & 1) - (d & 1), dy = ((c & 2) - (d & 2)) / 2, dz = ((c & 4) - (d & 4)) / 4;
      w = std::max(w, proj(a.right, dx * lx, dy * ly, dz * lz));
    }
  CHECK(std::abs((tq.x1 - tq.x0 + 1) - w * scale) <= 2);
}

TEST_CASE("render: shading is flat per face and lights both sides") {
  // One triangle, drawn with both windings: the same pixels, the same colour.
  Mesh a, b;
  a.vertices = b.vertices = {{0, 0, 0}, {1, 0, 0}, {0, 0, 1}};
  a.faces = {{0, 1, 2}};
  b.faces = {{0, 2, 1}};
  const RenderOptions o = plain(64);
  Image ia = render_mesh_view(a, View::ThreeQuarter, o), ib = render_mesh_view(b, View::ThreeQuarter, o);
  CHECK(ia.rgb == ib.rgb);
  Coverage c = coverage(ia);
  CHECK(c.pixels > 200);
  // Flat: every covered pixel has one colour, darker than the background (lit, not white).
  Rgb first{};
  bool have = false, same = true;
  for (int y = 0; y < ia.height; y++)
    for (int x = 0; x < ia.width; x++)
      if (!is_background(ia.at(x, y))) {
        if (!have) first = ia.at(x, y), have = true;
        same = same && ia.at(x, y) == first;
      }
  CHECK(same);
  CHECK(int(first[0]) + first[1] + first[2] < 3 * 240);
  CHECK(int(first[0]) + first[1] + first[2] > 3 * 40);
}

TEST_CASE("render: a contact sheet has both views of every mesh, labels, and an empty cell for an empty mesh") {
  RenderOptions o;
  o.cell = 96;
  std::vector<Mesh> meshes = {box(1, 1, 1), box(1, 2, 3), Mesh{}, box(3, 1, 1)};
  Image sheet = render_contact_sheet(meshes, {"cube", "tall", "nothing", "long"}, o);
  // Four meshes: two columns, two rows of (2 views) x (view + label strip), 1 px grid lines.
  const int columns = 2, rows = 2, cell_w = 2 * o.cell;
  const int cell_h = (sheet.height - (rows - 1)) / rows;
  CHECK(sheet.width == columns * cell_w + (columns - 1));
  CHECK(cell_h > o.cell);
  CHECK(cell_h < o.cell + 24);
  for (int i = 0; i < 4; i++) {
    const int x = (i % columns) * (cell_w + 1), y = (i / columns) * (cell_h + 1);
    const int64_t left = coverage(sheet, x + 2, y, x + o.cell - 2, y + o.cell).pixels;
    const int64_t right = coverage(sheet, x + o.cell + 2, y, x + cell_w - 2, y + o.cell).pixels;
    const int64_t label = coverage(sheet, x, y + o.cell, x + cell_w, y + cell_h).pixels;
    INFO("mesh " << i << ": left " << left << ", right " << right << ", label " << label);
    if (i == 2) {  // the empty mesh: no drawing, but a label saying so
      CHECK(left == 0);
      CHECK(right < 30);  // only the divider between the views
    } else {
      CHECK(left > o.cell * o.cell / 20);
      CHECK(right > o.cell * o.cell / 20);
    }
    CHECK(label > 20);
  }
  // The blank cell's label says "empty" once, also under ./sample's labels that end with the status.
  CHECK(cell_label("nothing", Mesh{}) == "nothing (empty)");
  CHECK(cell_label("", Mesh{}) == "(empty)");
  CHECK(cell_label("sample_003  0 faces, empty", Mesh{}) == "sample_003  0 faces, empty");
  CHECK(cell_label("cube", box(1, 1, 1)) == "cube");
  // Without labels: no label strip.
  o.labels = false;
  Image bare = render_contact_sheet({box(1, 1, 1)}, {}, o);
  CHECK(bare.width == 2 * o.cell);
  CHECK(bare.height == o.cell);
  // Bad input is named.
  Mesh bad = box(1, 1, 1);
  bad.faces.push_back({0, 1, 8});
  CHECK_THROWS_AS(render_contact_sheet({bad}, {"bad"}, o), Error);
  CHECK_THROWS_AS(render_contact_sheet({box(1, 1, 1)}, {"a", "b"}, o), Error);
  CHECK_THROWS_AS(render_contact_sheet({}, {}, o), Error);
}

TEST_CASE("render: PNG bytes carry the signature, an IHDR of the image's size, valid CRCs and IEND") {
  Image img(37, 23, {10, 20, 30});
  draw_line(img, 0, 0, 36, 22, {250, 0, 0});
  const std::string path = "build/test_render_signature.png";
  write_png(path, img);
  const std::string file = read_file_bytes(path);
  const std::vector<uint8_t> b(file.begin(), file.end());
  CHECK(b == encode_png(img));
  REQUIRE(b.size() > 8 + 25 + 12);
  const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  CHECK(std::equal(signature, signature + 8, b.begin()));
  // IHDR: length 13, type, width, height, bit depth 8, colour type 2 (RGB), then its CRC.
  CHECK(be32(b, 8) == 13);
  CHECK(std::string(b.begin() + 12, b.begin() + 16) == "IHDR");
  CHECK(be32(b, 16) == 37);
  CHECK(be32(b, 20) == 23);
  CHECK(b[24] == 8);
  CHECK(b[25] == 2);
  // Every chunk's CRC (over type and data) is right, and the last chunk is IEND.
  size_t at = 8;
  std::string last;
  int chunks = 0;
  while (at + 12 <= b.size()) {
    const uint32_t len = be32(b, at);
    REQUIRE(at + 12 + len <= b.size());
    CHECK(crc32(&b[at + 4], 4 + len) == be32(b, at + 8 + len));
    last = std::string(b.begin() + at + 4, b.begin() + at + 8);
    at += 12 + len;
    chunks++;
  }
  CHECK(at == b.size());
  CHECK(last == "IEND");
  CHECK(chunks >= 3);
  CHECK_THROWS_AS(write_png("/proc/no/such/dir/x.png", img), Error);
}

TEST_CASE("render: the golden meshes render non-blank, in both views") {
  const std::vector<std::string> files = list_mesh_files(golden("meshes"));
  REQUIRE(files.size() == 5);  // LICENSE.txt is not a mesh
  CHECK(std::is_sorted(files.begin(), files.end()));
  std::vector<Mesh> meshes;
  std::vector<std::string> labels;
  RenderOptions o;
  o.cell = 96;
  for (const std::string& f : files) {
    meshes.push_back(read_mesh(f));
    labels.push_back(mesh_label(f, meshes.back()));
    CHECK(labels.back().find(" faces") != std::string::npos);
    for (View v : {View::ThreeQuarter, View::Top}) {
      Coverage c = coverage(render_mesh_view(meshes.back(), v, o));
      INFO(f << " view " << int(v) << ": " << c.pixels << " pixels");
      CHECK(c.pixels > o.cell * o.cell / 50);
    }
  }
  const std::string path = "build/test_render_golden.png";
  render_meshes_to_png(meshes, labels, path, o);
  CHECK(std::filesystem::file_size(path) > 1000);
  CHECK_THROWS_AS(list_mesh_files("build/no_such_folder"), Error);
}

TEST_CASE("render: the training-curve plot of a synthetic log is drawn in all three panels") {
  std::string text;
  for (int s = 10; s <= 400; s += 10) {
    text += str("{\"step\": ", s, ", \"epoch\": 0, \"loss\": ", 5.0 / (1 + s / 100.0), ", \"accuracy\": ", s / 500.0,
                ", \"lr\": ", 1e-3 * (1 - s / 500.0), ", \"grad_norm\": 0.5}\n");
    if (s % 100 == 0)
      text += str("{\"step\": ", s, ", \"val_loss\": ", 5.2 / (1 + s / 100.0), ", \"val_accuracy\": 0.3, "
                  "\"val_perplexity\": 9.0, \"val_tokens\": 100}\n");
  }
  text += "{\"step\": 401, \"skipped\": true, \"loss\": \"nan\", \"grad_norm\": \"inf\"}\n\n";
  TrainingLog log = parse_training_log(text, "synthetic.jsonl");
  CHECK(log.lines == 45);
  CHECK(log.loss.size() == 40);
  CHECK(log.accuracy.size() == 40);
  CHECK(log.lr.size() == 40);
  CHECK(log.val_loss.size() == 4);
  CHECK(log.val_accuracy.size() == 4);
  CHECK(log.skipped_steps == 1);
  CHECK(log.val_loss[1].step == 200);

  Image img = plot_training_log(log, "synthetic", 600, 600);
  CHECK(img.width == 600);
  CHECK(img.height == 600);
  // Coloured pixels (the curves; axes and text are grey) in each third of the picture.
  for (int third = 0; third < 3; third++) {
    int64_t coloured = 0;
    for (int y = third * 200; y < (third + 1) * 200; y++)
      for (int x = 0; x < 600; x++) {
        Rgb c = img.at(x, y);
        if (std::max({c[0], c[1], c[2]}) - std::min({c[0], c[1], c[2]}) > 80) coloured++;
      }
    INFO("panel " << third);
    CHECK(coloured > 300);
  }
  // An empty log still plots (a run that has not logged yet).
  CHECK(coverage(plot_training_log(parse_training_log("", "empty"), "empty", 400, 400)).pixels > 100);
}

TEST_CASE("render: malformed log lines are reported with the file and line number") {
  auto message = [](const std::string& text) {
    try {
      parse_training_log(text, "run/log.jsonl");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string good = "{\"step\": 1, \"loss\": 2.5}\n";
  std::string m = message(good + good + "{\"step\": 3, \"loss\": 2.\n" + good);
  CHECK(m.find("run/log.jsonl:3:") != std::string::npos);
  CHECK(m.find("malformed") != std::string::npos);
  m = message(good + "\n[1, 2]\n");
  CHECK(m.find("run/log.jsonl:3:") != std::string::npos);  // blank lines still count
  CHECK(m.find("object") != std::string::npos);
  m = message("{\"loss\": 2.5}\n");
  CHECK(m.find("run/log.jsonl:1:") != std::string::npos);
  CHECK(m.find("step") != std::string::npos);
  m = message(good + "{\"step\": 2, \"loss\": \"nan\"}\n");  // a string loss without "skipped"
  CHECK(m.find("run/log.jsonl:2:") != std::string::npos);
  CHECK(m.find("loss") != std::string::npos);
  m = message(good + "{\"step\": 2, \"loss\": 1.0} trailing\n");
  CHECK(m.find("run/log.jsonl:2:") != std::string::npos);
  CHECK(message(good + good) == "no error");
}

TEST_CASE("render: ./sample --png draws its samples as a contact sheet") {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);  // CPU decoding of 2-row batches is fastest on one thread
  const std::string out = "build/test_render_samples", png = out + "/sheet.png";
  std::filesystem::remove_all(out);
  std::vector<std::string> args = {"sample", "--ckpt", golden("tiny_checkpoint.pth"), "-n", "2", "--max-faces", "12",
                                   "--seed", "3", "--out", out, "--device", "cpu", "--png", png};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  CHECK(infer::sample_main(static_cast<int>(argv.size()), argv.data()) == 0);
  omp_set_num_threads(threads);
  REQUIRE(std::filesystem::exists(png));
  const std::string bytes = read_file_bytes(png);
  REQUIRE(bytes.size() > 24);
  const std::vector<uint8_t> b(bytes.begin(), bytes.end());
  CHECK(be32(b, 16) == 2 * 256);  // one column of two cells, default 256-pixel views
  CHECK(be32(b, 20) > 2 * 256);
}

TEST_CASE("render: ./train --render-samples draws samples at each validation into the run folder") {
  const std::string dataset = "build/test_render_boxes.npy";
  std::vector<DatasetEntry> entries;
  for (int i = 0; i < 6; i++) {
    DatasetEntry e;
    e.name = str("box", i);
    e.source = "generated";
    e.category = "box";
    e.split = i >= 4 ? "val" : "train";
    e.triangles = normalized_triangles(box(1.0f + 0.2f * i, 0.5f, 0.7f));
    entries.push_back(e);
  }
  write_dataset(dataset, entries, 800);
  TrainConfig c;
  c.dataset = dataset;
  c.model = "tiny";
  c.batch_size = 2;
  c.steps = 2;
  c.device = "cpu";
  c.out_dir = "build/test_runs";
  c.name = "render_preview";
  c.val_interval = 1;
  c.val_batches = 1;
  c.loader_threads = 1;
  c.max_faces = 12;
  c.render_samples = 2;
  c.quiet = true;
  std::filesystem::remove_all(c.run_dir());
  // One thread: the tiny model's products are too small to share between two
  // busy cores (2 s serial, 5 to 13 s with two threads on a loaded machine).
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  {
    Trainer t(c);
    CHECK(t.run() == 0);
  }
  omp_set_num_threads(threads);
  for (const char* step : {"step-0000001.png", "step-0000002.png"}) {
    const std::string path = c.run_dir() + "/samples/" + step;
    INFO(path);
    REQUIRE(std::filesystem::exists(path));
    const std::string bytes = read_file_bytes(path);
    REQUIRE(bytes.size() > 24);
    const std::vector<uint8_t> b(bytes.begin(), bytes.end());
    CHECK(be32(b, 16) == 2 * 192);  // two meshes: one column of 192-pixel views
  }
  // The run's log plots.
  TrainingLog log = read_training_log(c.run_dir());
  CHECK(log.val_loss.size() == 2);
  CHECK(!plot_training_log(log, c.name).empty());
}
