/*-------------------------------------------------------------------------
 *
 * publisher_settings.c
 *		The audit stream's settings (guid.kafka_*, guid.slot_name,
 *		guid.database, guid.publisher_conninfo), the registration of the
 *		publisher worker, and lookups of a replication slot's position.
 *
 * PublisherInit runs in _PG_init: it defines the settings and registers
 * the publisher worker (coordinator/publisher.c) when guid.kafka_brokers is
 * set.  GuidSlotPosition and GuidSlotReady read a slot's persistent data
 * from shared memory; backends call them (guid.status, the audit checks)
 * as well as the publisher.
 *
 * What this file must not do: connect to anything, or keep state beyond
 * the setting variables.  It runs in the postmaster and in every backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "replication/slot.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/guc.h"

#include "guid.h"
#include "guid_stream.h"
#include "publisher_int.h"

char	   *guid_kafka_brokers = NULL;
char	   *guid_kafka_topic = NULL;
char	   *guid_kafka_properties = NULL;
char	   *guid_kafka_properties_file = NULL;
char	   *guid_slot_name = NULL;
char	   *guid_database = NULL;
char	   *guid_publisher_conninfo = NULL;
#ifdef GUID_FAULT_INJECTION
/* Built into test builds only (make GUID_FAULT_INJECTION=1, as make test does). */
char	   *guid_publisher_test_pause = NULL;
#endif

static bool
pub_check_slot_name(char **newval, void **extra, GucSource source)
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
pub_check_brokers(char **newval, void **extra, GucSource source)
{
	const char *problem = GuidHostPortProblem(*newval, false);

	if (problem)
	{
		GUC_check_errdetail("guid.kafka_brokers is host:port[,host:port...]. %s", problem);
		return false;
	}
	return true;
}

/*
 * A Kafka topic name, as Kafka checks it: 1 to 249 of [a-zA-Z0-9._-], not
 * "." or "..", and room for the checkpoint topic's suffix.
 */
static bool
pub_check_topic(char **newval, void **extra, GucSource source)
{
	const char *p;
	size_t		len = strlen(*newval);

	if (len == 0 || len > GUID_KAFKA_TOPIC_MAX - strlen(GUID_CHECKPOINT_SUFFIX))
	{
		GUC_check_errdetail("A topic name has 1 to %d characters here: Kafka allows %d, and \"%s\" is appended for the checkpoint topic.",
							(int) (GUID_KAFKA_TOPIC_MAX - strlen(GUID_CHECKPOINT_SUFFIX)),
							GUID_KAFKA_TOPIC_MAX, GUID_CHECKPOINT_SUFFIX);
		return false;
	}
	if (strcmp(*newval, ".") == 0 || strcmp(*newval, "..") == 0)
	{
		GUC_check_errdetail("Kafka does not allow the topic names \".\" and \"..\".");
		return false;
	}
	for (p = *newval; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '_' || *p == '-'))
		{
			GUC_check_errdetail("A Kafka topic name contains only ASCII letters, digits, \".\", \"_\" and \"-\".");
			return false;
		}
	return true;
}

/* Does a librdkafka property list name a credential? */
static bool
pub_properties_hold_secret(const char *properties)
{
	static const char *const secret_words[] = {"password", "secret", "sasl.jaas", "ssl.key", "token"};
	char	   *lower;
	bool		found = false;
	int			i;

	if (properties == NULL || properties[0] == '\0')
		return false;
	lower = pstrdup(properties);
	for (i = 0; lower[i]; i++)
		lower[i] = pg_tolower((unsigned char) lower[i]);
	for (i = 0; i < (int) lengthof(secret_words) && !found; i++)
		found = strstr(lower, secret_words[i]) != NULL;
	pfree(lower);
	return found;
}

static bool
pub_check_database(char **newval, void **extra, GucSource source)
{
	if (**newval == '\0' || strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("guid.database names a database: 1 to %d characters.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * PublisherInit: the publisher's settings; register the worker when
 * guid.kafka_brokers is set.
 */
void
PublisherInit(void)
{
	BackgroundWorker worker;

#ifdef GUID_FAULT_INJECTION
	DefineCustomStringVariable("guid.publisher_test_pause",
							   gettext_noop("For fault tests only: the publisher waits at this step (before_produce, before_commit, before_confirm)."),
							   NULL, &guid_publisher_test_pause, "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
#endif

	/* The rest take effect at server start only, as the worker does. */
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomStringVariable("guid.kafka_brokers",
							   gettext_noop("Kafka bootstrap servers (host:port,...) the audit stream is published to; empty disables the publisher."),
							   NULL, &guid_kafka_brokers, "",
							   PGC_POSTMASTER, 0, pub_check_brokers, NULL, NULL);
	DefineCustomStringVariable("guid.kafka_topic",
							   gettext_noop("Kafka topic of the audit stream; checkpoints go to <topic>_checkpoints."),
							   NULL, &guid_kafka_topic, "guid_assignments",
							   PGC_POSTMASTER, 0, pub_check_topic, NULL, NULL);
	DefineCustomStringVariable("guid.kafka_properties",
							   gettext_noop("Extra librdkafka settings for the publisher, name=value separated by \";\" (SASL, TLS, ...)."),
							   NULL, &guid_kafka_properties, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("guid.kafka_properties_file",
							   gettext_noop("File of librdkafka settings for the publisher, one name=value a line (SASL credentials, TLS keys); only the server's OS user may read it."),
							   gettext_noop("Read at each publisher session, after guid.kafka_properties."),
							   &guid_kafka_properties_file, "",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	if (pub_properties_hold_secret(guid_kafka_properties))
		ereport(WARNING,
				(errmsg("guid.kafka_properties holds credentials that every role with pg_read_all_settings can read"),
				 errhint("Move the SASL and TLS secrets to a file only the server's OS user can read, and name it in guid.kafka_properties_file; secrets in guid.kafka_properties are refused in a later release.")));
	DefineCustomStringVariable("guid.slot_name",
							   gettext_noop("Logical replication slot the publisher reads guid.audit from."),
							   NULL, &guid_slot_name, "guid_audit",
							   PGC_POSTMASTER, 0, pub_check_slot_name, NULL, NULL);
	DefineCustomStringVariable("guid.database",
							   gettext_noop("Database whose guid.audit the publisher streams."),
							   NULL, &guid_database, "postgres",
							   PGC_POSTMASTER, 0, pub_check_database, NULL, NULL);
	DefineCustomStringVariable("guid.publisher_conninfo",
							   gettext_noop("Extra libpq settings for the publisher's replication connection to this server (user, password, ...)."),
							   NULL, &guid_publisher_conninfo, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);

	if (!PublisherConfigured())
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "guid", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "GuidPublisherMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "guid publisher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "guid publisher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* PublisherConfigured: true when guid.kafka_brokers is set. */
bool
PublisherConfigured(void)
{
	return guid_kafka_brokers != NULL && guid_kafka_brokers[0] != '\0';
}

/*
 * pub_slot_lookup: a copy of the persistent data of replication slot name.
 * Returns false if there is no such slot.
 */
static bool
pub_slot_lookup(const char *name, ReplicationSlotPersistentData *data)
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

	if (!pub_slot_lookup(name, &data))
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

	if (!pub_slot_lookup(name, &data))
		return false;
	*database = data.database;
	return data.persistency == RS_PERSISTENT && data.confirmed_flush != InvalidXLogRecPtr;
}
