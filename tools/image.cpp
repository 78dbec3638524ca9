// image.cpp: drawing into an RGB Image and writing it as PNG (stb_image_write).
#include "tools/image.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/error.h"

// The stb headers are system headers (libstb-dev), so their own warnings stay quiet.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>

namespace iflame {

Image::Image(int w, int h, Rgb fill) : width(w), height(h) {
  IFLAME_CHECK(w >= 0 && h >= 0 && int64_t(w) * h <= (int64_t(1) << 28), "image size ", w, "x", h,
               " is out of range");
  rgb.resize(size_t(w) * h * 3);
  for (size_t i = 0; i < rgb.size(); i += 3) rgb[i] = fill[0], rgb[i + 1] = fill[1], rgb[i + 2] = fill[2];
}

Rgb Image::at(int x, int y) const {
  const uint8_t* p = &rgb[(size_t(y) * width + x) * 3];
  return {p[0], p[1], p[2]};
}

void Image::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  uint8_t* p = &rgb[(size_t(y) * width + x) * 3];
  p[0] = c[0], p[1] = c[1], p[2] = c[2];
}

void Image::blend(int x, int y, Rgb c, float alpha) {
  if (x < 0 || y < 0 || x >= width || y >= height || !(alpha > 0)) return;
  alpha = std::min(alpha, 1.0f);
  uint8_t* p = &rgb[(size_t(y) * width + x) * 3];
  for (int k = 0; k < 3; k++) p[k] = static_cast<uint8_t>(std::lround(p[k] + (c[k] - p[k]) * alpha));
}

void fill_rect(Image& img, int x0, int y0, int x1, int y1, Rgb c) {
  x0 = std::max(x0, 0), y0 = std::max(y0, 0);
  x1 = std::min(x1, img.width), y1 = std::min(y1, img.height);
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) img.set(x, y, c);
}

void blit(Image& dst, const Image& src, int x, int y) {
  for (int j = 0; j < src.height; j++)
    for (int i = 0; i < src.width; i++) dst.set(x + i, y + j, src.at(i, j));
}

// Coverage of a pixel by a shape at signed distance d (negative inside): a one
// pixel wide ramp, which is what makes the edges look smooth.
static float coverage(double d) { return static_cast<float>(std::clamp(0.5 - d, 0.0, 1.0)); }

void draw_line(Image& img, double x0, double y0, double x1, double y1, Rgb c, double width) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  const double r = width / 2, dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  const int xa = std::max(0, int(std::floor(std::min(x0, x1) - r - 1)));
  const int xb = std::min(img.width - 1, int(std::ceil(std::max(x0, x1) + r + 1)));
  const int ya = std::max(0, int(std::floor(std::min(y0, y1) - r - 1)));
  const int yb = std::min(img.height - 1, int(std::ceil(std::max(y0, y1) + r + 1)));
  for (int y = ya; y <= yb; y++)
    for (int x = xa; x <= xb; x++) {
      double t = len2 > 0 ? std::clamp(((x - x0) * dx + (y - y0) * dy) / len2, 0.0, 1.0) : 0.0;
      double ex = x - (x0 + t * dx), ey = y - (y0 + t * dy);
      img.blend(x, y, c, coverage(std::sqrt(ex * ex + ey * ey) - r));
    }
}

void draw_dot(Image& img, double x, double y, double radius, Rgb c) { draw_line(img, x, y, x, y, c, 2 * radius); }

int draw_text(Image& img, int x, int y, const std::string& text, Rgb c, int scale) {
  std::string clean = text;
  for (char& ch : clean)
    if (ch < 32 || ch > 126) ch = '?';
  // stb_easy_font emits quads of 4 vertices (x, y, z floats + 4 color bytes).
  struct Vertex {
    float x, y, z;
    unsigned char color[4];
  };
  std::vector<Vertex> quads(clean.size() * 80 + 16);
  const int n = stb_easy_font_print(0, 0, clean.data(), nullptr, quads.data(), int(quads.size() * sizeof(Vertex)));
  for (int q = 0; q < n; q++) {
    const Vertex* v = &quads[size_t(q) * 4];
    int qx0 = int(std::lround(v[0].x)), qy0 = int(std::lround(v[0].y));
    int qx1 = int(std::lround(v[2].x)), qy1 = int(std::lround(v[2].y));
    fill_rect(img, x + std::min(qx0, qx1) * scale, y + std::min(qy0, qy1) * scale, x + std::max(qx0, qx1) * scale,
              y + std::max(qy0, qy1) * scale, c);
  }
  return text_width(text, scale);
}

int text_width(const std::string& text, int scale) {
  std::string clean = text;
  for (char& ch : clean)
    if (ch < 32 || ch > 126) ch = '?';
  return stb_easy_font_width(clean.data()) * scale;
}

int text_height(int scale) { return 7 * scale; }

std::vector<uint8_t> encode_png(const Image& img) {
  IFLAME_CHECK(!img.empty(), "cannot encode an empty image as PNG");
  std::vector<uint8_t> out;
  auto append = [](void* ctx, void* data, int size) {
    auto* o = static_cast<std::vector<uint8_t>*>(ctx);
    o->insert(o->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
  };
  int ok = stbi_write_png_to_func(append, &out, img.width, img.height, 3, img.rgb.data(), img.width * 3);
  IFLAME_CHECK(ok && !out.empty(), "PNG encoding of a ", img.width, "x", img.height, " image failed");
  return out;
}

void write_png(const std::string& path, const Image& img) {
  std::vector<uint8_t> bytes = encode_png(img);
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  IFLAME_CHECK(f, "cannot write '", path, "' (opening ", tmp, " failed)");
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  ok = (std::fclose(f) == 0) && ok;
  std::error_code ec;
  if (ok) std::filesystem::rename(tmp, path, ec);
  if (!ok || ec) {
    std::filesystem::remove(tmp, ec);
    IFLAME_FAIL("cannot write '", path, "'", ok ? " (rename failed)" : " (disk full?)");
  }
}

}  // namespace iflame
