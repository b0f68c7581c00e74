# Makefile for guid: PGXS build, plus test, bench, demo.
#
#   make && make install        build and install into $(PG_CONFIG)'s tree
#   make test                   install packages, build, install, run every test
#   make bench                  print the benchmark table
#   make demo                   a scratch cluster issuing and decoding IDs

EXTENSION = guid
EXTVERSION = 1.0

MODULE_big = guid
OBJS = \
	extension/guid.o \
	extension/guid_type.o \
	extension/guid_ops.o \
	extension/decode.o \
	extension/generator.o \
	extension/status.o \
	coordinator/worker.o

DATA = $(wildcard sql/$(EXTENSION)--*.sql)

PG_CPPFLAGS = -I$(srcdir)/include
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# One version, here: the control file and the install script must agree.
ifneq ($(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control),$(EXTVERSION))
$(error $(EXTENSION).control default_version differs from EXTVERSION $(EXTVERSION))
endif
ifeq ($(wildcard sql/$(EXTENSION)--$(EXTVERSION).sql),)
$(error sql/$(EXTENSION)--$(EXTVERSION).sql is missing)
endif

.PHONY: deps test bench demo

deps:
	@test/services/install-packages.sh

test:
	@test/run-tests.sh

bench:
	@test/bench/bench.sh

demo:
	@test/demo/demo.sh
