// pickle_dataset.cpp: reference pickle -> builder inputs (pickle_dataset.h).
#include "tools/pickle_dataset.h"

#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/pickle.h"

namespace iflame {

namespace {

// Element e of a little-endian numeric array as double.
double element(const PickledArray& a, size_t e) {
  const char* p = a.data.data() + e * static_cast<size_t>(a.descr[2] - '0');
  const char kind = a.descr[1];
  switch (a.descr[2]) {
    case '1': return kind == 'i' ? double(*reinterpret_cast<const int8_t*>(p)) : double(static_cast<unsigned char>(*p));
    case '2': { int16_t i; uint16_t u; std::memcpy(&i, p, 2); std::memcpy(&u, p, 2); return kind == 'i' ? i : u; }
    case '4': {
      if (kind == 'f') { float f; std::memcpy(&f, p, 4); return f; }
      int32_t i; uint32_t u; std::memcpy(&i, p, 4); std::memcpy(&u, p, 4); return kind == 'i' ? i : double(u);
    }
    default: {
      if (kind == 'f') { double d; std::memcpy(&d, p, 8); return d; }
      int64_t i; std::memcpy(&i, p, 8); return double(i);
    }
  }
}

const PickleValue& list_member(const PickleValue& root, const std::string& key, const std::string& path) {
  const PickleValue* v = root.get(key);
  IFLAME_CHECK(v && v->is(PickleValue::Kind::List), path, ": no list '", key,
               "' (expected the reference's dict of vertices_/faces_/name_ train and val)");
  return *v;
}

}  // namespace

std::vector<BuildInput> read_reference_pickle(const std::string& path) {
  Pickle p = unpickle(read_file_bytes(path), path);
  IFLAME_CHECK(p.root->is(PickleValue::Kind::Dict), path, ": the pickle holds a ", p.root->kind_name(),
               ", expected a dict");
  std::vector<BuildInput> out;
  for (const std::string split : {"train", "val"}) {
    const PickleValue& verts = list_member(*p.root, "vertices_" + split, path);
    const PickleValue& faces = list_member(*p.root, "faces_" + split, path);
    const PickleValue* names = p.root->get("name_" + split);
    IFLAME_CHECK(verts.items.size() == faces.items.size(), path, ": ", verts.items.size(), " vertex arrays but ",
                 faces.items.size(), " face arrays in ", split);
    for (size_t i = 0; i < verts.items.size(); i++) {
      const std::string what = str(path, ": ", split, " mesh ", i);
      const PickledArray v = pickle_numpy_array(*verts.items[i], what + " vertices");
      const PickledArray f = pickle_numpy_array(*faces.items[i], what + " faces");
      IFLAME_CHECK(v.shape.size() == 2 && v.shape[1] == 3 && v.descr[1] == 'f', what, ": vertices must be float [n, 3]");
      IFLAME_CHECK(f.shape.size() == 2 && f.shape[1] == 3 && f.descr[1] != 'f', what, ": faces must be integer [m, 3]");
      auto mesh = std::make_shared<Mesh>();
      for (int64_t r = 0; r < v.shape[0]; r++)
        mesh->vertices.push_back({static_cast<float>(element(v, 3 * r)), static_cast<float>(element(v, 3 * r + 1)),
                                  static_cast<float>(element(v, 3 * r + 2))});
      for (int64_t r = 0; r < f.shape[0]; r++) {
        std::array<int, 3> t;
        for (int k = 0; k < 3; k++) {
          const double idx = element(f, 3 * r + k);
          IFLAME_CHECK(idx >= 0 && idx < static_cast<double>(v.shape[0]), what, ": face ", r, " uses vertex ", idx,
                       " of ", v.shape[0]);
          t[k] = static_cast<int>(idx);
        }
        mesh->faces.push_back(t);
      }
      check_mesh_finite(*mesh, what);
      BuildInput in(path, str(split, "_", i), "");
      if (names && names->is(PickleValue::Kind::List) && i < names->items.size() &&
          names->items[i]->is(PickleValue::Kind::String))
        in.name = names->items[i]->text;
      in.original_path = in.name;
      in.package = "reference-pickle";
      in.mesh = mesh;
      in.split = split;
      out.push_back(std::move(in));
    }
  }
  return out;
}

}  // namespace iflame
