# cairn — top-level build.
#
#   make            build everything into build/
#   make deps       install missing Debian packages (apt-get; sudo when not root)
#   make run        deps + build + start one member on 127.0.0.1:2379 with ./data
#   make test       deps + build + run every test (prints "N passed, N failed")
#   make test-asan  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#
# Each module lists its sources, libraries and tests in its own module.mk,
# included below; this file holds only what they share.

BUILD ?= build
CC ?= cc
SAN ?= 0

DEB_PKGS := build-essential pkg-config libuv1-dev libprotobuf-c-dev protobuf-c-compiler \
	liblmdb-dev libnghttp2-dev libcmocka-dev clang clang-format \
	etcd-server etcd-client python3-etcd3 python3-grpcio protobuf-compiler python3-protobuf iproute2 libclang-rt-14-dev
PKGS := libuv lmdb libprotobuf-c libnghttp2
TEST_PKGS := cmocka

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Werror
CFLAGS ?= -O2 -g
ifeq ($(SAN),1)
BUILD := build-asan
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(TEST_PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -I. -I$(BUILD) $(PKG_CFLAGS) -MMD -MP
LIBS := $(PKG_LIBS) -lpthread -lm
TEST_LIBS := $(LIBS) $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

# Filled in by module.mk files.
PROTO_SRCS :=
LIBS_ALL :=
BINS :=
TEST_BINS :=
TEST_SCRIPTS :=

.PHONY: all deps run test test-run test-asan clean format check-format
all: build-all

# libFuzzer targets (clang; ASan and UBSan, every report fatal). A module adds
# one with
#   $(eval $(call fuzz_target,NAME,SOURCES,PREREQUISITES,SEED_DIRS))
# which builds $(FUZZ_BUILD)/fuzz_NAME from SOURCES (linked with $(LIBS); more
# PREREQUISITES such as headers rebuild it) and defines `make fuzz-NAME` (with
# "-" for "_") [FUZZ_SECONDS=N]: N seconds of fuzzing, new inputs kept in
# $(FUZZ_BUILD)/corpus_NAME, seeds read from SEED_DIRS (none if empty).
# `make fuzz` builds every target, `make fuzz-short` runs each in turn.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC := clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -I. -I$(BUILD) $(PKG_CFLAGS)
FUZZ_BINS :=
.PHONY: fuzz fuzz-short
define fuzz_target
FUZZ_BINS += $(FUZZ_BUILD)/fuzz_$(1)
$(FUZZ_BUILD)/fuzz_$(1): $(2) $(3)
	@mkdir -p $$(dir $$@)
	$(FUZZ_CC) -o $$@ $(2) $(LIBS)
.PHONY: fuzz-$(subst _,-,$(1))
fuzz-short: fuzz-$(subst _,-,$(1))
fuzz-$(subst _,-,$(1)): $(FUZZ_BUILD)/fuzz_$(1)
	@mkdir -p $(FUZZ_BUILD)/corpus_$(1)
	$$< -max_total_time=$$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
		$(FUZZ_BUILD)/corpus_$(1) $(4)
endef

include common/module.mk
include proto/module.mk
include store/module.mk
include raft/module.mk
include rpc/module.mk
include server/module.mk
include tools/module.mk
include tests/module.mk

fuzz: $(FUZZ_BINS)

PROTO_GEN_C := $(PROTO_SRCS:%.proto=$(BUILD)/%.pb-c.c)
PROTO_GEN_H := $(PROTO_SRCS:%.proto=$(BUILD)/%.pb-c.h)

$(BUILD)/%.pb-c.c $(BUILD)/%.pb-c.h: %.proto
	@mkdir -p $(dir $@)
	protoc-c -I. --c_out=$(BUILD) $<

$(BUILD)/%.pb-c.o: $(BUILD)/%.pb-c.c
	$(CC) -std=c11 -D_GNU_SOURCE $(CFLAGS) -I. -I$(BUILD) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# A test binary lists its objects and libraries as prerequisites in module.mk.
$(BUILD)/tests/bin/%:
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(TEST_LIBS)

build-all: $(LIBS_ALL) $(BINS) $(TEST_BINS)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: deps
	$(MAKE) $(BUILD)/cairnd
	exec $(BUILD)/cairnd --name default --data-dir ./data \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster default=http://127.0.0.1:2380

test: deps
	$(MAKE) build-all
	$(MAKE) test-run

test-asan: deps
	$(MAKE) SAN=1 build-all
	$(MAKE) SAN=1 test-run

test-run:
	BUILD=$(BUILD) SAN=$(SAN) tests/run.sh $(TEST_BINS) $(TEST_SCRIPTS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
