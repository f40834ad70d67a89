# runexp — build, test, install.
#   make            build/runexp and build/librunexp.a (CUDA backend too when nvcc is found; CUDA=0 skips it)
#   make test       the whole Criterion suite on the CPU (CUDA tests skip without a GPU), then
#                   the CUDA suite in the emulator (make test-emu: tests/cuda/emu, no GPU needed)
#   make test-cuda  the CUDA parity suite (needs a GPU; skips cleanly without one)
#   make test-slurm sweeps as Slurm job arrays and a 2-task srun alone (tests/test_slurm.c: fake
#                   clients, then a local one-node Slurm it starts and stops; skips when the daemons cannot start)
#   make demo       runs experiments/quickstart.yaml, then writes its report (results/quickstart/report.html)
#   make deps       installs missing Debian packages (as root), else prints the apt-get command
#   make deps-report  installs chromium (optional, large): test_report's browser check skips without it
#   make SANITIZE=1 test   AddressSanitizer + UndefinedBehaviorSanitizer build of the suite
#   make fuzz       libFuzzer harnesses (fuzz/*.c) in build-fuzz/, with clang; not part of make test
#   make fuzz-run FUZZ_SECONDS=600   runs each target that long from fuzz/corpus/<target>/

PREFIX   ?= /usr/local
BUILD    ?= build
CC       ?= cc
NVCC     ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
# the CUDA runtime and ASan's shadow memory do not mix; under SANITIZE=1 the CPU suite is checked
ifeq ($(SANITIZE),1)
CUDA     ?= 0
endif
CUDA     ?= $(if $(NVCC),1,0)
CUDA_HOME?= $(patsubst %/bin/nvcc,%,$(NVCC))
ARCH     ?= -march=native
export RUNEXP_DATA_SRC ?= $(abspath ../shared/data)

PKGS     := yaml-0.1 libpng libturbojpeg jansson libarchive zlib libcurl libxxhash cairo nettle libprotobuf-c libisal
DEB_PKGS := build-essential pkg-config libcriterion-dev libyaml-dev libpng-dev libturbojpeg0-dev libjansson-dev \
            libarchive-dev zlib1g-dev libcurl4-openssl-dev libxxhash-dev libopenblas-dev \
            libopenblas-openmp-dev libcairo2-dev nettle-dev dataset-fashion-mnist \
            libprotobuf-c-dev protobuf-c-compiler libisal-dev libdnnl-dev libopenmpi-dev openmpi-bin \
            slurmctld slurmd slurm-client munge
DEB_PKGS_REPORT := chromium

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# OpenBLAS's OpenMP build, named explicitly: one thread pool for our kernels and BLAS (the
# pthreads build's own threads yield-spin against OpenMP's: 600k sched_yield calls in a smoke run)
BLAS_DIR   := /usr/lib/x86_64-linux-gnu/openblas-openmp
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas

WARN     := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wno-missing-field-initializers
CFLAGS   ?= -O3 $(ARCH) -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -fopenmp -Isrc -I$(GEN) -I/usr/include/x86_64-linux-gnu/openblas-openmp $(WARN) $(PKG_CFLAGS) -MMD -MP
LDLIBS   += $(PKG_LIBS) -fopenmp -lm -lpthread
# oneDNN (libdnnl-dev; no pkg-config file) for the CPU convolutions, when installed: ONEDNN=0
# builds the reference kernels only (src/kernels/cpu/conv_onednn.c)
ONEDNN   ?= $(if $(wildcard /usr/include/oneapi/dnnl/dnnl.h),1,0)
ifeq ($(ONEDNN),1)
CFLAGS   += -DRX_HAVE_ONEDNN=1
LDLIBS   += -ldnnl
endif
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
BUILD    := build-san
export LSAN_OPTIONS = suppressions=$(abspath tests/lsan.supp)
endif

