# Makefile: builds ./train, ./sample, ./evaluate, ./render and the test runner.
#
#   make              build everything (CUDA when nvcc is found, else CPU-only)
#   make test         build and run the whole doctest suite
#   make deps         install the Debian packages the build and `make data` need (as root)
#   make CUDA=0       force a CPU-only build
#   make CUDA_ARCH=sm_90        GPU code for these architectures only (a list: "sm_80 sm_90"
#                               or sm_80,sm_90; compute_XX adds PTX); default: every one below
#   make NCCL=0 MPI=0 leave out NCCL / MPI (found automatically when installed)
#   make BUILD=dir    put objects in another folder (parallel builds of one tree)
#   make BIN=dir      put the programs in another folder (default: the repository root)
#   make ptx80        the test build with PTX for compute_80 only, in build-ptx80/
#
# Before compiling, `make` checks that the packages of .ci/packages.txt it needs
# are there (tools/deps.sh) and stops with the apt-get line when one is not.
#
# Every .cpp/.cu under the library folders goes into one static library; a
# folder's main.cpp is a program, not library code. The training code lives in
# training/ (not train/) because ./train, the program, sits at the root.

BUILD    ?= build
BIN      ?= .
CXX      ?= g++

# Packages first: one line naming what is missing (tools/deps.sh), before any
# compiling. `make deps`, `make clean` and `make demo` (which installs them
# itself) skip the check; DEPS_CHECK=0 skips it too.
DEPS_GROUPS := build $(if $(filter data data-large build_dataset data/furniture.npy,$(MAKECMDGOALS)),data) \
               $(if $(filter data-large,$(MAKECMDGOALS)),assets)
ifneq ($(DEPS_CHECK),0)
  ifneq ($(if $(MAKECMDGOALS),$(filter-out deps clean demo ptx80,$(MAKECMDGOALS)),all),)
    DEPS_PROBLEM := $(shell CXX="$(CXX)" tools/deps.sh check $(DEPS_GROUPS) 2>&1)
    ifneq ($(DEPS_PROBLEM),)
      $(error $(DEPS_PROBLEM))
    endif
  endif
endif

# nvcc, followed through links (an nvcc reached through a link elsewhere
# cannot find its own toolkit).
ifeq ($(origin NVCC),undefined)
  NVCC := $(realpath $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc)))
endif
# The toolkit's root: the first of these holding cublas_v2.h: what nvcc itself
# reports ("TOP=" in its dry run, right even behind a wrapper script), the
# folder above nvcc's bin/, /usr/local/cuda. Override with CUDA_HOME=/path.
ifneq ($(NVCC),)
  CUDA_CANDIDATES := $(abspath $(shell $(NVCC) -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 \
                       | sed -n 's/^\#\$$ TOP=//p' | head -n 1)) \
                     $(patsubst %/bin/nvcc,%,$(NVCC)) /usr/local/cuda
  ifeq ($(origin CUDA_HOME),undefined)
    CUDA_HOME := $(firstword $(foreach d,$(CUDA_CANDIDATES),$(if $(wildcard $(d)/include/cublas_v2.h),$(d))))
  endif
endif
CUDA_FOUND := $(if $(NVCC),$(shell test -f "$(CUDA_HOME)/include/cublas_v2.h" && echo 1),)
CUDA     ?= $(if $(CUDA_FOUND),1,0)
ifneq ($(NVCC),)
  ifneq ($(CUDA_FOUND),1)
    $(warning nvcc is $(NVCC) but no cublas_v2.h under "$(CUDA_HOME)/include": building CPU-only (set CUDA_HOME=/path/to/cuda to use the GPU))
  endif
endif

