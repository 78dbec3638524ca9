// fuzz_parsers.cpp: libFuzzer entry point for one parser, chosen at compile time
// (-DFUZZ_FORMAT_obj, _ply, _stl, _off, _wrl, _pmd, _spm, _md2, _json; see `make fuzz` and docs/data.md).
// A parser may reject its input with iflame::Error; anything else (a crash, a
// sanitizer report, another exception type, a mesh whose indices are out of
// range) is a bug.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "data/json.h"
#include "data/mesh.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
#if defined(FUZZ_FORMAT_json)
    iflame::parse_json(text, "fuzz");
#else
#if defined(FUZZ_FORMAT_obj)
    iflame::Mesh m = iflame::parse_obj(text, "fuzz");
#elif defined(FUZZ_FORMAT_ply)
    iflame::Mesh m = iflame::parse_ply(text, "fuzz");
#elif defined(FUZZ_FORMAT_stl)
    iflame::Mesh m = iflame::parse_stl(text, "fuzz");
#elif defined(FUZZ_FORMAT_off)
    iflame::Mesh m = iflame::parse_off(text, "fuzz");
#elif defined(FUZZ_FORMAT_wrl)
    iflame::Mesh m = iflame::parse_vrml(text, "fuzz");
#elif defined(FUZZ_FORMAT_pmd)
    iflame::Mesh m = iflame::parse_pmd(text, "fuzz");
#elif defined(FUZZ_FORMAT_spm)
    iflame::Mesh m = iflame::parse_spm(text, "fuzz");
#elif defined(FUZZ_FORMAT_md2)
    iflame::Mesh m = iflame::parse_md2(text, "fuzz");
#else
#error "define one FUZZ_FORMAT_<format>"
#endif
    for (const auto& f : m.faces)
      for (int v : f)
        if (v < 0 || static_cast<size_t>(v) >= m.vertices.size()) std::abort();
#endif
  } catch (const iflame::Error&) {
  }
  return 0;
}
