# Makefile for guid: PGXS build, plus test, bench, demo.
#
#   make && make install        build and install into $(PG_CONFIG)'s tree
#   make test                   install packages, build, install, run every test
#   make bench                  print the benchmark table
#   make fleet-bench            1,024 lease holders on a 3-node ZooKeeper: time
#                               to lease, leases lost when the leader is killed;
#                               the audit stream on 3 brokers beside 1;
#                               8 clusters: a publisher restart, their memory
#   make demo                   scratch clusters issuing and decoding IDs
#                               (FLEET=1: three clusters on the ensemble and 3 brokers)
#   make services-up/-down      start/stop ZooKeeper, Redis and Kafka on loopback
#                               (FLEET=1: and the 3-node ZooKeeper and Kafka fleet)

EXTENSION = guid
EXTVERSION = 1.5

MODULE_big = guid
OBJS = \
	extension/core/settings.o \
	extension/core/shmem.o \
	extension/core/durable.o \
	extension/core/slots.o \
	extension/core/resolve.o \
	extension/guid.o \
	extension/guid_type.o \
	extension/guid_ops.o \
	extension/decode.o \
	extension/generator.o \
	extension/generator_state.o \
	extension/reservation.o \
	extension/reservation_wal.o \
	extension/status.o \
	extension/idempotent.o \
	extension/redis.o \
	extension/audit.o \
	coordinator/worker.o \
	coordinator/lease_worker.o \
	coordinator/lease_protocol.o \
	coordinator/lease_hold.o \
	coordinator/lease_zk.o \
	coordinator/decoder.o \
	coordinator/publisher_settings.o \
	coordinator/publisher_status.o \
	coordinator/publisher.o \
	coordinator/publisher_kafka.o \
	coordinator/repl_client.o \
	coordinator/kafka_sink.o \
	coordinator/kafka_checkpoint.o \
	coordinator/kafka_call.o \
	coordinator/kafka_topics.o \
	coordinator/kafka_readback.o \
	coordinator/publisher_failover.o \
	coordinator/publisher_standby.o

DATA = $(wildcard sql/$(EXTENSION)--*.sql)
# The query file for prometheus-postgres-exporter (README, "HTTP API",
# Prometheus): installed beside guid.control, in sharedir/extension.
DATA += sql/guid_postgres_exporter.yaml

PG_CPPFLAGS = -I$(srcdir)/include -I$(shell $(PG_CONFIG) --includedir)
# A test build: see .build-flags below.
ifdef GUID_FAULT_INJECTION
PG_CPPFLAGS += -DGUID_FAULT_INJECTION
endif
SHLIB_LINK = -lzookeeper_st -lhiredis -lrdkafka -lpq
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# make GUID_FAULT_INJECTION=1: a test build, with the hidden settings that
# fault tests use to hold a worker at a chosen step (make test builds it).
# A production build has none of them.  The flag is kept in .build-flags so
# that switching it rebuilds every object.
$(shell echo '$(GUID_FAULT_INJECTION)' | cmp -s - .build-flags 2>/dev/null || echo '$(GUID_FAULT_INJECTION)' > .build-flags)
$(OBJS): .build-flags

