// mesh_vrml.cpp: VRML 2.0 (VRML97) reader for the geometry KiCad's 3D models
// use: IndexedFaceSet shapes (coord Coordinate { point [...] }, coordIndex with
// -1 ending each polygon, ccw) inside Transform (translation, rotation, scale,
// center, scaleOrientation), Group, Anchor, Billboard, Collision (children, not
// the proxy), Switch (the chosen child) and LOD (the first, finest level), with
// DEF/USE. The file is parsed into a small node tree first (any node type, any
// field; PROTO, EXTERNPROTO and ROUTE are skipped), then walked: every shape's
// faces, transformed, are welded into one mesh. Other geometry (Box, Sphere,
// lines, points) is ignored. Parsing is bounded (nesting depth, and the total
// output, since USE can repeat a subtree) because the reader is fuzzed.
#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/mesh.h"
#include "data/text_scan.h"

namespace iflame {

namespace {

struct VNode;
struct VField {
  std::vector<double> numbers;
  std::vector<bool> flags;  // TRUE / FALSE values
  std::vector<const VNode*> nodes;
};
struct VNode {
  std::string type;
  std::map<std::string, VField> fields;
  const VField* field(const std::string& n) const {
    auto it = fields.find(n);
    return it == fields.end() ? nullptr : &it->second;
  }
};

constexpr int kMaxDepth = 100;

class VrmlParser {
 public:
  VrmlParser(std::string_view data, const std::string& name) : data_(data), name_(name) {}

  std::vector<const VNode*> parse_file() {
    std::vector<const VNode*> roots;
    while (next()) {
      if (tok_ == "PROTO" || tok_ == "EXTERNPROTO") skip_proto();
      else if (tok_ == "ROUTE") for (int k = 0; k < 3; k++) expect_word("a ROUTE");
      else roots.push_back(parse_node(0));
    }
    return roots;
  }

 private:
  std::string_view data_;
  const std::string& name_;
  size_t pos_ = 0;
  std::string_view tok_;
  bool is_string_ = false;
  bool has_peek_ = false, peek_ok_ = false;
  std::string_view peek_tok_;
  bool peek_string_ = false;
  size_t peek_pos_ = 0;
  std::deque<VNode> arena_;
  std::map<std::string, const VNode*, std::less<>> defs_;

  [[noreturn]] void fail(const std::string& what) const {
    IFLAME_REJECT(name_, ": byte ", pos_, ": ", what);
  }

  // Reads the next token into (tok, is_string); false at the end.
  bool scan(std::string_view& tok, bool& is_string) {
    const size_t n = data_.size();
    while (pos_ < n) {
      char c = data_[pos_];
      if (c == '#') {
        while (pos_ < n && data_[pos_] != '\n') pos_++;
      } else if (scan::is_space(c) || c == '\n' || c == ',') {
        pos_++;
      } else {
        break;
      }
    }
    if (pos_ >= n) return false;
    is_string = false;
    const size_t start = pos_;
    const char c = data_[pos_];
    if (c == '{' || c == '}' || c == '[' || c == ']') {
      tok = data_.substr(pos_++, 1);
      return true;
    }
    if (c == '"') {
      pos_++;
      while (pos_ < n && data_[pos_] != '"') pos_ += (data_[pos_] == '\\' && pos_ + 1 < n) ? 2 : 1;
      if (pos_ >= n) fail("unterminated string");
      tok = data_.substr(start + 1, pos_ - start - 1);
      pos_++;
      is_string = true;
      return true;
    }
    while (pos_ < n) {
      char d = data_[pos_];
      if (scan::is_space(d) || d == '\n' || d == ',' || d == '#' || d == '"' || d == '{' || d == '}' || d == '[' ||
          d == ']')
        break;
      pos_++;
    }
    tok = data_.substr(start, pos_ - start);
    return true;
  }
  bool next() {
    if (has_peek_) {
      has_peek_ = false;
      tok_ = peek_tok_;
      is_string_ = peek_string_;
      return peek_ok_;
    }
    return scan(tok_, is_string_);
  }
  // The token after the current one (empty at the end).
  std::string_view peek() {
    if (!has_peek_) {
      has_peek_ = true;
      peek_ok_ = scan(peek_tok_, peek_string_);
      if (!peek_ok_) peek_tok_ = std::string_view();
    }
    return peek_tok_;
  }
  void expect_word(const char* what) {
    if (!next() || is_string_ || is_bracket(tok_)) fail(str("expected a name in ", what));
  }
  static bool is_bracket(std::string_view t) { return t == "{" || t == "}" || t == "[" || t == "]"; }
  bool is_value_word(std::string_view t) const {
    double v;
    return t == "TRUE" || t == "FALSE" || t == "NULL" || scan::parse_double(t, v);
  }

  void skip_proto() {
    expect_word("a PROTO");
    int depth = 0;
    bool body_seen = false;
    while (next()) {
      if (is_string_) continue;
      if (tok_ == "[" || tok_ == "{") depth++;
      else if (tok_ == "]" || tok_ == "}") {
        if (--depth < 0) fail("unbalanced brackets in a PROTO");
        if (depth == 0 && tok_ == "}") body_seen = true;
        if (depth == 0 && (body_seen || tok_ == "]") && peek() != "{" && peek() != "[") return;
      }
    }
    fail("file ends inside a PROTO");
  }

