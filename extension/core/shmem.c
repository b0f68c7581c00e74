/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The shared-memory registry: each module registers its own struct,
 *		and the status areas that guid.status reads.
 *
 * Modules call GuidShmemRegister() (or GuidStatusRegister()) from their
 * Init function while the library is preloaded.  The core installs one
 * shmem_request_hook and one shmem_startup_hook (chaining the previous
 * ones, as pg_stat_statements does): the first requests every area's space
 * and LWLock tranche, the second creates each area under AddinShmemInitLock,
 * zeroes a new one and calls its module's init function, and sets the
 * module's pointer.  That runs in the postmaster at server start and after
 * every crash-restart; children inherit the pointers.  Each area is a
 * ShmemInitStruct of its own, so it starts on a cache line.
 *
 * A status area holds a module's snapshot for guid.status: plain fields
 * behind a spinlock, copied whole in and out, never held across anything
 * but the copy.  The writer is the module (usually one worker); the reader
 * is guid_status(), which finds the area by name and needs nothing of the
 * module that writes it.
 *
 * What this file must not do: know any module's struct.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"

#include "guid_core.h"

typedef struct GuidShmemEntry
{
	const char *name;
	Size		size;			/* fixed, or computed by size_fn */
	Size		(*size_fn) (void);	/* at shmem request time, or NULL */
	int			nlocks;
	void	  **attach;
	GuidShmemInitFn init;		/* a module's init, or NULL */
	struct GuidStatusArea *status;	/* or a status area's */
	struct GuidShmemEntry *next;
} GuidShmemEntry;

/* The shared part of a status area: the spinlock, then the snapshot at the
 * next MAXALIGN boundary (status_data), so its fields are aligned. */
typedef struct GuidStatusShared
{
	slock_t		mutex;			/* protects the snapshot */
} GuidStatusShared;

#define STATUS_DATA_OFFSET		MAXALIGN(sizeof(GuidStatusShared))
#define status_data(ss)			((char *) (ss) + STATUS_DATA_OFFSET)

/* A status area, as its writer and readers hold it (process-local). */
struct GuidStatusArea
{
	const char *name;
	Size		size;
	void		(*init) (void *status);	/* initial snapshot, or NULL */
	GuidStatusShared *shared;	/* set at shared-memory startup */
	struct GuidStatusArea *next;
};

/* The last error of the node id, for guid.status. */
typedef struct GuidCoreShared
{
	slock_t		mutex;			/* protects last_error */
	char		last_error[GUID_ERROR_LEN];
} GuidCoreShared;

static GuidShmemEntry *shmem_entries = NULL;
static GuidShmemEntry **shmem_tail = &shmem_entries;
static GuidStatusArea *status_areas = NULL;
static GuidCoreShared *core_shared = NULL;
static bool hooks_installed = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
shmem_request(void)
{
	GuidShmemEntry *e;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	for (e = shmem_entries; e != NULL; e = e->next)
	{
		if (e->size_fn)
			e->size = e->size_fn();
		RequestAddinShmemSpace(CACHELINEALIGN(e->size));
		if (e->nlocks > 0)
			RequestNamedLWLockTranche(e->name, e->nlocks);
	}
}

