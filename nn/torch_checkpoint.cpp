// torch_checkpoint.cpp: from the pickle tree to tensors. A tensor in the pickle
// is REDUCE(_rebuild_tensor_v2, (persistent_id, offset, size, stride, ...)),
// the persistent id being ('storage', torch.<T>Storage, key, location, numel);
// its bytes are in the zip entry <archive>/data/<key>. Every size, stride and
// offset is checked against the storage before anything is allocated or read.
#include "nn/torch_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/pickle.h"
#include "core/zip_reader.h"

namespace iflame {

namespace {

using K = PickleValue::Kind;

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal (man * 2^-24): shift the leading one up to the implicit bit
      int e = 1;
      while ((man & 0x400) == 0) {
        man <<= 1;
        e--;
      }
      u = sign | uint32_t(e + 127 - 15) << 23 | (man & 0x3ff) << 13;
    }
  } else {
    u = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

enum class StorageType { F32, BF16, F16, I64, I32 };

struct StorageInfo {
  const char* global;
  StorageType type;
  size_t item;
  bool floating;
};
const StorageInfo kStorages[] = {
    {"torch.FloatStorage", StorageType::F32, 4, true},   {"torch.BFloat16Storage", StorageType::BF16, 2, true},
    {"torch.HalfStorage", StorageType::F16, 2, true},    {"torch.LongStorage", StorageType::I64, 8, false},
    {"torch.IntStorage", StorageType::I32, 4, false},
};

class Loader {
 public:
  explicit Loader(std::unique_ptr<ByteSource> source) : zip_(std::move(source)), file_(zip_.path()) {}

  TorchCheckpoint run() {
    find_archive_prefix();
    if (const ZipEntry* bo = zip_.find(prefix_ + "byteorder")) {
      std::string order = zip_.read(bo->name);
      IFLAME_CHECK(order == "little", file_, ": checkpoint byte order is '", order, "' (only little supported)");
    }
    std::string pkl_name = prefix_ + "data.pkl";
    Pickle pickle = unpickle(zip_.read(pkl_name), file_ + ":" + pkl_name);
    const PickleValue* root = pickle.root;
    IFLAME_CHECK(root->is(K::Dict), file_, ": checkpoint pickle is a ", root->kind_name(), ", expected a dict");

    TorchCheckpoint ck;
    const PickleValue* model = nullptr;
    for (const char* key : {"model_state_dict", "state_dict", "model"})
      if ((model = root->get(key))) break;
    if (!model) model = root;  // a bare state dict
    IFLAME_CHECK(model->is(K::Dict), file_, ": model state is a ", model->kind_name(), ", expected a dict");
    for (const auto& kv : model->entries) {
      IFLAME_CHECK(kv.first->is(K::String), file_, ": model state has a key of type ", kv.first->kind_name());
      std::string name = strip_prefixes(kv.first->text);
      IFLAME_CHECK(kv.second->is(K::Reduce), file_, ": model state entry '", kv.first->text, "' is a ",
                   kv.second->kind_name(), ", not a tensor");
      IFLAME_CHECK(ck.find_param(name) == nullptr, file_, ": model state has '", name, "' twice (after ",
                   "stripping the _orig_mod./module. prefixes)");
      ck.model.emplace_back(name, tensor(kv.second, kv.first->text, /*floating_only=*/true));
    }

    const PickleValue* opt = root->get("optimizer_state_dict");
    if (!opt) opt = root->get("optimizer");
    if (opt && opt->is(K::Dict)) read_optimizer(*opt, ck);

    if (const PickleValue* v = root->get("epoch"); v && v->is(K::Int)) ck.epoch = v->integer;
    if (const PickleValue* v = root->get("data_iter_step"); v && v->is(K::Int)) ck.data_iter_step = v->integer;
    if (const PickleValue* v = root->get("loss")) {
      if (v->is(K::Int) || v->is(K::Float)) ck.loss = v->as_number();
      else if (v->is(K::Reduce)) ck.loss = scalar_tensor(v, "loss");
    }
    return ck;
  }

 private:
  void find_archive_prefix() {
    const ZipEntry* best = nullptr;
    for (const ZipEntry& e : zip_.entries()) {
      const std::string& n = e.name;
      if (n != "data.pkl" && !(n.size() > 9 && n.compare(n.size() - 9, 9, "/data.pkl") == 0)) continue;
      if (std::count(n.begin(), n.end(), '/') > 1) continue;
      IFLAME_CHECK(best == nullptr, file_, ": checkpoint has two pickles, '", best->name, "' and '", n, "'");
      best = &e;
    }
    IFLAME_CHECK(best != nullptr, file_, ": zip archive is not a PyTorch checkpoint (no <name>/data.pkl entry)");
    prefix_ = best->name.substr(0, best->name.size() - 8);
  }

  static std::string strip_prefixes(std::string name) {
    for (bool again = true; again;) {
      again = false;
      for (const char* p : {"_orig_mod.", "module."}) {
        size_t n = std::strlen(p);
        if (name.size() > n && name.compare(0, n, p) == 0) {
          name = name.substr(n);
          again = true;
        }
      }
    }
    return name;
  }

  int64_t int_arg(const PickleValue* v, const std::string& what, const std::string& field) {
    IFLAME_CHECK(v->is(K::Int), file_, ": tensor '", what, "': ", field, " is a ", v->kind_name(), ", expected an int");
    return v->integer;
  }

  // Rebuilds the tensor of a _rebuild_tensor_v2 node as a contiguous CPU tensor
  // (f32 for floating storages, i32 for integer ones).
  Tensor tensor(const PickleValue* v, const std::string& what, bool floating_only) {
    IFLAME_CHECK(v->is(K::Reduce) && v->text == "torch._utils._rebuild_tensor_v2", file_, ": '", what,
                 "' is a ", v->kind_name(), " ", v->text, ", expected a tensor");
    IFLAME_CHECK(v->items.size() >= 4, file_, ": tensor '", what, "': _rebuild_tensor_v2 has ", v->items.size(),
                 " arguments, expected at least 4");
    const PickleValue* pid = v->items[0];
    IFLAME_CHECK(pid->is(K::PersistentId) && pid->items.size() == 1 && pid->items[0]->is(K::Tuple) &&
                     pid->items[0]->items.size() == 5,
                 file_, ": tensor '", what, "': storage is not a persistent id ('storage', type, key, location, numel)");
    const auto& id = pid->items[0]->items;
    IFLAME_CHECK(id[0]->is(K::String) && id[0]->text == "storage" && id[1]->is(K::Global) && id[2]->is(K::String),
                 file_, ": tensor '", what, "': malformed storage persistent id");
    const StorageInfo* info = nullptr;
    for (const StorageInfo& s : kStorages)
      if (id[1]->text == s.global) info = &s;
    IFLAME_CHECK(info != nullptr, file_, ": tensor '", what, "': unsupported storage type ", id[1]->text);
    IFLAME_CHECK(info->floating || !floating_only, file_, ": tensor '", what, "' has an integer storage (",
                 id[1]->text, "); model weights must be floating point");
    const int64_t storage_numel = int_arg(id[4], what, "storage size");
    const int64_t offset = int_arg(v->items[1], what, "storage offset");
    const PickleValue* size_v = v->items[2];
    const PickleValue* stride_v = v->items[3];
    IFLAME_CHECK(size_v->is(K::Tuple) && stride_v->is(K::Tuple) && size_v->items.size() == stride_v->items.size() &&
                     size_v->items.size() <= 16,
                 file_, ": tensor '", what, "': malformed size/stride tuples");
    const std::string entry_name = prefix_ + "data/" + id[2]->text;
    const ZipEntry* entry = zip_.find(entry_name);
    IFLAME_CHECK(entry != nullptr, file_, ": tensor '", what, "': storage entry '", entry_name, "' is missing");
    IFLAME_CHECK(storage_numel >= 0 && uint64_t(storage_numel) <= entry->size / info->item, file_, ": tensor '",
                 what, "': storage of ", storage_numel, " elements does not fit in entry '", entry_name, "' (",
                 entry->size, " bytes)");

    // Shape, and the last element the view touches, both bounded by the storage size.
    Shape shape, stride;
    int64_t numel = 1, last = offset;
    bool empty = false;
    for (size_t d = 0; d < size_v->items.size(); d++) {
      shape.push_back(int_arg(size_v->items[d], what, "size"));
      stride.push_back(int_arg(stride_v->items[d], what, "stride"));
      IFLAME_CHECK(shape[d] >= 0 && shape[d] <= storage_numel && stride[d] >= 0 && stride[d] <= storage_numel,
                   file_, ": tensor '", what, "': size ", shape[d], " / stride ", stride[d], " of dim ", d,
                   " is outside its storage of ", storage_numel, " elements");
      if (shape[d] == 0) empty = true;
    }
    IFLAME_CHECK(offset >= 0 && offset <= storage_numel, file_, ": tensor '", what, "': storage offset ", offset,
                 " is outside its storage of ", storage_numel, " elements");
    if (!empty) {
      for (size_t d = 0; d < shape.size(); d++) {
        IFLAME_CHECK(numel <= storage_numel / shape[d], file_, ": tensor '", what, "' of size ", shape_str(shape),
                     " has more elements than its storage (", storage_numel, ")");
        numel *= shape[d];
        // (shape - 1) * stride < storage_numel - last, without overflow
        const int64_t room = storage_numel - last;
        IFLAME_CHECK(stride[d] == 0 || shape[d] - 1 < (room + stride[d] - 1) / stride[d], file_, ": tensor '",
                     what, "' (size ", shape_str(shape), ", stride ", shape_str(stride), ", offset ", offset, ") reaches past its storage of ",
                     storage_numel, " elements");
        last += (shape[d] - 1) * stride[d];
      }
      IFLAME_CHECK(last < storage_numel, file_, ": tensor '", what, "': offset ", offset,
                   " is past its storage of ", storage_numel, " elements");
    } else {
      numel = 0;
    }

    Tensor out = Tensor::empty(shape, info->floating ? DType::F32 : DType::I32);
    if (numel == 0) return out;
    const uint64_t span = uint64_t(last - offset + 1);  // elements from the first to the last touched
    const uint64_t span_bytes = span * info->item;
    const uint64_t byte_offset = uint64_t(offset) * info->item;
    const bool whole = byte_offset == 0 && span_bytes == entry->size;
    const bool contiguous = stride == contiguous_strides(shape);
    const bool same_type = info->type == StorageType::F32 || info->type == StorageType::I32;
    if (contiguous && same_type) {  // the common case: straight into the tensor
      if (whole) zip_.read(*entry, out.raw_data());
      else zip_.read_range(*entry, byte_offset, span_bytes, out.raw_data());
      return out;
    }
    std::vector<unsigned char> buf(span_bytes);
    if (whole) zip_.read(*entry, buf.data());
    else zip_.read_range(*entry, byte_offset, span_bytes, buf.data());
    // Walk the view's elements in row-major order.
    std::vector<int64_t> idx(shape.size(), 0);
    int64_t pos = 0;  // element offset from `offset`
    for (int64_t i = 0; i < numel; i++) {
      const unsigned char* p = buf.data() + pos * info->item;
      switch (info->type) {
        case StorageType::F32: std::memcpy(out.data<float>() + i, p, 4); break;
        case StorageType::BF16: out.data<float>()[i] = bf16_to_float(bf16{load_u16le(p)}); break;
        case StorageType::F16: out.data<float>()[i] = half_to_float(load_u16le(p)); break;
        case StorageType::I32: std::memcpy(out.data<int32_t>() + i, p, 4); break;
        case StorageType::I64: {
          int64_t x = static_cast<int64_t>(load_u64le(p));
          IFLAME_CHECK(x >= INT32_MIN && x <= INT32_MAX, file_, ": tensor '", what, "': int64 value ", x,
                       " does not fit in int32");
          out.data<int32_t>()[i] = static_cast<int32_t>(x);
          break;
        }
      }
      for (int d = int(shape.size()) - 1; d >= 0; d--) {
        pos += stride[d];
        if (++idx[d] < shape[d]) break;
        pos -= stride[d] * shape[d];
        idx[d] = 0;
      }
    }
    return out;
  }

  double scalar_tensor(const PickleValue* v, const std::string& what) {
    Tensor t = tensor(v, what, false);
    IFLAME_CHECK(t.numel() == 1, file_, ": '", what, "' is a tensor of size ", shape_str(t.shape()),
                 ", expected one value");
    return t.dtype() == DType::F32 ? double(t.data<float>()[0]) : double(t.data<int32_t>()[0]);
  }

  void read_optimizer(const PickleValue& opt, TorchCheckpoint& ck) {
    ck.has_optimizer = true;
    if (const PickleValue* state = opt.get("state")) {
      IFLAME_CHECK(state->is(K::Dict), file_, ": optimizer state is a ", state->kind_name(), ", expected a dict");
      for (const auto& kv : state->entries) {
        IFLAME_CHECK(kv.first->is(K::Int) && kv.second->is(K::Dict), file_,
                     ": optimizer state entries must map an int index to a dict");
        TorchOptimizerEntry e;
        e.index = kv.first->integer;
        IFLAME_CHECK(ck.find_state(e.index) == nullptr, file_, ": optimizer index ", e.index, " appears twice");
        for (const auto& f : kv.second->entries) {
          IFLAME_CHECK(f.first->is(K::String), file_, ": optimizer state ", e.index, " has a non-string key");
          const std::string& key = f.first->text;
          const std::string what = str("optimizer state ", e.index, " ", key);
          if (f.second->is(K::Reduce)) e.tensors.emplace_back(key, tensor(f.second, what, false));
          else if (f.second->is_number()) e.scalars[key] = f.second->as_number();
        }
        for (auto& t : e.tensors) {
          if (t.first == "momentum_buffer") e.momentum_buffer = t.second;
          if (t.first == "moment1" || t.first == "exp_avg") e.moment1 = t.second;
          if (t.first == "moment2" || t.first == "exp_avg_sq") e.moment2 = t.second;
          if (t.first == "step" && t.second.numel() == 1) e.step = t.second.to_floats()[0];
        }
        if (e.scalars.count("use_muon")) e.use_muon = e.scalars["use_muon"] != 0;
        if (e.scalars.count("step")) e.step = e.scalars["step"];
        ck.optimizer_state.push_back(std::move(e));
      }
      std::sort(ck.optimizer_state.begin(), ck.optimizer_state.end(),
                [](const TorchOptimizerEntry& a, const TorchOptimizerEntry& b) { return a.index < b.index; });
    }
    if (const PickleValue* groups = opt.get("param_groups")) {
      IFLAME_CHECK(groups->is(K::List), file_, ": optimizer param_groups is a ", groups->kind_name(),
                   ", expected a list");
      for (const PickleValue* g : groups->items) {
        IFLAME_CHECK(g->is(K::Dict), file_, ": an optimizer param group is a ", g->kind_name(), ", expected a dict");
        TorchParamGroup pg;
        for (const auto& kv : g->entries) {
          if (!kv.first->is(K::String)) continue;
          const std::string& key = kv.first->text;
          const PickleValue* val = kv.second;
          if (key == "params") {
            IFLAME_CHECK(val->is(K::List), file_, ": optimizer param group 'params' is a ", val->kind_name());
            for (const PickleValue* p : val->items) {
              IFLAME_CHECK(p->is(K::Int), file_, ": optimizer param group 'params' holds a ", p->kind_name());
              pg.params.push_back(p->integer);
            }
          } else if (val->is_number()) {
            pg.hyper[key] = val->as_number();
          } else if (val->is(K::Tuple) || val->is(K::List)) {
            for (size_t i = 0; i < val->items.size(); i++)
              if (val->items[i]->is_number()) pg.hyper[str(key, ".", i)] = val->items[i]->as_number();
          }
        }
        ck.param_groups.push_back(std::move(pg));
      }
    }
  }

  ZipReader zip_;
  std::string file_;
  std::string prefix_;
};

}  // namespace

const Tensor* TorchCheckpoint::find_param(const std::string& name) const {
  for (const auto& p : model)
    if (p.first == name) return &p.second;
  return nullptr;
}

const TorchOptimizerEntry* TorchCheckpoint::find_state(int64_t index) const {
  for (const auto& e : optimizer_state)
    if (e.index == index) return &e;
  return nullptr;
}

TorchCheckpoint load_torch_checkpoint(const std::string& path) {
  return Loader(std::make_unique<FileSource>(path)).run();
}

TorchCheckpoint load_torch_checkpoint(std::unique_ptr<ByteSource> source) { return Loader(std::move(source)).run(); }

bool looks_like_torch_checkpoint(const std::string& path) { return has_zip_magic(path); }

}  // namespace iflame