  // The current token starts a node: [DEF name] Type { fields } or USE name.
  const VNode* parse_node(int depth) {
    if (depth > kMaxDepth) fail("nodes nested too deeply");
    if (is_string_ || is_bracket(tok_)) fail(str("expected a node, found '", tok_, "'"));
    if (tok_ == "USE") {
      expect_word("USE");
      auto it = defs_.find(tok_);
      if (it == defs_.end()) fail(str("USE of '", tok_, "', which no DEF named before"));
      return it->second;
    }
    std::string def;
    if (tok_ == "DEF") {
      expect_word("DEF");
      def = std::string(tok_);
      expect_word("DEF");
    }
    arena_.emplace_back();
    VNode& node = arena_.back();
    node.type = std::string(tok_);
    if (!next() || tok_ != "{") fail(str("expected '{' after node type '", node.type, "'"));
    while (true) {
      if (!next()) fail(str("file ends inside node '", node.type, "'"));
      if (tok_ == "}") break;
      if (is_string_ || is_bracket(tok_)) fail(str("expected a field name in '", node.type, "', found '", tok_, "'"));
      if (tok_ == "ROUTE") {
        for (int k = 0; k < 3; k++) expect_word("a ROUTE");
        continue;
      }
      if (tok_ == "PROTO" || tok_ == "EXTERNPROTO") {
        skip_proto();
        continue;
      }
      VField& field = node.fields[std::string(tok_)];
      parse_value(field, depth);
    }
    if (!def.empty()) defs_[def] = &node;
    return &node;
  }

  // One item of a value: a number, a string, a boolean, or a node.
  void parse_item(VField& field, int depth) {
    double v;
    if (tok_ == "TRUE" || tok_ == "FALSE") {
      if (!is_string_) field.flags.push_back(tok_ == "TRUE");
      return;
    }
    if (is_string_ || tok_ == "NULL") return;
    if (scan::parse_double(tok_, v)) {
      if (!std::isfinite(v) || std::fabs(v) > 3.0e38) fail(str("bad number '", tok_, "'"));
      field.numbers.push_back(v);
      return;
    }
    field.nodes.push_back(parse_node(depth + 1));
  }

  void parse_value(VField& field, int depth) {
    std::string_view p = peek();
    if (p == "[") {
      next();
      while (true) {
        if (!next()) fail("file ends inside a list");
        if (tok_ == "]") return;
        parse_item(field, depth);
      }
    }
    if (p.empty() || p == "}" || p == "{" || p == "]") return;  // a field with no value
    // A node value (DEF/USE, or a type followed by '{'), else plain values up to the next name.
    next();
    if (!is_string_ && !is_value_word(tok_)) {
      field.nodes.push_back(parse_node(depth + 1));
      return;
    }
    parse_item(field, depth);
    while (true) {
      p = peek();
      if (p.empty() || (!peek_string_ && !is_value_word(p))) return;
      next();
      parse_item(field, depth);
    }
  }
};

// Row-major 3x4 affine transform.
using Affine = std::array<double, 12>;
constexpr Affine kIdentity = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};

Affine compose(const Affine& a, const Affine& b) {  // a * b
  Affine r{};
  for (int i = 0; i < 3; i++) {
    for (int j = 0; j < 4; j++) {
      double s = j == 3 ? a[4 * i + 3] : 0;
      for (int k = 0; k < 3; k++) s += a[4 * i + k] * b[4 * k + j];
      r[4 * i + j] = s;
    }
  }
  return r;
}

Affine translation(double x, double y, double z) { return {1, 0, 0, x, 0, 1, 0, y, 0, 0, 1, z}; }
Affine scaling(double x, double y, double z) { return {x, 0, 0, 0, 0, y, 0, 0, 0, 0, z, 0}; }
// Axis-angle rotation (Rodrigues); a zero axis is no rotation.
Affine rotation(double x, double y, double z, double angle) {
  const double len = std::sqrt(x * x + y * y + z * z);
  if (len == 0) return kIdentity;
  x /= len, y /= len, z /= len;
  const double c = std::cos(angle), s = std::sin(angle), t = 1 - c;
  return {t * x * x + c,     t * x * y - s * z, t * x * z + s * y, 0,
          t * x * y + s * z, t * y * y + c,     t * y * z - s * x, 0,
          t * x * z - s * y, t * y * z + s * x, t * z * z + c,     0};
}

// Walks the node tree and collects the faces of every IndexedFaceSet.
class VrmlWalker {
 public:
  VrmlWalker(const std::string& name, Mesh& mesh) : name_(name), mesh_(mesh) {}
  int parts = 0;

