// pickle_numpy.cpp: numpy arrays out of an unpickled tree (pickle.h): the
// _reconstruct + BUILD state form (protocols 2 to 4) and the _frombuffer form
// (protocol 5, in-band buffer).
#include "core/error.h"
#include "core/pickle.h"

namespace iflame {

namespace {

using K = PickleValue::Kind;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// numpy.dtype('f4', False, True) with BUILD state (3, '<', ...) -> "<f4".
std::string dtype_descr(const PickleValue* d, const std::string& what) {
  IFLAME_CHECK(d && d->is(K::Reduce) && d->text == "numpy.dtype" && !d->items.empty() && d->items[0]->is(K::String),
               what, ": the array's dtype is not a numpy.dtype");
  const std::string code = d->items[0]->text;
  IFLAME_CHECK(code.size() == 2 && (code[0] == 'f' || code[0] == 'i' || code[0] == 'u' || code[0] == 'b') &&
                   (code[1] == '1' || code[1] == '2' || code[1] == '4' || code[1] == '8'),
               what, ": unsupported dtype '", code, "'");
  std::string order = "<";
  if (d->state && d->state->is(K::Tuple) && d->state->items.size() > 1 && d->state->items[1]->is(K::String))
    order = d->state->items[1]->text;
  IFLAME_CHECK(order != ">", what, ": big-endian arrays are not supported");
  return (code[1] == '1' ? "|" : "<") + code;
}

std::vector<int64_t> shape_of(const PickleValue* t, const std::string& what) {
  IFLAME_CHECK(t && t->is(K::Tuple), what, ": the array's shape is not a tuple");
  std::vector<int64_t> shape;
  for (const PickleValue* d : t->items) {
    IFLAME_CHECK(d->is(K::Int) && d->integer >= 0 && d->integer < (int64_t(1) << 40), what, ": bad dimension");
    shape.push_back(d->integer);
  }
  return shape;
}

}  // namespace

PickledArray pickle_numpy_array(const PickleValue& v, const std::string& what) {
  IFLAME_CHECK(v.is(K::Reduce) && (ends_with(v.text, "._reconstruct") || ends_with(v.text, "._frombuffer")), what,
               ": not a numpy array (a ", v.kind_name(), v.is(K::Reduce) ? " of " + v.text : std::string(), ")");
  PickledArray a;
  bool fortran = false;
  const PickleValue* raw = nullptr;
  if (ends_with(v.text, "._frombuffer")) {  // (buffer, dtype, shape, order)
    IFLAME_CHECK(v.items.size() == 4 && v.items[3]->is(K::String), what, ": malformed numpy _frombuffer call");
    raw = v.items[0];
    a.descr = dtype_descr(v.items[1], what);
    a.shape = shape_of(v.items[2], what);
    fortran = v.items[3]->text == "F";
  } else {  // state (version, shape, dtype, is_fortran, raw)
    const PickleValue* s = v.state;
    IFLAME_CHECK(s && s->is(K::Tuple) && (s->items.size() == 5 || s->items.size() == 4), what,
                 ": a numpy array without its BUILD state");
    const size_t o = s->items.size() == 5 ? 1 : 0;
    a.shape = shape_of(s->items[o], what);
    a.descr = dtype_descr(s->items[o + 1], what);
    fortran = s->items[o + 2]->is(K::Bool) && s->items[o + 2]->boolean;
    raw = s->items[o + 3];
  }
  IFLAME_CHECK(raw && (raw->is(K::Bytes) || raw->is(K::String)), what,
               ": the array's data is not a byte string (object arrays are not supported)");
  int64_t count = 1;
  for (int64_t d : a.shape) count *= d;
  const int64_t item = a.descr[2] - '0';
  IFLAME_CHECK(static_cast<int64_t>(raw->text.size()) == count * item, what, ": the array holds ", raw->text.size(),
               " bytes, its shape and dtype need ", count * item);
  int64_t non_unit = 0;
  for (int64_t d : a.shape) non_unit += d > 1;
  IFLAME_CHECK(!fortran || non_unit <= 1, what, ": Fortran-order arrays are not supported");
  a.data = raw->text;
  return a;
}

}  // namespace iflame
