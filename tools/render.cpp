// render.cpp: the software rasterizer and contact sheets (see render.h).
#include "tools/render.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "data/tokenize.h"

namespace iflame {

namespace {

using V3 = std::array<double, 3>;

V3 sub(const V3& a, const V3& b) { return {a[0] - b[0], a[1] - b[1], a[2] - b[2]}; }
double dot(const V3& a, const V3& b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
V3 cross(const V3& a, const V3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
V3 normalized(const V3& a) {
  double n = std::sqrt(dot(a, a));
  return n > 0 ? V3{a[0] / n, a[1] / n, a[2] / n} : V3{0, 0, 0};
}

const Rgb kBackground = {255, 255, 255};
const Rgb kGrid = {200, 200, 200};
const Rgb kLabel = {40, 40, 40};
const double kBase[3] = {0.62, 0.70, 0.86};  // surface colour, lit fully
const double kAmbient = 0.30, kDiffuse = 0.70, kEdgeDarken = 0.55;

// An orthographic camera: screen x = p.right, screen y = -p.up (rows go down),
// depth = p.toward (larger is nearer the viewer).
struct Camera {
  V3 right, up, toward;
};

Camera camera_for(View view) {
  if (view == View::Top) return {{1, 0, 0}, {0, 0, -1}, {0, 1, 0}};
  const double az = 45 * M_PI / 180, el = 30 * M_PI / 180;
  V3 toward = {std::sin(az) * std::cos(el), std::sin(el), std::cos(az) * std::cos(el)};
  V3 right = normalized(cross({0, 1, 0}, toward));
  return {right, cross(toward, right), toward};
}

// Half the on-screen extent of the unit cube [-0.5, 0.5]^3 in this view: the
// same framing for every mesh.
double cube_half_extent(const Camera& cam) {
  double e = 0;
  for (int c = 0; c < 8; c++) {
    V3 p = {c & 1 ? 0.5 : -0.5, c & 2 ? 0.5 : -0.5, c & 4 ? 0.5 : -0.5};
    e = std::max({e, std::fabs(dot(p, cam.right)), std::fabs(dot(p, cam.up))});
  }
  return e;
}

}  // namespace

Image render_mesh_view(const Mesh& mesh, View view, const RenderOptions& opts) {
  IFLAME_CHECK(opts.cell >= 8 && opts.cell <= 4096, "render: cell size ", opts.cell, " is outside [8, 4096]");
  IFLAME_CHECK(opts.supersample >= 1 && opts.supersample <= 4, "render: supersample ", opts.supersample,
               " is outside [1, 4]");
  const int ss = opts.supersample, size = opts.cell * ss;
  Image out(opts.cell, opts.cell, kBackground);
  if (mesh.faces.empty() || mesh.vertices.empty()) return out;
  check_mesh_indices(mesh, "render");
  const std::vector<Vec3d> verts = normalized_vertices(mesh);  // spec §1: centre, longest side 1

  const Camera cam = camera_for(view);
  // Light from the upper left, in front of the viewer (camera coordinates).
  const V3 light_cam = normalized({-0.35, 0.55, 0.75});
  const V3 light = {light_cam[0] * cam.right[0] + light_cam[1] * cam.up[0] + light_cam[2] * cam.toward[0],
                    light_cam[0] * cam.right[1] + light_cam[1] * cam.up[1] + light_cam[2] * cam.toward[1],
                    light_cam[0] * cam.right[2] + light_cam[1] * cam.up[2] + light_cam[2] * cam.toward[2]};
  const double scale = 0.5 * size * kViewFill / cube_half_extent(cam), centre = 0.5 * size;

  std::vector<V3> screen(verts.size());  // x, y in pixels; z = depth
  for (size_t i = 0; i < verts.size(); i++) {
    screen[i] = {centre + scale * dot(verts[i], cam.right), centre - scale * dot(verts[i], cam.up),
                 dot(verts[i], cam.toward)};
  }

  std::vector<float> depth(size_t(size) * size, -std::numeric_limits<float>::infinity());
  std::vector<float> shade(size_t(size) * size, -1.0f);  // < 0: background
  const double edge_px = 0.6 * ss;                        // edge line half-width
  for (const auto& f : mesh.faces) {
    const V3 &a = screen[f[0]], &b = screen[f[1]], &c = screen[f[2]];
    const double area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
    if (std::fabs(area) < 1e-9) continue;  // edge-on or degenerate: covers no pixel
    const V3 n = normalized(cross(sub(verts[f[1]], verts[f[0]]), sub(verts[f[2]], verts[f[0]])));
    const double lit = kAmbient + kDiffuse * std::fabs(dot(n, light));  // both sides lit
    // Edge i is opposite vertex i; its length turns an edge function into a distance.
    const double len[3] = {std::hypot(c[0] - b[0], c[1] - b[1]), std::hypot(a[0] - c[0], a[1] - c[1]),
                           std::hypot(b[0] - a[0], b[1] - a[1])};
    const int x0 = std::max(0, int(std::floor(std::min({a[0], b[0], c[0]}))));
    const int x1 = std::min(size - 1, int(std::ceil(std::max({a[0], b[0], c[0]}))));
    const int y0 = std::max(0, int(std::floor(std::min({a[1], b[1], c[1]}))));
    const int y1 = std::min(size - 1, int(std::ceil(std::max({a[1], b[1], c[1]}))));
    const double sign = area > 0 ? 1.0 : -1.0;
    for (int y = y0; y <= y1; y++) {
      const double py = y + 0.5;
      for (int x = x0; x <= x1; x++) {
        const double px = x + 0.5;
        // Edge functions, positive inside whatever the winding.
        const double w0 = sign * ((c[0] - b[0]) * (py - b[1]) - (c[1] - b[1]) * (px - b[0]));
        const double w1 = sign * ((a[0] - c[0]) * (py - c[1]) - (a[1] - c[1]) * (px - c[0]));
        const double w2 = sign * ((b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]));
        if (w0 < 0 || w1 < 0 || w2 < 0) continue;
        const double s = w0 + w1 + w2;
        const float z = static_cast<float>((w0 * a[2] + w1 * b[2] + w2 * c[2]) / s);
        const size_t k = size_t(y) * size + x;
        if (z < depth[k]) continue;
        depth[k] = z;
        const bool on_edge = opts.edges && (w0 / len[0] < edge_px || w1 / len[1] < edge_px || w2 / len[2] < edge_px);
        shade[k] = static_cast<float>(on_edge ? lit * kEdgeDarken : lit);
      }
    }
  }

  // Box filter ss x ss samples into one pixel.
  for (int y = 0; y < opts.cell; y++)
    for (int x = 0; x < opts.cell; x++) {
      double acc[3] = {0, 0, 0};
      for (int j = 0; j < ss; j++)
        for (int i = 0; i < ss; i++) {
          const float s = shade[size_t(y * ss + j) * size + (x * ss + i)];
          for (int k = 0; k < 3; k++) acc[k] += s < 0 ? kBackground[k] : 255.0 * std::min(1.0, kBase[k] * s);
        }
      const double inv = 1.0 / (ss * ss);
      out.set(x, y, {uint8_t(std::lround(acc[0] * inv)), uint8_t(std::lround(acc[1] * inv)),
                     uint8_t(std::lround(acc[2] * inv))});
    }
  return out;
}

std::string cell_label(const std::string& label, const Mesh& mesh) {
  if (!mesh.faces.empty()) return label;
  const std::string word = "empty";
  const bool says_so = label.size() >= word.size() && label.compare(label.size() - word.size(), word.size(), word) == 0;
  if (says_so) return label;  // ./sample's labels end with the status, "empty"
  return label.empty() ? "(empty)" : label + " (empty)";
}

Image render_contact_sheet(const std::vector<Mesh>& meshes, const std::vector<std::string>& labels,
                           const RenderOptions& opts) {
  IFLAME_CHECK(!meshes.empty(), "render: no meshes to draw");
  IFLAME_CHECK(labels.empty() || labels.size() == meshes.size(), "render: ", labels.size(), " labels for ",
               meshes.size(), " meshes");
  const int n = static_cast<int>(meshes.size());
  const int columns =
      opts.columns > 0 ? std::min(opts.columns, n) : std::max(1, int(std::ceil(std::sqrt(n / 2.0) - 1e-9)));
  const int rows = (n + columns - 1) / columns;
  const bool labelled = opts.labels && !labels.empty();
  const int text_scale = opts.cell >= 384 ? 2 : 1;
  const int label_h = labelled ? text_height(text_scale) + 8 * text_scale : 0;
  const int gap = opts.grid ? 1 : 0;
  const int cell_w = 2 * opts.cell, cell_h = opts.cell + label_h;
  Image sheet(columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap, kBackground);
  if (opts.grid) {
    for (int c = 1; c < columns; c++) fill_rect(sheet, c * (cell_w + gap) - gap, 0, c * (cell_w + gap), sheet.height, kGrid);
    for (int r = 1; r < rows; r++) fill_rect(sheet, 0, r * (cell_h + gap) - gap, sheet.width, r * (cell_h + gap), kGrid);
  }
  for (int i = 0; i < n; i++) {
    const int x = (i % columns) * (cell_w + gap), y = (i / columns) * (cell_h + gap);
    try {
      blit(sheet, render_mesh_view(meshes[i], View::ThreeQuarter, opts), x, y);
      blit(sheet, render_mesh_view(meshes[i], View::Top, opts), x + opts.cell, y);
    } catch (const Error& e) {
      IFLAME_FAIL("render: mesh ", i, labels.empty() ? std::string() : " (" + labels[i] + ")", ": ", e.what());
    }
    // A faint divider between the two views of a cell.
    fill_rect(sheet, x + opts.cell, y + opts.cell / 8, x + opts.cell + 1, y + opts.cell - opts.cell / 8, {235, 235, 235});
    std::string text = cell_label(labelled ? labels[i] : std::string(), meshes[i]);
    if (!text.empty() && (labelled || meshes[i].faces.empty())) {
      // Shorten from the left (the end of a file name says most) to fit the cell.
      const int room = cell_w - 8 * text_scale;
      if (text_width(text, text_scale) > room) {
        while (text.size() > 1 && text_width("..." + text, text_scale) > room) text.erase(0, 1);
        text = "..." + text;
      }
      const int ty = labelled ? y + opts.cell + 4 * text_scale : y + opts.cell / 2;
      draw_text(sheet, x + 4 * text_scale, ty, text, kLabel, text_scale);
    }
  }
  return sheet;
}

void render_meshes_to_png(const std::vector<Mesh>& meshes, const std::vector<std::string>& labels,
                          const std::string& path, const RenderOptions& opts) {
  write_png(path, render_contact_sheet(meshes, labels, opts));
}

static bool is_mesh_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == ".obj" || ext == ".ply" || ext == ".stl" || ext == ".off";
}

std::vector<std::string> list_mesh_files(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  IFLAME_CHECK(fs::exists(path, ec), "'", path, "' does not exist");
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(path, ec))
    if (entry.is_regular_file() && is_mesh_file(entry.path())) files.push_back(entry.path().string());
  IFLAME_CHECK(!ec, "cannot list '", path, "': ", ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

std::string mesh_label(const std::string& path, const Mesh& mesh) {
  return str(std::filesystem::path(path).filename().string(), "  ", mesh.faces.size(), " faces");
}

}  // namespace iflame
