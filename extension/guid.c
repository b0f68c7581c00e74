/*-------------------------------------------------------------------------
 *
 * guid.c
 *		Module entry point: _PG_init only delegates to each module's Init.
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

#include "guid.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	GuidSettingsCapture();
	GeneratorInit();
	LeaseInit();
	IdempotentInit();
	RedisInit();
	WorkerInit();
	PublisherInit();
	GuidSettingsEnforce();

	MarkGUCPrefixReserved("guid");
}
