// pickle.cpp: the opcode loop. Stack and MARK handling follow CPython's
// _pickle.c: MARK starts a new frame on a mark stack, and an opcode may not pop
// below the most recent mark (that is a stack underflow, as in CPython).
#include "core/pickle.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace iflame {

namespace {

const char* const kAllowedGlobals[] = {
    "torch._utils._rebuild_tensor_v2", "collections.OrderedDict", "torch.Size",
    "torch.FloatStorage",              "torch.BFloat16Storage",   "torch.HalfStorage",
    "torch.LongStorage",               "torch.IntStorage",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    "numpy.core.numeric._frombuffer",     "numpy._core.numeric._frombuffer",     "_codecs.encode",
};

bool is_numpy_callable(const std::string& name) {
  return name.rfind("numpy.", 0) == 0 && name != "numpy.ndarray";
}

// Canonical dict-key text: Python treats True, 1 and 1.0 as the same key.
bool canonical_key(const PickleValue& k, std::string& out) {
  using K = PickleValue::Kind;
  switch (k.kind) {
    case K::String: out = "s" + k.text; return true;
    case K::Int: out = "i" + std::to_string(k.integer); return true;
    case K::Bool: out = k.boolean ? "i1" : "i0"; return true;
    case K::None: out = "n"; return true;
    case K::Float:
      if (std::isfinite(k.real) && k.real == std::floor(k.real) && std::fabs(k.real) < 9e18) {
        out = "i" + std::to_string(static_cast<int64_t>(k.real));
      } else {
        uint64_t bits;
        std::memcpy(&bits, &k.real, 8);
        out = "f" + std::to_string(bits);
      }
      return true;
    default: return false;
  }
}

class Unpickler {
 public:
  Unpickler(const std::string& bytes, const std::string& source) : b_(bytes), source_(source) {}

  Pickle run() {
    while (true) {
      IFLAME_REQUIRE(pos_ < b_.size(), source_, ": truncated pickle: no STOP opcode before the end (",
                   b_.size(), " bytes)");
      op_at_ = pos_;
      const unsigned char op = static_cast<unsigned char>(b_[pos_++]);
      if (op == '.') break;  // STOP
      step(op);
    }
    IFLAME_REQUIRE(marks_.empty(), source_, ": malformed pickle: STOP at offset ", op_at_, " with an open MARK");
    IFLAME_REQUIRE(stack_.size() == 1, source_, ": malformed pickle: STOP at offset ", op_at_, " leaves ",
                 stack_.size(), " values on the stack (expected 1)");
    out_.root = stack_.back();
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    IFLAME_REJECT(source_, ": ", what, " at offset ", op_at_);
  }

  const unsigned char* take(size_t n, const char* what) {
    if (n > b_.size() - pos_) fail(str("truncated pickle: ", what, " needs ", n, " bytes, ", b_.size() - pos_, " left"));
    const unsigned char* p = reinterpret_cast<const unsigned char*>(b_.data()) + pos_;
    pos_ += n;
    return p;
  }
  uint32_t u8() { return *take(1, "an argument"); }
  uint32_t u16() { const unsigned char* p = take(2, "an argument"); return p[0] | (p[1] << 8); }
  uint32_t u32() {
    const unsigned char* p = take(4, "an argument");
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  }
  std::string line(const char* what) {
    size_t nl = b_.find('\n', pos_);
    if (nl == std::string::npos || nl - pos_ > 512) fail(str("malformed pickle: ", what, " without a newline"));
    std::string s = b_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }

