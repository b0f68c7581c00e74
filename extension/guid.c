/*-------------------------------------------------------------------------
 *
 * guid.c
 *		Module entry point: _PG_init only delegates to each module's Init.
 *
 * The only calls from extension/ into coordinator/ are the three Init
 * calls below (include/guid_worker.h); README.md, "Layout", says why.
 *
 * The library works in two ways.  Loaded through shared_preload_libraries
 * it reserves shared memory for the generator and registers the
 * coordinator worker.  Loaded on demand (CREATE EXTENSION without the
 * preload) only the type, its operators and the decoding functions work;
 * every generating function then raises a clear error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "guid_core.h"
#include "guid_generator.h"
#include "guid_redis.h"
#include "guid_worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	/* the core: shared settings, before the modules that read them */
	GuidSettingsCapture();
	GuidCoreSettingsInit();
	GuidStreamSettingsInit();

	/* extension/: what SQL calls */
	GeneratorInit();
	ReservationWalInit();
	IdempotentInit();

	/* coordinator/: the background workers */
	LeaseInit();
	WorkerInit();
	PublisherInit();

	GuidSettingsEnforce();

	MarkGUCPrefixReserved("guid");
}