# PGXS tracks no header dependencies (unless PostgreSQL was configured with
# --enable-depend): rebuild every object when a header changes, so that no
# object is left with another idea of a shared struct's layout.
$(OBJS): $(wildcard include/*.h extension/*.h coordinator/*.h)

# One version, here: the control file and the install script must agree.
ifneq ($(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control),$(EXTVERSION))
$(error $(EXTENSION).control default_version differs from EXTVERSION $(EXTVERSION))
endif
ifeq ($(wildcard sql/$(EXTENSION)--*$(EXTVERSION).sql),)
$(error no install or upgrade script reaches version $(EXTVERSION) in sql/)
endif

.PHONY: deps test bench fleet-bench demo services-up services-down

deps:
	@test/services/install-packages.sh

test:
	@test/run-tests.sh

bench: guid_consumer
	@test/bench/bench.sh

fleet-bench:
	@test/bench/fleet_lease.sh
	@test/bench/fleet_stream.sh
	@test/bench/fleet_clusters.sh

demo:
	@if [ "$(FLEET)" = 1 ]; then test/demo/fleet.sh; else test/demo/demo.sh; fi

# Real services on loopback (ZooKeeper, Redis, Kafka); addresses in
# $(GUID_RUN_DIR)/services/services.env.  FLEET=1: also a 3-server ZooKeeper
# ensemble and a 3-broker Kafka (README, "Running a fleet").
services-up:
	@GUID_FLEET=$(FLEET) test/services/services.sh up

services-down:
	@test/services/services.sh down

# The reference consumer (coordinator/guid_consumer.c): a client program,
# built next to guid.so and not installed.
all: guid_consumer

guid_consumer: coordinator/guid_consumer.c
	$(CC) -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I$(shell $(PG_CONFIG) --includedir) -o $@ $< \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -lrdkafka -lhiredis

# The HTTP gateway (coordinator/gateway*.c, README "HTTP API"): a client
# program, compiled in one step (no objects in coordinator/, which hold
# guid.so's), installed into PostgreSQL's bindir by make install.
GATEWAY_SRCS = coordinator/gateway_main.c coordinator/gateway_config.c \
	coordinator/gateway_http.c coordinator/gateway_endpoints.c \
	coordinator/gateway_pool.c coordinator/gateway_auth.c \
	coordinator/gateway_limit.c coordinator/gateway_metrics.c \
	coordinator/gateway_published.c

all: guid_gateway

guid_gateway: $(GATEWAY_SRCS) coordinator/gateway.h
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -pthread \
		-I$(shell $(PG_CONFIG) --includedir) -o $@ $(GATEWAY_SRCS) \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -lmicrohttpd -ljwt -lm

install: install-gateway

.PHONY: install-gateway
install-gateway: guid_gateway
	$(INSTALL_PROGRAM) guid_gateway '$(DESTDIR)$(bindir)/guid_gateway'

# The lease protocol's unit test (test/unit/lease_test.c, run by make test
# against a real ZooKeeper): the plain-C protocol objects compiled a second
# time, without any PostgreSQL include path, and linked only with the
# ZooKeeper client.
LEASE_PLAIN_SRCS = coordinator/lease_protocol.c coordinator/lease_hold.c \
	coordinator/lease_zk.c extension/core/resolve.c
LEASE_PLAIN_HDRS = include/guid_lease.h include/guid_resolve.h coordinator/lease_client.h

all: test/unit/lease_test

LEASE_TEST_SRCS = test/unit/lease_test.c test/unit/lease_test_env.c

test/unit/lease_test: $(LEASE_TEST_SRCS) test/unit/lease_test.h $(LEASE_PLAIN_SRCS) $(LEASE_PLAIN_HDRS)
	$(CC) -std=gnu99 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter \
		-I$(srcdir)/include -o $@ $(LEASE_TEST_SRCS) $(LEASE_PLAIN_SRCS) -lzookeeper_st

# The fleet lease simulator (test/fleet/, run by test/tap/045 and make
# fleet-bench): N lease holders in one process, each a thread with its own
# ZooKeeper session, linked with the same plain-C protocol objects.  Not
# installed.
all: test/fleet/guid_lease_sim

LEASE_SIM_SRCS = test/fleet/lease_sim.c test/fleet/lease_sim_host.c

test/fleet/guid_lease_sim: $(LEASE_SIM_SRCS) test/fleet/lease_sim.h $(LEASE_PLAIN_SRCS) $(LEASE_PLAIN_HDRS)
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -pthread \
		-I$(srcdir)/include -o $@ $(LEASE_SIM_SRCS) $(LEASE_PLAIN_SRCS) \
		-Wl,--wrap=zoo_acreate -lzookeeper_st

EXTRA_CLEAN = guid_consumer guid_gateway test/unit/lease_test test/fleet/guid_lease_sim .build-flags