# The GPU code: real code (sm_XX) for every architecture from the A100 on, and
# PTX (compute_XX) of the newest, which the driver compiles for GPUs newer
# still. sm_100 and sm_120 only where this nvcc knows them (CUDA 12.8 on).
# CUDA_ARCH narrows it: CUDA_ARCH=sm_90 (fast builds), a list ("sm_80 sm_90"
# or sm_80,sm_90), or compute_80 alone (PTX only, run through the JIT).
comma := ,
ifeq ($(CUDA),1)
  NVCC_ARCHS := $(shell $(NVCC) --list-gpu-arch 2>/dev/null)
  ifeq ($(origin CUDA_ARCH),undefined)
    CUDA_REAL := sm_80 sm_86 sm_89 sm_90 $(if $(filter compute_100,$(NVCC_ARCHS)),sm_100) \
                 $(if $(filter compute_120,$(NVCC_ARCHS)),sm_120)
    CUDA_ARCH := $(CUDA_REAL) $(patsubst sm_%,compute_%,$(lastword $(CUDA_REAL)))
  endif
  CUDA_ARCH_LIST := $(strip $(subst $(comma), ,$(CUDA_ARCH)))
  $(foreach a,$(CUDA_ARCH_LIST),\
    $(if $(filter sm_% compute_%,$(a)),,$(error CUDA_ARCH: '$(a)' is neither sm_XX nor compute_XX))\
    $(if $(filter 8% 9% 1%,$(patsubst sm_%,%,$(patsubst compute_%,%,$(a)))),,\
      $(error CUDA_ARCH: $(a) is older than sm_80; the kernels need sm_80 (A100) or newer))\
    $(if $(NVCC_ARCHS),$(if $(filter compute_$(patsubst sm_%,%,$(patsubst compute_%,%,$(a))),$(NVCC_ARCHS)),,\
      $(error CUDA_ARCH: $(a) is not known to $(NVCC) (it knows: $(NVCC_ARCHS))))))
  CUDA_GENCODE := $(foreach a,$(CUDA_ARCH_LIST),-gencode arch=compute_$(patsubst sm_%,%,$(patsubst compute_%,%,$(a)))$(comma)code=$(a))
  # Objects are rebuilt when the list changes: the list is kept in the build folder.
  ARCH_STAMP := $(BUILD)/cuda_arch.txt
  $(shell mkdir -p $(BUILD) && (test "$$(cat $(ARCH_STAMP) 2>/dev/null)" = "$(CUDA_ARCH_LIST)" || echo "$(CUDA_ARCH_LIST)" > $(ARCH_STAMP)))
endif
# Which CUDA this build uses, or why none (once, not in sub-makes or `make clean`).
ifeq ($(MAKELEVEL)$(filter clean deps,$(MAKECMDGOALS)),0)
  ifeq ($(CUDA),1)
    $(info CUDA: $(NVCC), toolkit $(CUDA_HOME); GPU code: $(CUDA_ARCH_LIST))
  else
    $(info CUDA: none, CPU-only build ($(if $(filter 0,$(origin CUDA)),,$(if $(filter command line environment,$(origin CUDA)),CUDA=0 given,$(if $(NVCC),no cublas_v2.h beside $(NVCC),no nvcc on the PATH or in /usr/local/cuda/bin)))))
  endif
endif
# nvcc compiles a file's architectures NVCC_THREADS at a time (make's -j runs files in parallel).
NVCC_THREADS ?= 1

CXXFLAGS := -std=c++17 -O2 -g -Wall -Wextra -Wno-unused-parameter -fopenmp -I. -MMD -MP
LDFLAGS  := -fopenmp -lpthread
NVFLAGS  := -std=c++17 -O3 $(CUDA_GENCODE) --threads $(NVCC_THREADS) -I. -MMD -MP --expt-relaxed-constexpr \
            -Xcompiler -Wall,-Wno-unused-parameter

LIB_DIRS := core ops ops/cpu ops/cuda autograd nn data training infer tools
LIB_CPP  := $(filter-out %/main.cpp,$(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cpp)))
LIB_CU   := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cu))

ifeq ($(CUDA),1)
  ifneq ($(CUDA_FOUND),1)
    $(error CUDA=1 but no cublas_v2.h under "$(CUDA_HOME)/include": set CUDA_HOME=/path/to/cuda, or CUDA=0 for a CPU-only build)
  endif
  CXXFLAGS  += -DIFLAME_CUDA -I$(CUDA_HOME)/include
  NVFLAGS   += -DIFLAME_CUDA
  LDFLAGS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart_static -ldl -lrt
  LIB_OBJ   := $(LIB_CPP:%.cpp=$(BUILD)/%.o) $(LIB_CU:%.cu=$(BUILD)/%.cu.o)
  # NCCL (multi-GPU data parallel) when its header is there; NCCL=0 leaves it out.
  NCCL ?= $(shell test -f $(CUDA_HOME)/include/nccl.h -o -f /usr/include/nccl.h && echo 1 || echo 0)
  ifeq ($(NCCL),1)
    CXXFLAGS += -DIFLAME_NCCL
    LDFLAGS  += -lnccl
  endif
