// test_data_pickle.cpp: numpy arrays in pickles (core/pickle.h) and the
// reference dataset converter (build_dataset --from-pickle): the pickle bytes
// are built here, opcode by opcode, the way Python and numpy write them with
// protocol 2 (_codecs.encode for bytes), 4 (FRAME, STACK_GLOBAL, MEMOIZE,
// SHORT_BINBYTES) and 5 (_frombuffer with an in-band BYTEARRAY8).
#include <algorithm>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/pickle.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/tokenize.h"
#include "tests/test_util.h"
#include "tools/pickle_dataset.h"

using namespace iflame;
using namespace iflame::test;

namespace {

class PickleWriter {
 public:
  explicit PickleWriter(int protocol) : protocol_(protocol) {
    out_ += '\x80';
    out_ += static_cast<char>(protocol);
    if (protocol >= 4) out_ += '\x95' + std::string(8, '\0');  // FRAME (a length hint, not checked)
  }
  std::string finish() { return out_ + "."; }

  void text(const std::string& s) {
    if (protocol_ >= 4) {
      out_ += '\x8c';
      out_ += static_cast<char>(s.size());
    } else {
      out_ += 'X';
      uint32_t n = static_cast<uint32_t>(s.size());
      out_.append(reinterpret_cast<const char*>(&n), 4);
    }
    out_ += s;
    if (protocol_ >= 4) out_ += '\x94';  // MEMOIZE
  }
  void global(const std::string& module, const std::string& name) {
    if (protocol_ >= 4) {
      text(module), text(name);
      out_ += '\x93';
    } else {
      out_ += "c" + module + "\n" + name + "\n";
    }
  }
  void integer(int v) { out_ += 'K', out_ += static_cast<char>(v); }
  void raw_bytes(const std::string& b) {
    if (protocol_ == 2) {  // _codecs.encode(latin-1 text as UTF-8, 'latin1')
      global("_codecs", "encode");
      std::string utf8;
      for (unsigned char c : b) {
        if (c < 0x80) utf8 += static_cast<char>(c);
        else utf8 += static_cast<char>(0xC0 | (c >> 6)), utf8 += static_cast<char>(0x80 | (c & 0x3F));
      }
      out_ += 'X';
      uint32_t n = static_cast<uint32_t>(utf8.size());
      out_.append(reinterpret_cast<const char*>(&n), 4);
      out_ += utf8;
      text("latin1");
      out_ += "\x86R";
    } else if (protocol_ == 5) {
      out_ += '\x96';
      uint64_t n = b.size();
      out_.append(reinterpret_cast<const char*>(&n), 8);
      out_ += b;
    } else {
      out_ += 'B';
      uint32_t n = static_cast<uint32_t>(b.size());
      out_.append(reinterpret_cast<const char*>(&n), 4);
      out_ += b;
    }
  }
  void dtype(const std::string& code) {
    global("numpy", "dtype");
    text(code);
    out_ += "\x89\x88\x87R";  // (code, False, True) REDUCE
    out_ += '(';
    integer(3), text("<"), out_ += "NNN", out_ += "J\xff\xff\xff\xffJ\xff\xff\xff\xff", integer(0);
    out_ += "tb";  // BUILD
  }
  template <typename T>
  void array(const std::vector<T>& values, int rows, const std::string& code) {
    std::string raw(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
    if (protocol_ == 5) {  // _frombuffer(buffer, dtype, shape, order)
      global("numpy.core.numeric", "_frombuffer");
      out_ += '(';
      raw_bytes(raw), dtype(code), integer(rows), integer(3), out_ += '\x86', text("C");
      out_ += "tR";
      return;
    }
    global("numpy.core.multiarray", "_reconstruct");
    global("numpy", "ndarray");
    integer(0), out_ += '\x85', out_ += "C\x01" "b", out_ += "\x87R";
    out_ += '(';
    integer(1), integer(rows), integer(3), out_ += '\x86', dtype(code), out_ += '\x89', raw_bytes(raw);
    out_ += "tb";
  }

  // A list of arrays, built with EMPTY_LIST, MARK ... APPENDS.
  template <typename T>
  void array_list(const std::vector<std::vector<T>>& arrays, const std::string& code) {
    out_ += "](";
    for (const auto& a : arrays) array(a, static_cast<int>(a.size() / 3), code);
    out_ += 'e';
  }
  void string_list(const std::vector<std::string>& names) {
    out_ += "](";
    for (const auto& n : names) text(n);
    out_ += 'e';
  }

  std::string out_;

 private:
  int protocol_;
};

// A cube (8 vertices, 12 triangles) stretched by `sx` along x, its face list
// rotated by `shift` triangles (so the three test cubes differ in topology
// order, as the builder merges files with identical face lists).
std::pair<std::vector<float>, std::vector<int64_t>> cube(float sx, int shift) {
  std::vector<float> v;
  for (int i = 0; i < 8; i++) v.insert(v.end(), {sx * (i & 1), float((i >> 1) & 1), float((i >> 2) & 1)});
  std::vector<int64_t> f = {0, 2, 1, 1, 2, 3, 4, 5, 6, 5, 7, 6, 0, 1, 4, 1, 5, 4,
                            2, 6, 3, 3, 6, 7, 0, 4, 2, 2, 4, 6, 1, 3, 5, 3, 7, 5};
  std::rotate(f.begin(), f.begin() + 3 * shift, f.end());
  return {v, f};
}

std::string reference_pickle(int protocol) {
  PickleWriter w(protocol);
  auto a = cube(1.0f, 0), b = cube(2.0f, 1), c = cube(0.5f, 2);
  w.out_ += "}(";  // EMPTY_DICT, MARK, key value ..., SETITEMS
  w.text("vertices_train"), w.array_list<float>({a.first, b.first}, "f4");
  w.text("faces_train"), w.array_list<int64_t>({a.second, b.second}, "i8");
  w.text("name_train"), w.string_list({"cube", "long_cube"});
  w.text("vertices_val"), w.array_list<float>({c.first}, "f4");
  w.text("faces_val"), w.array_list<int64_t>({c.second}, "i8");
  w.text("name_val"), w.string_list({"short_cube"});
  w.out_ += 'u';
  return w.finish();
}

}  // namespace

TEST_CASE("data: numpy arrays in pickles of protocols 2, 4 and 5") {
  for (int protocol : {2, 4, 5}) {
    CAPTURE(protocol);
    PickleWriter w(protocol);
    w.array<float>({1.5f, -2.0f, 3.0f, 4.0f, 5.0f, 6.25f}, 2, "f4");
    Pickle p = unpickle(w.finish(), "arr.pkl");
    PickledArray a = pickle_numpy_array(*p.root, "arr");
    CHECK(a.descr == "<f4");
    CHECK(a.shape == std::vector<int64_t>{2, 3});
    REQUIRE(a.data.size() == 24);
    float back[6];
    std::memcpy(back, a.data.data(), 24);
    CHECK(back[0] == 1.5f);
    CHECK(back[5] == 6.25f);
  }
  // Anything but a numpy array, or a global off the allow-list, is an error naming the source.
  CHECK(contains(error_of([] {
                   Pickle p = unpickle(std::string("\x80\x02K\x05."), "int.pkl");
                   pickle_numpy_array(*p.root, "int.pkl");
                 }),
                 "int.pkl: not a numpy array"));
  CHECK(contains(error_of([] { unpickle(std::string("\x80\x04\x8c\x02os\x8c\x06system\x93."), "evil.pkl"); }),
                 "unsupported pickle global 'os.system'"));
}

TEST_CASE("data: build_dataset --from-pickle keeps the reference's meshes, names and splits") {
  for (int protocol : {2, 4, 5}) {
    CAPTURE(protocol);
    const std::string path = "build/test_reference.pkl";
    std::ofstream(path, std::ios::binary) << reference_pickle(protocol);
    std::vector<BuildInput> inputs = read_reference_pickle(path);
    REQUIRE(inputs.size() == 3);
    CHECK(inputs[1].name == "long_cube");
    CHECK(inputs[2].split == "val");
    BuildOptions opt;
    opt.min_faces = 1;
    opt.threads = 1;
    BuildReport r = build_dataset(inputs, "build/test_reference.npy", opt);
    CHECK(r.kept == 3);
    CHECK(r.val == 1);
    MeshDataset ds("build/test_reference.npy");
    REQUIRE(ds.size() == 3);
    CHECK(ds.name(2) == "short_cube");
    CHECK(ds.split(2) == "val");
    CHECK(ds.split(0) == "train");
    Mesh m;
    auto c = cube(2.0f, 1);
    for (size_t i = 0; i < c.first.size(); i += 3) m.vertices.push_back({c.first[i], c.first[i + 1], c.first[i + 2]});
    for (size_t i = 0; i < c.second.size(); i += 3)
      m.faces.push_back({int(c.second[i]), int(c.second[i + 1]), int(c.second[i + 2])});
    CHECK(dataset_mesh_tokens(ds, 1, false, 0, 0) == tokenize_mesh(m));
  }
  // A pickle without the expected lists.
  std::ofstream("build/test_reference_bad.pkl", std::ios::binary) << std::string("\x80\x02}.");
  CHECK(contains(error_of([] { read_reference_pickle("build/test_reference_bad.pkl"); }),
                 "build/test_reference_bad.pkl: no list 'vertices_train'"));
}