# TensorBoard's protocol buffers (third_party/tensorboard) -> C with protoc-c, generated into
# build/gen/ (never committed; the same for every build configuration, so one place for all)
GEN      := build/gen
PROTO_DIR:= third_party/tensorboard
PROTO    := $(sort $(wildcard $(PROTO_DIR)/tensorboard/compat/proto/*.proto))
PROTO_C  := $(PROTO:$(PROTO_DIR)/%.proto=$(GEN)/%.pb-c.c)
PROTO_H  := $(PROTO_C:.c=.h)
PROTOC_C ?= protoc-c

SRC      := $(filter-out src/runner/main.c,$(shell find src -name '*.c' | sort)) $(PROTO_C)
OBJ      := $(SRC:%.c=$(BUILD)/obj/%.o)
CU_SRC   := $(shell find src/kernels/cuda -name '*.cu' 2>/dev/null | sort)
ifeq ($(CUDA),1)
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CFLAGS   += -DRX_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs -lcudnn -lcublasLt -lcublas -lcudart -lstdc++
NVFLAGS  ?= -O3 -std=c++17 -Isrc -Xcompiler -Wall,-Wextra,-Wno-unused-parameter,-Wno-missing-field-initializers \
            -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
            -gencode arch=compute_90,code=compute_90 -DRX_HAVE_CUDA=1
endif
# Data-parallel training (src/dist/): MPI when pkg-config finds Open MPI (MPI=0 skips it), NCCL
# when CUDA and MPI are in and nccl.h/libnccl.so are in the CUDA toolkit or NCCL_HOME (the
# nvidia-nccl-cu12 wheel's nvidia/nccl folder; README "Distributed training"). Only src/dist/
# sees the headers: their flags are kept out of the flag stamp, so finding MPI later rebuilds
# that folder alone (its own stamp below).
MPI      ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
NCCL_HOME?= $(CUDA_HOME)
NCCL     ?= $(if $(and $(filter 1,$(CUDA)),$(filter 1,$(MPI)),$(wildcard $(NCCL_HOME)/include/nccl.h)),1,0)
DIST_CFLAGS :=
ifeq ($(MPI),1)
DIST_CFLAGS += -DRX_HAVE_MPI=1 $(shell pkg-config --cflags ompi-c)
LDLIBS   += $(shell pkg-config --libs ompi-c)
endif
ifeq ($(NCCL),1)
DIST_CFLAGS += -DRX_HAVE_NCCL=1 -I$(NCCL_HOME)/include
# the nvidia-nccl-cu12 wheel ships lib/libnccl.so.2 without the libnccl.so link
NCCL_LIB := $(if $(wildcard $(NCCL_HOME)/lib64/libnccl.so $(NCCL_HOME)/lib/libnccl.so),-lnccl,-l:libnccl.so.2)
LDLIBS   += -L$(NCCL_HOME)/lib64 -L$(NCCL_HOME)/lib -Wl,-rpath,$(NCCL_HOME)/lib64 -Wl,-rpath,$(NCCL_HOME)/lib $(NCCL_LIB)
endif
DIST_STAMP := $(BUILD)/dist-flags-$(shell printf '%s' "$(DIST_CFLAGS)" | md5sum | cut -c1-12)
$(DIST_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/dist-flags-* && touch $@
$(BUILD)/obj/src/dist/%.o: CFLAGS += $(DIST_CFLAGS)
$(filter $(BUILD)/obj/src/dist/%,$(OBJ)): $(DIST_STAMP)

LIB      := $(BUILD)/librunexp.a
BIN      := $(BUILD)/runexp

TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
CUDA_TEST_SRC := $(sort $(wildcard tests/cuda/test_*.c))
CUDA_TESTS := $(CUDA_TEST_SRC:tests/cuda/%.c=$(BUILD)/tests/cuda/%)
BENCH_SRC:= $(sort $(wildcard bench/*.c))
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test test-run test-emu test-cuda test-cuda-run test-slurm demo deps deps-report install clean bench data docs
all: $(BIN) $(LIB)

# Objects depend on the flags they were built with: the stamp's name is a hash of them, so
# `make CUDA=0` then `make` (or a changed ARCH or CFLAGS) rebuilds instead of linking objects
# compiled for another configuration.
FLAGS_STAMP := $(BUILD)/flags-$(shell printf '%s' "$(CC) $(CFLAGS) $(NVCC) $(NVFLAGS) $(CUDA)" | md5sum | cut -c1-12)
$(FLAGS_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/flags-* && touch $@

# one protoc-c call writes every .pb-c.c/.h (a grouped target: make runs it once)
$(PROTO_C) $(PROTO_H) &: $(PROTO)
	@mkdir -p $(GEN)
	$(PROTOC_C) -I$(PROTO_DIR) --c_out=$(GEN) $(PROTO)

# every object (and test) may include a generated header: they exist before any compiles
$(OBJ) $(BUILD)/obj/src/runner/main.o: | $(PROTO_H)

$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(OBJ) $(CU_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# --whole-archive: every registry entry and kernel is linked, even if nothing names it directly
WHOLE    = -Wl,--whole-archive $(LIB) -Wl,--no-whole-archive

$(BIN): $(BUILD)/obj/src/runner/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(WHOLE) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(WHOLE) -lcriterion $(LDLIBS)

# the LD_PRELOAD shim of test_faults (a full disk for one named file; tests/shim/enospc.c)
$(BUILD)/tests/enospc_shim.so: tests/shim/enospc.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -std=c11 -Wall -Wextra -fPIC -shared -o $@ $< -ldl
$(BUILD)/tests/test_faults: $(BUILD)/tests/enospc_shim.so

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(WHOLE) $(LDLIBS)

# deps first, then a fresh make so that pkg-config sees what deps installed.
test: deps
	@$(MAKE) --no-print-directory test-run
test-run: all $(TESTS)
	@sh tests/run_tests.sh $(TESTS)
	@$(MAKE) --no-print-directory test-emu

# the CUDA suite (tests/cuda/) on the CPU, against the real .cu sources (tests/cuda/emu/README.md)
test-emu:
	@EMU_BUILD=$(BUILD)/emu $(if $(filter 1,$(SANITIZE)),ASAN=1) sh tests/cuda/emu/run.sh

test-cuda: deps
	@$(MAKE) --no-print-directory test-cuda-run
test-cuda-run: all $(CUDA_TESTS)
	@sh tests/run_tests.sh $(CUDA_TESTS)

test-slurm: deps
	@$(MAKE) --no-print-directory all $(BUILD)/tests/test_slurm
	@sh tests/run_tests.sh $(BUILD)/tests/test_slurm

bench: all $(BENCHES)

demo: deps
	@$(MAKE) --no-print-directory all data
	$(BIN) experiments/quickstart.yaml
	@echo "make demo: the run's report (open it in a browser):"
	$(BIN) report results/quickstart

# data/ from $$RUNEXP_DATA_SRC (../shared/data here) or the official downloads; present files are kept
data: all
	$(BIN) data fetch --all

docs: all
	$(BIN) list --markdown > docs/components.md

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/runexp
	install -m 644 $(LIB) $(DESTDIR)$(PREFIX)/lib/librunexp.a

# Installs what is missing (root), else prints the exact command. Cheap when all is present.
# $(1): the target's name, $(2): the Debian packages.
define install_missing
	@missing=""; for p in $(2); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "make $(1): installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else echo "make $(1): missing packages; run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
	fi
endef
deps:
	$(call install_missing,deps,$(DEB_PKGS))
# Optional: headless Chromium for test_report's browser check (a large package, so not in
# deps; without it that one check skips). CI installs it (.ci/run).
deps-report:
	$(call install_missing,deps-report,$(DEB_PKGS_REPORT))

clean:
	rm -rf build build-san build-fuzz

# --- fuzzing (issue 19): libFuzzer + ASan + UBSan, CPU only. The library's sources are
# compiled with clang -fsanitize=fuzzer-no-link into build-fuzz/ (never mixed with build/);
# each fuzz/<target>.c is linked with -fsanitize=fuzzer. fuzz-run works in a scratch corpus
# (build-fuzz/corpus/<target>, seeded from fuzz/corpus/<target>) and leaves crash-*/leak-*/
# timeout-* files in build-fuzz/artifacts/.
FUZZ_CC      ?= $(shell command -v clang-14 2>/dev/null || command -v clang 2>/dev/null)
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= $(sort $(basename $(notdir $(wildcard fuzz/*.c))))
FUZZ_SAN     := -Wno-pass-failed -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g -std=c11 -D_GNU_SOURCE -fopenmp -Isrc -I$(GEN) -I/usr/include/x86_64-linux-gnu/openblas-openmp \
                $(WARN) $(PKG_CFLAGS) -MMD -MP $(FUZZ_SAN)
FUZZ_OBJ     := $(SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_LIB     := $(FUZZ_BUILD)/librunexp.a
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

.PHONY: fuzz fuzz-run fuzz-check-cc
fuzz-check-cc:
	@if [ -z "$(FUZZ_CC)" ]; then echo "make fuzz: clang not found (libFuzzer needs it): apt-get install clang-14 libclang-rt-14-dev"; exit 1; fi
	@echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' > /tmp/rx-fuzz-probe-$$$$.c && \
	  $(FUZZ_CC) -fsanitize=fuzzer /tmp/rx-fuzz-probe-$$$$.c -o /tmp/rx-fuzz-probe-$$$$ 2>/dev/null; ok=$$?; \
	  rm -f /tmp/rx-fuzz-probe-$$$$ /tmp/rx-fuzz-probe-$$$$.c; \
	  if [ $$ok != 0 ]; then echo "make fuzz: $(FUZZ_CC) cannot link -fsanitize=fuzzer: apt-get install libclang-rt-14-dev"; exit 1; fi

fuzz: fuzz-check-cc
	@$(MAKE) --no-print-directory CUDA=0 $(FUZZ_BINS)

$(FUZZ_OBJ): | $(PROTO_H)
$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_LIB): $(FUZZ_OBJ)
	@rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/%: fuzz/%.c fuzz/fuzz_util.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_LIB) $(PKG_LIBS) -fopenmp -lm -lpthread -o $@

fuzz-run: fuzz
	@mkdir -p $(FUZZ_BUILD)/artifacts $(FUZZ_BUILD)/tmp; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
	  echo "== $$t: $(FUZZ_SECONDS) s"; \
	  TMPDIR=$(abspath $(FUZZ_BUILD)/tmp) LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp) ASAN_OPTIONS=detect_leaks=1 \
	  $(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
	    -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- -print_final_stats=1 \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t > $(FUZZ_BUILD)/$$t.log 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_BUILD)/$$t.log); \
	  echo "$$t: $$execs executions in $(FUZZ_SECONDS) s, exit $$rc (log $(FUZZ_BUILD)/$$t.log)"; \
	  [ $$rc = 0 ] || fail="$$fail $$t"; \
	done; \
	if [ -n "$$fail" ]; then echo "fuzz-run: findings in$$fail (see $(FUZZ_BUILD)/artifacts/)"; exit 1; fi

-include $(FUZZ_OBJ:.o=.d)

-include $(OBJ:.o=.d) $(CU_OBJ:.o=.d) $(BUILD)/obj/src/runner/main.d