else
  LIB_OBJ   := $(LIB_CPP:%.cpp=$(BUILD)/%.o)
endif

# MPI, optional: only `mpirun -np N ./train` uses it, to hand out the NCCL id
# (Debian: libopenmpi-dev). Without it mpirun still works with --rendezvous.
MPICXX ?= $(shell command -v mpicxx 2>/dev/null)
MPI    ?= $(if $(MPICXX),$(shell $(MPICXX) --showme:incdirs >/dev/null 2>&1 && echo 1 || echo 0),0)
ifeq ($(MPI),1)
  MPI_INC := $(shell $(MPICXX) --showme:incdirs)
  CXXFLAGS += -DIFLAME_MPI $(addprefix -isystem ,$(MPI_INC))
  LDFLAGS  += $(shell $(MPICXX) --showme:link)
endif

TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
LIB      := $(BUILD)/libiflame.a
PROGRAMS := train sample evaluate render

.PHONY: all test clean demo deps ptx80
all: $(PROGRAMS:%=$(BIN)/%) $(BUILD)/iflame_tests

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(ARCH_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# The architecture list, for the messages of core/gpu_capability.cpp.
ifeq ($(CUDA),1)
$(BUILD)/core/gpu_capability.o: CXXFLAGS += -DIFLAME_CUDA_ARCHS='"$(CUDA_ARCH_LIST)"'
$(BUILD)/core/gpu_capability.o: $(ARCH_STAMP)
endif

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/train: $(BUILD)/training/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(BIN)/sample: $(BUILD)/infer/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

# ./evaluate (generated meshes against a reference set). The metrics live in the
# library (tools/eval_metrics.cpp, tools/evaluate_cli.cpp) so the tests link them too.
$(BIN)/evaluate: $(BUILD)/tools/evaluate/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

# ./render: contact sheets of meshes and training curves as PNG (tools/render.h).
$(BIN)/render: $(BUILD)/tools/render/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(BUILD)/iflame_tests: $(TEST_OBJ) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

# TESTS="-tc=golden*" selects a subset (any doctest flags).
test: $(BUILD)/iflame_tests
	./$(BUILD)/iflame_tests $(TESTS)

clean:
	rm -rf $(BUILD) $(PROGRAMS:%=$(BIN)/%) $(BIN)/build_dataset

# The packages of .ci/packages.txt that `make` and `make data` need (apt-get, as root).
deps:
	tools/deps.sh install build data

# The portable paths on any GPU: PTX for compute_80 only (no sm_90 code), which
# the driver compiles for the GPU at hand; programs and tests in build-ptx80/.
ptx80:
	$(MAKE) CUDA_ARCH=compute_80 BUILD=build-ptx80 BIN=build-ptx80

# `make train` and the like when the programs go elsewhere (BIN=dir).
ifneq ($(abspath $(BIN)),$(abspath .))
.PHONY: $(PROGRAMS) build_dataset
$(PROGRAMS) build_dataset: %: $(BIN)/%
endif

# The newcomer path: packages, build, data, a short training run, samples and
# pictures in runs/demo (tools/demo.sh says what it does and how long it takes).
demo:
	tools/demo.sh

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# --- data tools (new targets, not part of `all`) ---------------------------
#   make build_dataset   the dataset builder (needs libmeshoptimizer-dev)
#   make data            data/furniture.npy + .json from Debian's Sweet Home 3D
#                        furniture (needs unzip; fetches the .debs if not installed)
#   make fuzz            libFuzzer targets for the mesh and JSON parsers (clang)
#   make data-large      data/assets.npy (<= 800 faces) and data/assets4k.npy (<= 4,000) from Debian's
#                        game and CAD asset packages, with the report and a contact sheet per package
#                        (tools/assets_list.sh; a few GB of downloads, see docs/data.md)
# Assimp (libassimp-dev) is the builder's reader for AC3D/MD3/ASE/...; found like NCCL, ASSIMP=0 leaves it out.
ASSIMP ?= $(shell test -f /usr/include/assimp/Importer.hpp && echo 1 || echo 0)
BUILD_DATASET_OBJ := $(BUILD)/tools/build_dataset/main.o $(BUILD)/tools/build_dataset/simplify_meshopt.o \
                     $(BUILD)/tools/build_dataset/read_assimp.o
ifeq ($(ASSIMP),1)
$(BUILD)/tools/build_dataset/read_assimp.o: CXXFLAGS += -DIFLAME_ASSIMP
BUILD_DATASET_LIBS := -lassimp
endif
$(BIN)/build_dataset: $(BUILD_DATASET_OBJ) $(LIB)
	@test "$(ASSIMP)" = 1 || echo "build_dataset: libassimp-dev not found: AC3D/MD3/ASE files will be unreadable (apt-get install libassimp-dev)"
	$(CXX) $^ -o $@ $(LDFLAGS) -lmeshoptimizer $(BUILD_DATASET_LIBS)

.PHONY: data data-large fuzz
data: data/furniture.npy
data/furniture.npy: $(BIN)/build_dataset tools/furniture_list.sh
	@mkdir -p $(BUILD)/furniture
	tools/furniture_list.sh $(BUILD)/furniture > $(BUILD)/furniture/list.tsv
	$(BIN)/build_dataset --list $(BUILD)/furniture/list.tsv --max-faces 800 -o $@ > $(BUILD)/furniture/report.txt
	@cat $(BUILD)/furniture/report.txt

# ASSETS_DIR: where the .debs are downloaded and unpacked (kept between runs).
ASSETS_DIR ?= $(BUILD)/assets
# KiCad ships each part in many sizes (5,983 meshes in 951 families): keeping two
# per family (the fewest and the most faces) brings data/assets.npy under 40 MB
# with 8,206 meshes (docs/data.md). FAMILY_CAP= keeps every variant.
FAMILY_CAP ?= --max-per-family 2 --family-cap-package kicad-packages3d
data-large: $(BIN)/build_dataset $(BIN)/render tools/assets_list.sh
	tools/assets_list.sh $(ASSETS_DIR) > $(ASSETS_DIR)/list.tsv
	rm -rf $(ASSETS_DIR)/sheets  # an earlier build's sheet meshes would mix in
	$(BIN)/build_dataset --list $(ASSETS_DIR)/list.tsv --max-faces 800 $(FAMILY_CAP) --sheets $(ASSETS_DIR)/sheets \
	    -o data/assets.npy > $(ASSETS_DIR)/report.txt
	$(BIN)/build_dataset --list $(ASSETS_DIR)/list.tsv --max-faces 4000 $(FAMILY_CAP) --quiet -o data/assets4k.npy \
	    > $(ASSETS_DIR)/report4k.txt
	@mkdir -p data/sheets
	for d in $(ASSETS_DIR)/sheets/*/; do $(BIN)/render "$$d" --max 48 -o data/sheets/$$(basename "$$d").png; done
	@cat $(ASSETS_DIR)/report.txt
	@echo "--- <= 4,000 faces:"; head -n 1 $(ASSETS_DIR)/report4k.txt
	@ls -l data/assets.npy data/assets4k.npy

FUZZ_TARGETS := obj ply stl off json wrl pmd spm md2
FUZZ_CXX     ?= clang++
FUZZ_FLAGS   := -std=c++17 -O1 -g -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC     := data/mesh_obj.cpp data/mesh_ply.cpp data/mesh_stl.cpp data/mesh_off.cpp data/mesh_io.cpp data/json.cpp \
                data/mesh_vrml.cpp data/mesh_pmd.cpp data/mesh_spm.cpp data/mesh_md2.cpp
fuzz: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_parsers.cpp $(FUZZ_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -DFUZZ_FORMAT_$* $^ -o $@
