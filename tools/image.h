// image.h: an RGB image in memory, the 2D drawing the renderer and the plots
// need (rectangles, antialiased lines, dots, text in a tiny built-in bitmap
// font), and PNG output.
//
// PNG bytes come from stb_image_write (Debian libstb-dev, header only here: the
// implementation is compiled into image.cpp), which deflate-compresses, so
// flat-shaded renders and plots stay small. Text uses stb_easy_font (same
// package): characters built from little rectangles, about 6 px wide and 7 px
// tall at scale 1 (caps and digits), drawn here at integer scales.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace iflame {

using Rgb = std::array<uint8_t, 3>;

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major, 3 bytes per pixel, top row first

  Image() = default;
  Image(int w, int h, Rgb fill = {255, 255, 255});
  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);                // ignores pixels outside the image
  void blend(int x, int y, Rgb c, float alpha);  // alpha in [0, 1]; ignores outside
  bool empty() const { return width == 0 || height == 0; }
};

// Filled rectangle [x0, x1) x [y0, y1), clipped to the image.
void fill_rect(Image& img, int x0, int y0, int x1, int y1, Rgb c);
// Copies src into dst with its top-left corner at (x, y), clipped.
void blit(Image& dst, const Image& src, int x, int y);
// Antialiased line of the given width in pixels (coordinates of pixel centres).
void draw_line(Image& img, double x0, double y0, double x1, double y1, Rgb c, double width = 1.5);
// Antialiased filled disc.
void draw_dot(Image& img, double x, double y, double radius, Rgb c);

// Text with its top-left corner at (x, y); `scale` multiplies the font's pixels.
// Returns the width drawn. Only printable ASCII is drawn ('?' for the rest).
int draw_text(Image& img, int x, int y, const std::string& text, Rgb c, int scale = 1);
int text_width(const std::string& text, int scale = 1);
int text_height(int scale = 1);  // of one line of caps and digits

// PNG bytes (8-bit RGB) and a PNG file (written through a temporary file and a
// rename; throws iflame::Error naming the path when it cannot be written).
std::vector<uint8_t> encode_png(const Image& img);
void write_png(const std::string& path, const Image& img);

}  // namespace iflame
