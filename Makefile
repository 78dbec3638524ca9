# Makefile: builds ./train, ./sample, ./evaluate, ./render and the test runner.
#
#   make              build everything (CUDA for sm_90 when nvcc is found, else CPU-only)
#   make test         build and run the whole doctest suite
#   make CUDA=0       force a CPU-only build
#   make NCCL=0 MPI=0 leave out NCCL / MPI (found automatically when installed)
#   make BUILD=dir    put objects in another folder (parallel builds of one tree)
#
# Every .cpp/.cu under the library folders goes into one static library; a
# folder's main.cpp is a program, not library code. The training code lives in
# training/ (not train/) because ./train, the program, sits at the root.

BUILD    ?= build
CXX      ?= g++
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
CUDA_ARCH ?= sm_90

CXXFLAGS := -std=c++17 -O2 -g -Wall -Wextra -Wno-unused-parameter -fopenmp -I. -MMD -MP
LDFLAGS  := -fopenmp -lpthread
NVFLAGS  := -std=c++17 -O3 -arch=$(CUDA_ARCH) -I. -MMD -MP --expt-relaxed-constexpr \
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

.PHONY: all test clean demo
all: $(PROGRAMS) $(BUILD)/iflame_tests

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

train: $(BUILD)/training/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

sample: $(BUILD)/infer/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

# ./evaluate (generated meshes against a reference set). The metrics live in the
# library (tools/eval_metrics.cpp, tools/evaluate_cli.cpp) so the tests link them too.
evaluate: $(BUILD)/tools/evaluate/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

# ./render: contact sheets of meshes and training curves as PNG (tools/render.h).
render: $(BUILD)/tools/render/main.o $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(BUILD)/iflame_tests: $(TEST_OBJ) $(LIB)
	$(CXX) $^ -o $@ $(LDFLAGS)

# TESTS="-tc=golden*" selects a subset (any doctest flags).
test: $(BUILD)/iflame_tests
	./$(BUILD)/iflame_tests $(TESTS)

clean:
	rm -rf $(BUILD) $(PROGRAMS)

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
build_dataset: $(BUILD_DATASET_OBJ) $(LIB)
	@test "$(ASSIMP)" = 1 || echo "build_dataset: libassimp-dev not found: AC3D/MD3/ASE files will be unreadable (apt-get install libassimp-dev)"
	$(CXX) $^ -o $@ $(LDFLAGS) -lmeshoptimizer $(BUILD_DATASET_LIBS)

.PHONY: data data-large fuzz
data: data/furniture.npy
data/furniture.npy: build_dataset tools/furniture_list.sh
	@mkdir -p $(BUILD)/furniture
	tools/furniture_list.sh $(BUILD)/furniture > $(BUILD)/furniture/list.tsv
	./build_dataset --list $(BUILD)/furniture/list.tsv --max-faces 800 -o $@ > $(BUILD)/furniture/report.txt
	@cat $(BUILD)/furniture/report.txt

# ASSETS_DIR: where the .debs are downloaded and unpacked (kept between runs).
ASSETS_DIR ?= $(BUILD)/assets
data-large: build_dataset render tools/assets_list.sh
	tools/assets_list.sh $(ASSETS_DIR) > $(ASSETS_DIR)/list.tsv
	./build_dataset --list $(ASSETS_DIR)/list.tsv --max-faces 800 --sheets $(ASSETS_DIR)/sheets -o data/assets.npy \
	    > $(ASSETS_DIR)/report.txt
	./build_dataset --list $(ASSETS_DIR)/list.tsv --max-faces 4000 --quiet -o data/assets4k.npy > $(ASSETS_DIR)/report4k.txt
	@mkdir -p data/sheets
	for d in $(ASSETS_DIR)/sheets/*/; do ./render "$$d" --max 48 -o data/sheets/$$(basename "$$d").png; done
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
