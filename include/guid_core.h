/*-------------------------------------------------------------------------
 *
 * guid_core.h
 *		The shared core: what every module of guid may use, and what uses
 *		no module.
 *
 * The core (extension/core/) holds the settings that identify a cluster and
 * that several modules read, the shared-memory registry where each module
 * registers its own struct, the status areas that guid.status reads, durable
 * file writes, the replication slot lookups, and the clocks.  It calls no
 * other module: extension/ and coordinator/ both build on it, and it is the
 * only thing they share besides the generator API (guid_generator.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_CORE_H
#define GUID_CORE_H

#include <time.h>

#include "access/xlogdefs.h"
#include "storage/lwlock.h"

#include "guid.h"

/* Length of an error message kept in shared memory for guid.status. */
#define GUID_ERROR_LEN			256

/* ----------
 * Settings several modules read (extension/core/settings.c)
 * ----------
 */
extern int	guid_node_id;		/* -1: lease one from guid.zookeeper */
extern char *guid_zookeeper;	/* "" when not set */

extern void GuidCoreSettingsInit(void);
extern const char *GuidNamespace(void);
extern bool GuidLeaseConfigured(void);

/* Restart-only settings are strict (see settings.c). */
extern void GuidSettingsCapture(void);
extern void GuidSettingsEnforce(void);
extern const char *GuidHostPortProblem(const char *value, bool zookeeper);
extern char *GuidReadSecretFile(const char *setting, const char *path,
								char *err, size_t errlen);

/* ----------
 * Shared-memory registry (extension/core/shmem.c)
 *
 * A module registers its struct from its Init function while the library is
 * preloaded; the core requests the memory (size() is called then, once
 * MaxBackends is known) and, when the shared memory is
 * created (server start, every crash-restart), sets *attach in the
 * postmaster (children inherit it) and calls init once for a new area, with
 * the area zeroed and its nlocks LWLocks in locks.
 * ----------
 */
typedef void (*GuidShmemInitFn) (void *area, LWLockPadded *locks);

extern void GuidShmemRegister(const char *name, Size (*size) (void), int nlocks,
							  void **attach, GuidShmemInitFn init);
extern bool GuidPreloaded(void);
extern void GuidRequirePreloaded(void);

/*
 * Status areas: a module publishes a snapshot of plain fields (its state,
 * counters, last error) that guid.status copies out.  Each area has its own
 * spinlock; reads and writes copy the whole struct.  Read returns false and
 * zeroes dst when no module registered name.  init (or NULL) sets the
 * first snapshot when the shared memory is created.
 */
typedef struct GuidStatusArea GuidStatusArea;

extern GuidStatusArea *GuidStatusRegister(const char *name, Size size,
										  void (*init) (void *status));
extern void GuidStatusWrite(GuidStatusArea *area, const void *src);
extern void GuidStatusUpdate(GuidStatusArea *area,
							 void (*update) (void *status, const void *arg),
							 const void *arg);
extern bool GuidStatusRead(const char *name, void *dst, Size size);

/* The last error of the node id (generator, lease), for guid.status. */
extern void GuidSetLastError(const char *msg);
extern void GuidGetLastError(char *dst, size_t len);

/* ----------
 * Durable files in the data directory (extension/core/durable.c)
 * ----------
 */
extern bool GuidWriteFileDurably(const char *path, const char *content, int elevel);

/* ----------
 * The audit stream's settings and its replication slot
 * (extension/core/slots.c): backends check them before they write audit
 * rows, guid.status reports on them, the publisher uses them.
 * ----------
 */
extern char *guid_kafka_brokers;
extern char *guid_slot_name;
extern char *guid_database;

extern void GuidStreamSettingsInit(void);
extern bool GuidStreamConfigured(void);
extern bool GuidSlotPosition(const char *name, XLogRecPtr *confirmed,
							 char *plugin, size_t pluginlen);
extern bool GuidSlotReady(const char *name, Oid *database);

/* ----------
 * Clocks
 * ----------
 */

/*
 * GuidMonotonicNs: CLOCK_BOOTTIME in nanoseconds.  The same clock in every
 * process, it never steps, and unlike CLOCK_MONOTONIC it keeps counting
 * while the machine is suspended: ZooKeeper's clock does not stop either, so
 * a lease deadline counted on CLOCK_MONOTONIC would outlive a suspend.
 * Lease deadlines are counted on it.
 */
static inline uint64
GuidMonotonicNs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* GuidWallClockMs: the system clock, in milliseconds since the guid epoch. */
static inline int64
GuidWallClockMs(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - GUID_EPOCH_UNIX_MS;
}

#endif							/* GUID_CORE_H */