  PickleValue* make(PickleValue::Kind k) {
    out_.arena.push_back(std::make_unique<PickleValue>());
    out_.arena.back()->kind = k;
    return out_.arena.back().get();
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(PickleValue* v) { stack_.push_back(v); }
  PickleValue* pop() {
    if (stack_.size() <= floor()) fail("malformed pickle: stack underflow");
    PickleValue* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PickleValue* top() {
    if (stack_.size() <= floor()) fail("malformed pickle: stack underflow");
    return stack_.back();
  }
  // Pops everything down to the most recent MARK, and the mark.
  std::vector<PickleValue*> pop_mark() {
    if (marks_.empty()) fail("malformed pickle: no MARK to pop to");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleValue*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  PickleValue* tuple(std::vector<PickleValue*> items) {
    PickleValue* t = make(PickleValue::Kind::Tuple);
    t->items = std::move(items);
    return t;
  }
  void set_items(PickleValue* dict, const std::vector<PickleValue*>& kv) {
    if (!dict->is(PickleValue::Kind::Dict)) fail(str("malformed pickle: SETITEM(S) on a ", dict->kind_name()));
    if (kv.size() % 2) fail("malformed pickle: SETITEMS with an odd number of values");
    for (size_t i = 0; i < kv.size(); i += 2) {
      std::string k;
      if (!canonical_key(*kv[i], k)) fail(str("unsupported pickle dict key of type ", kv[i]->kind_name()));
      dict->set_item(kv[i], kv[i + 1]);
    }
  }
  void append(PickleValue* list, const std::vector<PickleValue*>& vs) {
    if (!list->is(PickleValue::Kind::List)) fail(str("malformed pickle: APPEND(S) on a ", list->kind_name()));
    list->items.insert(list->items.end(), vs.begin(), vs.end());
  }
  void memo_put(uint32_t index) { memo_[index] = top(); }
  void memo_get(uint32_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail(str("malformed pickle: memo index ", index, " was never stored"));
    push(it->second);
  }
  PickleValue* reduce(PickleValue* callable, PickleValue* args) {
    using K = PickleValue::Kind;
    if (!callable->is(K::Global)) fail(str("unsupported pickle REDUCE of a ", callable->kind_name()));
    if (!args->is(K::Tuple)) fail(str("malformed pickle: REDUCE arguments are a ", args->kind_name()));
    const std::string& name = callable->text;
    if (name == "collections.OrderedDict") {
      if (!args->items.empty()) fail("unsupported pickle: collections.OrderedDict called with arguments");
      return make(K::Dict);
    }
    if (name == "torch.Size") {  // torch.Size((a, b)) is the tuple (a, b)
      if (args->items.size() != 1 || !(args->items[0]->is(K::Tuple) || args->items[0]->is(K::List)))
        fail("unsupported pickle: torch.Size called without one tuple");
      return tuple(args->items[0]->items);
    }
    if (name == "_codecs.encode") {  // protocol 2's bytes: encode(text, 'latin1')
      if (args->items.size() != 2 || !args->items[0]->is(K::String) || !args->items[1]->is(K::String) ||
          (args->items[1]->text != "latin1" && args->items[1]->text != "latin-1"))
        fail("unsupported pickle: _codecs.encode other than (str, 'latin1')");
      return latin1_bytes(args->items[0]->text);
    }
    if (name == "torch._utils._rebuild_tensor_v2" || is_numpy_callable(name)) {
      PickleValue* r = make(K::Reduce);
      r->text = name;
      r->items = args->items;
      return r;
    }
    fail(str("unsupported pickle: global '", name, "' cannot be called"));
  }

  // UTF-8 text of code points below 256 back to those bytes.
  PickleValue* latin1_bytes(const std::string& utf8) {
    PickleValue* b = make(PickleValue::Kind::Bytes);
    for (size_t i = 0; i < utf8.size(); i++) {
      const unsigned char c = static_cast<unsigned char>(utf8[i]);
      if (c < 0x80) {
        b->text += static_cast<char>(c);
      } else if ((c & 0xFE) == 0xC2 && i + 1 < utf8.size()) {
        b->text += static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(utf8[++i]) & 0x3F));
      } else {
        fail("unsupported pickle: _codecs.encode of a character outside latin-1");
      }
    }
    return b;
  }

  void push_bytes(uint64_t n, PickleValue::Kind kind) {
    const unsigned char* p = take(static_cast<size_t>(std::min<uint64_t>(n, SIZE_MAX)), "a byte string");
    PickleValue* s = make(kind);
    s->text.assign(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    push(s);
  }
  uint64_t u64() {
    const unsigned char* p = take(8, "an argument");
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
  }

  void step(unsigned char op) {
    using K = PickleValue::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        uint32_t v = u8();
        if (v > 5) fail(str("unsupported pickle protocol ", v));
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        std::string module = line("GLOBAL module");
        std::string name = line("GLOBAL name");
        std::string full = module + "." + name;
        if (!pickle_global_allowed(full)) fail(str("unsupported pickle global '", full, "'"));
        PickleValue* g = make(K::Global);
        g->text = full;
        push(g);
        break;
      }
      case 'Q': {  // BINPERSID
        PickleValue* id = pop();
        PickleValue* p = make(K::PersistentId);
        p->items.push_back(id);
        push(p);
        break;
      }
      case 'R': {  // REDUCE
        PickleValue* args = pop();
        PickleValue* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x93: {  // STACK_GLOBAL: module and name from the stack
        PickleValue* name = pop();
        PickleValue* module = pop();
        if (!name->is(K::String) || !module->is(K::String)) fail("malformed pickle: STACK_GLOBAL needs two strings");
        std::string full = module->text + "." + name->text;
        if (!pickle_global_allowed(full)) fail(str("unsupported pickle global '", full, "'"));
        PickleValue* g = make(K::Global);
        g->text = full;
        push(g);
        break;
      }
      case 0x94: memo_put(static_cast<uint32_t>(memo_.size())); break;  // MEMOIZE
      case 0x95: u64(); break;                                            // FRAME: a length hint
      case 'B': push_bytes(u32(), K::Bytes); break;                       // BINBYTES
      case 'C': push_bytes(u8(), K::Bytes); break;                        // SHORT_BINBYTES
      case 0x8e: push_bytes(u64(), K::Bytes); break;                      // BINBYTES8
      case 0x96: push_bytes(u64(), K::Bytes); break;                      // BYTEARRAY8
      case 0x8d: push_bytes(u64(), K::String); break;                     // BINUNICODE8
      case 'b': {  // BUILD: a numpy object's state is kept; an OrderedDict's attribute dict is dropped
        PickleValue* state = pop();
        PickleValue* obj = top();
        if (obj->is(K::Reduce) && is_numpy_callable(obj->text)) {
          obj->state = state;
          break;
        }
        if (!obj->is(K::Dict) || !(state->is(K::Dict) || state->is(K::None)))
          fail(str("unsupported pickle BUILD of a ", obj->kind_name(), " with a ", state->kind_name()));
        break;
      }
      case '}': push(make(K::Dict)); break;
      case ']': push(make(K::List)); break;
      case ')': push(make(K::Tuple)); break;
      case '(': marks_.push_back(stack_.size()); break;
      case 't': push(tuple(pop_mark())); break;
      case 0x85: {  // TUPLE1
        PickleValue* a = pop();
        push(tuple({a}));
        break;
      }
      case 0x86: {  // TUPLE2
        PickleValue* b = pop();
        PickleValue* a = pop();
        push(tuple({a, b}));
        break;
      }
      case 0x87: {  // TUPLE3
        PickleValue* c = pop();
        PickleValue* b = pop();
        PickleValue* a = pop();
        push(tuple({a, b, c}));
        break;
      }
      case 's': {  // SETITEM
        PickleValue* v = pop();
        PickleValue* k = pop();
        set_items(top(), {k, v});
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<PickleValue*> kv = pop_mark();
        set_items(top(), kv);
        break;
      }
      case 'a': {  // APPEND
        PickleValue* v = pop();
        append(top(), {v});
        break;
      }
      case 'e': {  // APPENDS
        std::vector<PickleValue*> vs = pop_mark();
        append(top(), vs);
        break;
      }
      case 'X':      // BINUNICODE
      case 0x8c: {   // SHORT_BINUNICODE
        uint32_t n = op == 'X' ? u32() : u8();
        const unsigned char* p = take(n, "a string");
        PickleValue* s = make(K::String);
        s->text.assign(reinterpret_cast<const char*>(p), n);
        push(s);
        break;
      }
      case 'J': {  // BININT: signed 32-bit
        PickleValue* v = make(K::Int);
        v->integer = static_cast<int32_t>(u32());
        push(v);
        break;
      }
      case 'K': {  // BININT1
        PickleValue* v = make(K::Int);
        v->integer = u8();
        push(v);
        break;
      }
      case 'M': {  // BININT2
        PickleValue* v = make(K::Int);
        v->integer = u16();
        push(v);
        break;
      }
      case 0x8a: {  // LONG1: n-byte little-endian two's complement
        uint32_t n = u8();
        if (n > 8) fail(str("unsupported pickle LONG1 of ", n, " bytes (more than 64 bits)"));
        const unsigned char* p = take(n, "a long integer");
        uint64_t u = 0;
        for (uint32_t i = 0; i < n; i++) u |= uint64_t(p[i]) << (8 * i);
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
        PickleValue* v = make(K::Int);
        std::memcpy(&v->integer, &u, 8);
        push(v);
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        const unsigned char* p = take(8, "a float");
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | p[i];
        PickleValue* v = make(K::Float);
        std::memcpy(&v->real, &u, 8);
        push(v);
        break;
      }
      case 'N': push(make(K::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        PickleValue* v = make(K::Bool);
        v->boolean = op == 0x88;
        push(v);
        break;
      }
      case 'q': memo_put(u8()); break;   // BINPUT
      case 'r': memo_put(u32()); break;  // LONG_BINPUT
      case 'h': memo_get(u8()); break;   // BINGET
      case 'j': memo_get(u32()); break;  // LONG_BINGET
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(str("unsupported pickle opcode ", hex));
      }
    }
  }

  const std::string& b_;
  const std::string& source_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<PickleValue*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, PickleValue*> memo_;
  Pickle out_;
};

}  // namespace

bool pickle_global_allowed(const std::string& name) {
  for (const char* a : kAllowedGlobals)
    if (name == a) return true;
  return false;
}

double PickleValue::as_number() const {
  switch (kind) {
    case Kind::Int: return static_cast<double>(integer);
    case Kind::Float: return real;
    case Kind::Bool: return boolean ? 1.0 : 0.0;
    default: IFLAME_REJECT("pickle value is a ", kind_name(), ", not a number");
  }
}

const char* PickleValue::kind_name() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::PersistentId: return "persistent id";
    case Kind::Reduce: return "reduce";
    case Kind::Bytes: return "bytes";
  }
  return "?";
}

const PickleValue* PickleValue::get(const std::string& key) const {
  auto it = index_.find("s" + key);
  return it == index_.end() ? nullptr : entries[it->second].second;
}

const PickleValue* PickleValue::get(int64_t key) const {
  auto it = index_.find("i" + std::to_string(key));
  return it == index_.end() ? nullptr : entries[it->second].second;
}

void PickleValue::set_item(PickleValue* key, PickleValue* value) {
  std::string k;
  IFLAME_REQUIRE(kind == Kind::Dict, "pickle: set_item on a ", kind_name());
  IFLAME_REQUIRE(canonical_key(*key, k), "pickle: unsupported dict key of type ", key->kind_name());
  auto it = index_.find(k);
  if (it != index_.end()) {
    entries[it->second].second = value;
  } else {
    index_.emplace(k, entries.size());
    entries.emplace_back(key, value);
  }
}

Pickle unpickle(const std::string& bytes, const std::string& source) { return Unpickler(bytes, source).run(); }

}  // namespace iflame
