/*-------------------------------------------------------------------------
 *
 * slots.c
 *		The audit stream's shared settings (guid.kafka_brokers,
 *		guid.slot_name, guid.database) and its replication slot, as
 *		backends and the publisher see them.
 *
 * Backends check the slot before they write an audit row (audit.c),
 * guid.status reports how far it is confirmed, and the publisher streams
 * from it.  The publisher's own settings (topic, librdkafka properties,
 * conninfo) are in coordinator/publisher_settings.c.
 *
 * What this file must not do: change a slot.  It only reads slot data
 * under ReplicationSlotControlLock and the slot's spinlock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "replication/slot.h"
#include "storage/lwlock.h"
#include "utils/guc.h"

#include "guid_core.h"

char	   *guid_kafka_brokers = NULL;
char	   *guid_slot_name = NULL;
char	   *guid_database = NULL;

static bool
slots_check_slot_name(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (**newval == '\0' || strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A replication slot name has 1 to %d characters.", NAMEDATALEN - 1);
		return false;
	}
	for (p = *newval; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
		{
			GUC_check_errdetail("Replication slot names may only contain lower case letters, numbers, and the underscore character.");
			return false;
		}
	return true;
}

static bool
slots_check_brokers(char **newval, void **extra, GucSource source)
{
	const char *problem = GuidHostPortProblem(*newval, false);

	if (problem)
	{
		GUC_check_errdetail("guid.kafka_brokers is host:port[,host:port...]. %s", problem);
		return false;
	}
	return true;
}

static bool
slots_check_database(char **newval, void **extra, GucSource source)
{
	if (**newval == '\0' || strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("guid.database names a database: 1 to %d characters.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * GuidStreamSettingsInit: define guid.kafka_brokers, guid.slot_name and
 * guid.database.  Restart-only, as the publisher is; defined only while
 * preloading.
 */
void
GuidStreamSettingsInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("guid.kafka_brokers",
							   gettext_noop("Kafka bootstrap servers (host:port,...) the audit stream is published to; empty disables the publisher."),
							   NULL, &guid_kafka_brokers, "",
							   PGC_POSTMASTER, 0, slots_check_brokers, NULL, NULL);
	DefineCustomStringVariable("guid.slot_name",
							   gettext_noop("Logical replication slot the publisher reads guid.audit from."),
							   NULL, &guid_slot_name, "guid_audit",
							   PGC_POSTMASTER, 0, slots_check_slot_name, NULL, NULL);
	DefineCustomStringVariable("guid.database",
							   gettext_noop("Database whose guid.audit the publisher streams."),
							   NULL, &guid_database, "postgres",
							   PGC_POSTMASTER, 0, slots_check_database, NULL, NULL);
}

/* GuidStreamConfigured: true when guid.kafka_brokers is set. */
bool
GuidStreamConfigured(void)
{
	return guid_kafka_brokers != NULL && guid_kafka_brokers[0] != '\0';
}

/*
 * A copy of the persistent data of replication slot name.  Returns false if
 * there is no such slot.
 */
static bool
slots_lookup(const char *name, ReplicationSlotPersistentData *data)
{
	bool		found = false;
	int			i;

	if (ReplicationSlotCtl == NULL)
		return false;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (!s->in_use || strcmp(NameStr(s->data.name), name) != 0)
			continue;
		SpinLockAcquire(&s->mutex);
		memcpy(data, &s->data, sizeof(*data));
		SpinLockRelease(&s->mutex);
		found = true;
		break;
	}
	LWLockRelease(ReplicationSlotControlLock);
	return found;
}

/*
 * GuidSlotPosition: the confirmed_flush LSN of replication slot name, and
 * its plugin (if plugin is not NULL).  Returns false if there is no such slot.
 */
bool
GuidSlotPosition(const char *name, XLogRecPtr *confirmed, char *plugin, size_t pluginlen)
{
	ReplicationSlotPersistentData data;

	if (!slots_lookup(name, &data))
		return false;
	*confirmed = data.confirmed_flush;
	if (plugin)
		strlcpy(plugin, NameStr(data.plugin), pluginlen);
	return true;
}

/*
 * GuidSlotReady: true if replication slot name exists, is persistent (its
 * creation finished: a transaction committing from now on is decoded) and
 * has a confirmed position.  Sets *database to the slot's database.
 */
bool
GuidSlotReady(const char *name, Oid *database)
{
	ReplicationSlotPersistentData data;

	if (!slots_lookup(name, &data))
		return false;
	*database = data.database;
	return data.persistency == RS_PERSISTENT && data.confirmed_flush != InvalidXLogRecPtr;
}
