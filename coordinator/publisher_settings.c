/*-------------------------------------------------------------------------
 *
 * publisher_settings.c
 *		The publisher's own settings (guid.kafka_topic,
 *		guid.kafka_properties[_file], guid.kafka_replication_factor,
 *		guid.kafka_min_insync_replicas, guid.publisher_conninfo) and the
 *		registration of the publisher worker.
 *
 * PublisherInit runs in _PG_init: it defines the settings and registers
 * the publisher worker (coordinator/publisher.c) when guid.kafka_brokers is
 * set.  The settings backends read too (guid.kafka_brokers, guid.slot_name,
 * guid.database) and the slot lookups are the core's
 * (extension/core/slots.c).
 *
 * What this file must not do: connect to anything, or keep state beyond
 * the setting variables.  It runs in the postmaster and in every backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "guid_core.h"
#include "guid_stream.h"
#include "guid_worker.h"
#include "publisher_int.h"

char	   *guid_kafka_topic = NULL;
char	   *guid_kafka_properties = NULL;
char	   *guid_kafka_properties_file = NULL;
char	   *guid_publisher_conninfo = NULL;
char	   *guid_publisher_standby_slots = NULL;
int			guid_kafka_replication_factor = -1;
int			guid_kafka_min_insync_replicas = -1;
#ifdef GUID_FAULT_INJECTION
/* Built into test builds only (make GUID_FAULT_INJECTION=1, as make test does). */
char	   *guid_publisher_test_pause = NULL;
#endif

/*
 * A Kafka topic name, as Kafka checks it: 1 to 249 of [a-zA-Z0-9._-], not
 * "." or "..", and room for the suffix of the checkpoint topic of releases
 * before 1.6, which an upgrade reads.
 */
static bool
pub_check_topic(char **newval, void **extra, GucSource source)
{
	const char *p;
	size_t		len = strlen(*newval);

	if (len == 0 || len > GUID_KAFKA_TOPIC_MAX - strlen(GUID_CHECKPOINT_SUFFIX))
	{
		GUC_check_errdetail("A topic name has 1 to %d characters here: Kafka allows %d, and \"%s\" is appended for the checkpoint topic of releases before 1.6, which an upgrade reads.",
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

/*
 * guid.publisher_standby_slots: replication slot names separated by commas
 * (spaces allowed), each as PostgreSQL checks a slot name.
 */
static bool
pub_check_standby_slots(char **newval, void **extra, GucSource source)
{
	char	   *list = pstrdup(*newval);
	char	   *name;
	char	   *save = NULL;
	bool		ok = true;

	for (name = strtok_r(list, ", \t", &save); name && ok; name = strtok_r(NULL, ", \t", &save))
	{
		const char *p;

		if (strlen(name) >= NAMEDATALEN)
			ok = false;
		for (p = name; *p && ok; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
		if (!ok)
			GUC_check_errdetail("\"%s\" is not a replication slot name: 1 to %d lower case letters, numbers and underscores.",
								name, NAMEDATALEN - 1);
	}
	pfree(list);
	return ok;
}

/* A replica count: -1 (automatic) or 1 and up, never 0. */
static bool
pub_check_replicas(int *newval, void **extra, GucSource source)
{
	if (*newval == 0)
	{
		GUC_check_errdetail("Use -1 for the automatic value, or a count of 1 or more.");
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
							   gettext_noop("For fault tests only: the publisher waits at this step (before_produce, before_commit, before_confirm), or its next send_offsets_to_transaction blocks for ever (hang_send_offsets)."),
							   NULL, &guid_publisher_test_pause, "",
							   PGC_SIGHUP, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL, NULL, NULL, NULL);
#endif

	/* The rest take effect at server start only, as the worker does. */
	if (!process_shared_preload_libraries_in_progress)
		return;

	PubStatusInit();

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
	DefineCustomIntVariable("guid.kafka_replication_factor",
							gettext_noop("Replication factor of the Kafka topics guid creates, and the least it publishes into; -1: min(3, the brokers the cluster reports)."),
							NULL, &guid_kafka_replication_factor, -1, -1, PG_INT16_MAX,
							PGC_POSTMASTER, 0, pub_check_replicas, NULL, NULL);
	DefineCustomIntVariable("guid.kafka_min_insync_replicas",
							gettext_noop("min.insync.replicas of the Kafka topics guid creates, and the least it publishes into; -1: 2 where the replication factor is 3 or more, else 1."),
							NULL, &guid_kafka_min_insync_replicas, -1, -1, PG_INT16_MAX,
							PGC_POSTMASTER, 0, pub_check_replicas, NULL, NULL);
	if (guid_kafka_replication_factor > 0 &&
		guid_kafka_min_insync_replicas > guid_kafka_replication_factor)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("guid.kafka_min_insync_replicas (%d) is above guid.kafka_replication_factor (%d)",
						guid_kafka_min_insync_replicas, guid_kafka_replication_factor),
				 errdetail("No write to a topic with more in-sync replicas required than it has replicas is ever acknowledged."),
				 errhint("Lower guid.kafka_min_insync_replicas or raise guid.kafka_replication_factor, and start the server again.")));
	DefineCustomStringVariable("guid.publisher_conninfo",
							   gettext_noop("Extra libpq settings for the publisher's replication connection to this server (user, password, ...)."),
							   NULL, &guid_publisher_conninfo, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);

	DefineCustomStringVariable("guid.publisher_standby_slots",
							   gettext_noop("Physical replication slots of standbys that must have flushed a transaction before the publisher sends its audit rows to Kafka."),
							   gettext_noop("Comma-separated slot names; empty: publish without waiting for standbys."),
							   &guid_publisher_standby_slots, "",
							   PGC_SIGHUP, 0, pub_check_standby_slots, NULL, NULL);

	if (!GuidStreamConfigured())
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
