// pickle.h: a small, safe unpickler for the protocol-2 subset PyTorch uses in
// checkpoints (docs/spec.md §5). It builds a tree of plain values and never
// executes anything: GLOBAL is accepted only for an allow-list of names
// (torch._utils._rebuild_tensor_v2, torch.*Storage, collections.OrderedDict,
// torch.Size), REDUCE only on the callable ones, and anything else (another
// global, an unknown opcode, a stack underflow, a missing MARK, a bad memo
// index, a truncated string) is an iflame::Error naming the source and the byte
// offset. All values live in an arena owned by the Pickle result, so shared and
// even cyclic references (legal in pickles) cost nothing and leak nothing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace iflame {

struct PickleValue {
  enum class Kind {
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Tuple,
    Dict,
    Global,         // a name from the allow-list: `text` = "module.name"
    PersistentId,   // BINPERSID: `items[0]` is the persistent id (a tuple for torch storages)
    Reduce,         // REDUCE of an allowed callable: `text` = its name, `items` = the arguments
  };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                       // String, Global, Reduce
  std::vector<PickleValue*> items;        // List, Tuple, PersistentId, Reduce
  std::vector<std::pair<PickleValue*, PickleValue*>> entries;  // Dict, in insertion order

  bool is(Kind k) const { return kind == k; }
  bool is_number() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  double as_number() const;  // Int, Float or Bool; throws otherwise
  const char* kind_name() const;
  // Dict lookup by string or integer key; nullptr if absent (or not a dict).
  const PickleValue* get(const std::string& key) const;
  const PickleValue* get(int64_t key) const;

  // Dict insertion with Python semantics (an existing key keeps its place and
  // gets the new value). Keys must be strings, integers, bools or None.
  void set_item(PickleValue* key, PickleValue* value);

 private:
  std::unordered_map<std::string, size_t> index_;  // canonical key -> position in entries
};

struct Pickle {
  const PickleValue* root = nullptr;
  std::vector<std::unique_ptr<PickleValue>> arena;
};

// Names that GLOBAL may load, and of those, the ones REDUCE may call.
bool pickle_global_allowed(const std::string& name);

// Parses `bytes` (a pickle up to its STOP opcode). `source` names it in errors
// ("ckpt.pth:archive/data.pkl").
Pickle unpickle(const std::string& bytes, const std::string& source);

}  // namespace iflame