  void walk(const VNode* node, const Affine& m, int depth) {
    IFLAME_REQUIRE(depth <= kMaxDepth, name_, ": USE nesting too deep");
    const std::string& t = node->type;
    if (t == "Transform") return walk_children(node->field("children"), compose(m, transform_of(*node)), depth);
    if (t == "Shape") {
      if (const VField* g = node->field("geometry"))
        for (const VNode* geo : g->nodes)
          if (geo->type == "IndexedFaceSet") add_face_set(*geo, m);
      return;
    }
    if (t == "Switch") {
      const VField* which = node->field("whichChoice");
      const VField* choice = node->field("choice");
      if (which && choice && !which->numbers.empty() && which->numbers[0] >= 0 &&
          which->numbers[0] < static_cast<double>(choice->nodes.size()))
        walk(choice->nodes[static_cast<size_t>(which->numbers[0])], m, depth + 1);
      return;
    }
    if (t == "LOD") {
      const VField* level = node->field("level");
      if (level && !level->nodes.empty()) walk(level->nodes[0], m, depth + 1);
      return;
    }
    walk_children(node->field("children"), m, depth);  // Group, Anchor, Billboard, Collision, ...
  }

 private:
  const std::string& name_;
  Mesh& mesh_;

  void walk_children(const VField* children, const Affine& m, int depth) {
    if (children)
      for (const VNode* c : children->nodes) walk(c, m, depth + 1);
  }

  static std::vector<double> numbers(const VNode& n, const char* field, std::vector<double> fallback) {
    const VField* f = n.field(field);
    if (!f || f->numbers.size() < fallback.size()) return fallback;
    return std::vector<double>(f->numbers.begin(), f->numbers.begin() + fallback.size());
  }

  // T * C * R * SR * S * -SR * -C (the VRML order).
  static Affine transform_of(const VNode& n) {
    auto tr = numbers(n, "translation", {0, 0, 0});
    auto ce = numbers(n, "center", {0, 0, 0});
    auto ro = numbers(n, "rotation", {0, 0, 1, 0});
    auto sc = numbers(n, "scale", {1, 1, 1});
    auto so = numbers(n, "scaleOrientation", {0, 0, 1, 0});
    Affine m = compose(translation(tr[0], tr[1], tr[2]), translation(ce[0], ce[1], ce[2]));
    m = compose(m, rotation(ro[0], ro[1], ro[2], ro[3]));
    m = compose(m, rotation(so[0], so[1], so[2], so[3]));
    m = compose(m, scaling(sc[0], sc[1], sc[2]));
    m = compose(m, rotation(so[0], so[1], so[2], -so[3]));
    return compose(m, translation(-ce[0], -ce[1], -ce[2]));
  }

  void add_face_set(const VNode& set, const Affine& m) {
    const VField* coord = set.field("coord");
    const VField* index = set.field("coordIndex");
    if (!coord || coord->nodes.empty() || !index) return;
    const VField* point = coord->nodes[0]->field("point");
    if (!point) return;
    const size_t np = point->numbers.size() / 3;
    IFLAME_REQUIRE(mesh_.vertices.size() + np <= (size_t(1) << 26), name_, ": more than 2^26 vertices in all");
    const VField* ccw_field = set.field("ccw");
    const bool ccw = !ccw_field || ccw_field->flags.empty() || ccw_field->flags[0];
    const size_t base = mesh_.vertices.size();
    for (size_t i = 0; i < np; i++) {
      const double* p = &point->numbers[3 * i];
      std::array<float, 3> v;
      for (int r = 0; r < 3; r++)
        v[r] = static_cast<float>(m[4 * r] * p[0] + m[4 * r + 1] * p[1] + m[4 * r + 2] * p[2] + m[4 * r + 3]);
      mesh_.vertices.push_back(v);
    }
    std::vector<int> poly;
    auto flush = [&] {
      if (poly.size() >= 3)
        for (size_t k = 1; k + 1 < poly.size(); k++) {
          std::array<int, 3> f = {poly[0], poly[k], poly[k + 1]};
          if (!ccw) std::swap(f[1], f[2]);
          mesh_.faces.push_back(f);
        }
      poly.clear();
    };
    for (double d : index->numbers) {
      IFLAME_REQUIRE(d == std::floor(d) && d >= -1 && d < static_cast<double>(np), name_, ": coordIndex ", d,
                   " with ", np, " points");
      if (d < 0) flush();
      else poly.push_back(static_cast<int>(base + static_cast<size_t>(d)));
    }
    flush();
    IFLAME_REQUIRE(mesh_.faces.size() <= (size_t(1) << 26), name_, ": more than 2^26 faces in all");
    parts++;
  }
};

}  // namespace

Mesh parse_vrml(std::string_view data, const std::string& name, MeshTraits* traits) {
  IFLAME_REQUIRE(data.substr(0, 10) == "#VRML V2.0", name, ": not a VRML 2.0 file (it must start with '#VRML V2.0')");
  VrmlParser parser(data, name);
  std::vector<const VNode*> roots = parser.parse_file();
  Mesh mesh;
  VrmlWalker walker(name, mesh);
  for (const VNode* r : roots) walker.walk(r, kIdentity, 0);
  check_mesh_finite(mesh, name);
  if (traits) *traits = MeshTraits{false, walker.parts};
  return mesh;
}

}  // namespace iflame