static void
shmem_startup(void)
{
	GuidShmemEntry *e;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (e = shmem_entries; e != NULL; e = e->next)
	{
		bool		found;
		void	   *area = ShmemInitStruct(e->name, e->size, &found);

		if (!found)
		{
			memset(area, 0, e->size);
			if (e->init)
				e->init(area, e->nlocks > 0 ? GetNamedLWLockTranche(e->name) : NULL);
			if (e->status)
			{
				GuidStatusShared *ss = (GuidStatusShared *) area;

				SpinLockInit(&ss->mutex);
				if (e->status->init)
					e->status->init(status_data(ss));
			}
		}
		*e->attach = area;
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
core_shared_init(void *area, LWLockPadded *locks)
{
	SpinLockInit(&((GuidCoreShared *) area)->mutex);
}

static GuidShmemEntry *
shmem_register(const char *name, Size size, int nlocks, void **attach)
{
	GuidShmemEntry *e;

	if (!hooks_installed)
	{
		hooks_installed = true;
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = shmem_request;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = shmem_startup;
		shmem_register("guid core", sizeof(GuidCoreShared), 0,
					   (void **) &core_shared)->init = core_shared_init;
	}

	e = MemoryContextAllocZero(TopMemoryContext, sizeof(GuidShmemEntry));
	e->name = MemoryContextStrdup(TopMemoryContext, name);
	e->size = size;
	e->nlocks = nlocks;
	e->attach = attach;
	/* in registration order: the core's own area first */
	*shmem_tail = e;
	shmem_tail = &e->next;
	return e;
}

/*
 * GuidShmemRegister: reserve size() bytes of shared memory under name, with
 * nlocks LWLocks; see guid_core.h.  size is called when the memory is
 * requested, once MaxBackends is known.  Does nothing unless preloading.
 */
void
GuidShmemRegister(const char *name, Size (*size) (void), int nlocks,
				  void **attach, GuidShmemInitFn init)
{
	GuidShmemEntry *e;

	if (!process_shared_preload_libraries_in_progress)
		return;
	e = shmem_register(name, 0, nlocks, attach);
	e->size_fn = size;
	e->init = init;
}

/* GuidPreloaded: true when guid's shared memory exists in this process. */
bool
GuidPreloaded(void)
{
	return core_shared != NULL;
}

/*
 * GuidRequirePreloaded: raise the standard error when guid is not in
 * shared_preload_libraries.
 */
void
GuidRequirePreloaded(void)
{
	if (core_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("guid must be loaded via shared_preload_libraries"),
				 errhint("Add guid to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * GuidStatusRegister: a status area of size bytes under name, zeroed at
 * shared-memory startup and then passed to init (unless NULL).  Returns
 * NULL unless preloading.
 */
GuidStatusArea *
GuidStatusRegister(const char *name, Size size, void (*init) (void *status))
{
	GuidStatusArea *a;

	if (!process_shared_preload_libraries_in_progress)
		return NULL;

	a = MemoryContextAllocZero(TopMemoryContext, sizeof(GuidStatusArea));
	a->name = MemoryContextStrdup(TopMemoryContext, name);
	a->size = size;
	a->init = init;
	a->next = status_areas;
	status_areas = a;
	shmem_register(psprintf("guid status %s", name),
				   add_size(STATUS_DATA_OFFSET, size), 0,
				   (void **) &a->shared)->status = a;
	return a;
}

/* GuidStatusWrite: replace the area's snapshot with src (area's size). */
void
GuidStatusWrite(GuidStatusArea *area, const void *src)
{
	SpinLockAcquire(&area->shared->mutex);
	memcpy(status_data(area->shared), src, area->size);
	SpinLockRelease(&area->shared->mutex);
}

/*
 * GuidStatusUpdate: change the snapshot in place: update(status, arg) runs
 * under the area's spinlock, so it must only copy a few fields.
 */
void
GuidStatusUpdate(GuidStatusArea *area, void (*update) (void *status, const void *arg),
				 const void *arg)
{
	SpinLockAcquire(&area->shared->mutex);
	update(status_data(area->shared), arg);
	SpinLockRelease(&area->shared->mutex);
}

/* GuidStatusRead: copy the snapshot registered under name into dst. */
bool
GuidStatusRead(const char *name, void *dst, Size size)
{
	GuidStatusArea *a;

	for (a = status_areas; a != NULL; a = a->next)
	{
		if (strcmp(a->name, name) != 0 || a->shared == NULL)
			continue;
		Assert(a->size == size);
		SpinLockAcquire(&a->shared->mutex);
		memcpy(dst, status_data(a->shared), Min(size, a->size));
		SpinLockRelease(&a->shared->mutex);
		return true;
	}
	memset(dst, 0, size);
	return false;
}

/* GuidSetLastError: remember msg ("" to clear) for guid.status. */
void
GuidSetLastError(const char *msg)
{
	SpinLockAcquire(&core_shared->mutex);
	strlcpy(core_shared->last_error, msg, sizeof(core_shared->last_error));
	SpinLockRelease(&core_shared->mutex);
}

/* GuidGetLastError: copy the last error ("" if none) into dst. */
void
GuidGetLastError(char *dst, size_t len)
{
	SpinLockAcquire(&core_shared->mutex);
	strlcpy(dst, core_shared->last_error, len);
	SpinLockRelease(&core_shared->mutex);
}
