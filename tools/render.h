// render.h: meshes to pictures without a GPU or a window.
//
// A software z-buffer rasterizer draws each mesh flat-shaded (both sides lit: a
// fixed directional light, given relative to the camera, plus ambient), with
// its triangle edges darkened, from two views: three-quarter (azimuth 45 deg,
// elevation 30 deg, y up) and top (looking down -y, +z toward the bottom of the
// picture). Projection is orthographic. Every mesh is first normalized like
// spec §1 (bounding-box centre to the origin, largest side 1), and every view
// frames the whole unit cube the same way, so cells of a sheet are comparable
// (the longest side of every mesh has the same length on screen; a flat mesh
// looks flat).
//
// A contact sheet is a grid of cells, one per mesh: the two views side by side
// and an optional label strip under them. The sheet is supersampled (rendered
// at ss x ss and box-filtered) so edges are smooth.
#pragma once
#include <string>
#include <vector>

#include "data/mesh.h"
#include "tools/image.h"

namespace iflame {

enum class View { ThreeQuarter, Top };

// The unit cube's projection spans this fraction of a view's width or height
// (whichever is larger), centred: the margin around every mesh.
constexpr double kViewFill = 0.94;

struct RenderOptions {
  int cell = 256;        // pixels per view (each mesh takes 2*cell x cell, plus its label)
  int columns = 0;       // meshes per row; 0 picks about a square sheet
  int supersample = 2;   // 1 (off) .. 4
  bool edges = true;     // darken triangle edges
  bool labels = true;    // label strip under each cell (when labels are given)
  bool grid = true;      // 1 px lines between cells
};

// One view of one mesh, cell x cell pixels (supersampling as in opts).
// Throws iflame::Error for a face index out of range or a non-finite vertex.
Image render_mesh_view(const Mesh& mesh, View view, const RenderOptions& opts = {});

// The text under a cell: the label, and "(empty)" for a mesh with no faces
// unless the label already ends with "empty" (./sample's status names).
std::string cell_label(const std::string& label, const Mesh& mesh);

// labels: empty, or one per mesh (a mesh with no faces gets an "(empty)" cell).
Image render_contact_sheet(const std::vector<Mesh>& meshes, const std::vector<std::string>& labels,
                           const RenderOptions& opts = {});

// The hook for ./sample (--png) and ./train (samples at each validation).
void render_meshes_to_png(const std::vector<Mesh>& meshes, const std::vector<std::string>& labels,
                          const std::string& path, const RenderOptions& opts = {});

// A mesh file -> itself; a folder -> its mesh files (.obj .ply .stl .off, any
// case; not recursive), sorted by name. Throws when the path does not exist.
std::vector<std::string> list_mesh_files(const std::string& path);

// "NAME  F faces" for a sheet label (NAME: the file name without its folder).
std::string mesh_label(const std::string& path, const Mesh& mesh);

}  // namespace iflame
