// mesh.h: a triangle mesh and the mesh file formats the project reads and writes.
//
// Readers: OBJ (v / f, index forms a, a/b, a//c, a/b/c, negative indices),
// PLY (ascii and binary little-endian; vertex x/y/z as float or double; face
// lists with uchar/ushort/int/uint counts and int/uint/short/ushort indices),
// STL (ascii and binary) and OFF. Polygons are fan-triangulated in file order
// (0,1,2), (0,2,3), ... which is how the golden token vectors were made.
// Degenerate triangles are kept: dropping them is the tokenizer's job. Faces
// of 1 or 2 corners (OBJ/PLY/OFF files in the wild have them) are read as
// degenerate triangles (a, b, b) for the same reason.
//
// Game and CAD formats (read for the dataset builder, docs/data.md): VRML 2.0
// IndexedFaceSet (.wrl, Transform/Group nesting, DEF/USE), 0 A.D. PMD, Super-
// TuxKart SPM and Quake-2 MD2 (first frame). Each returns the file's own axes
// (no up-axis change) with every part welded into one mesh, and reports in
// MeshTraits whether the file is skinned (bones), which the builder drops.
//
// Every parser works on a byte buffer (so the fuzz targets can call it) and
// throws iflame::Error naming the file and the line (text) or byte offset
// (binary) of the problem. Writers: OBJ and PLY (ascii or binary).
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace iflame {

struct Mesh {
  std::vector<std::array<float, 3>> vertices;
  std::vector<std::array<int, 3>> faces;  // 0-based vertex indices
};

// What a reader learned about a file besides its geometry.
struct MeshTraits {
  bool skinned = false;  // vertices bound to bones (PMD with bones, SPM "SPMA")
  int parts = 0;         // shapes / buffers welded into the mesh
};

// Parsers over an in-memory file; `name` only appears in error messages.
Mesh parse_obj(std::string_view data, const std::string& name);
Mesh parse_ply(std::string_view data, const std::string& name);
Mesh parse_stl(std::string_view data, const std::string& name);
Mesh parse_off(std::string_view data, const std::string& name);
Mesh parse_vrml(std::string_view data, const std::string& name, MeshTraits* traits = nullptr);
Mesh parse_pmd(std::string_view data, const std::string& name, MeshTraits* traits = nullptr);
Mesh parse_spm(std::string_view data, const std::string& name, MeshTraits* traits = nullptr);
Mesh parse_md2(std::string_view data, const std::string& name, MeshTraits* traits = nullptr);

// Reads a whole file (error naming it when it cannot be opened).
std::string read_file_bytes(const std::string& path);

// Picks the parser by extension (.obj .ply .stl .off .wrl .pmd .spm .md2, any case).
Mesh read_mesh(const std::string& path, MeshTraits* traits = nullptr);
// True for the extensions read_mesh knows.
bool is_mesh_extension(const std::string& path);
Mesh read_obj(const std::string& path);
Mesh read_ply(const std::string& path);
Mesh read_stl(const std::string& path);
Mesh read_off(const std::string& path);

// Writers (through a temporary file and a rename). Vertices are written with
// enough digits (%.9g) to read back the same floats.
void write_obj(const std::string& path, const Mesh& mesh);
void write_ply(const std::string& path, const Mesh& mesh, bool binary = false);
// By extension: .obj or .ply.
void write_mesh(const std::string& path, const Mesh& mesh);

// Throws unless every face index is within [0, vertices.size()).
void check_mesh_indices(const Mesh& mesh, const std::string& name);
// Throws on a non-finite or absurdly large (> 3e38) coordinate.
void check_mesh_finite(const Mesh& mesh, const std::string& name);

}  // namespace iflame
