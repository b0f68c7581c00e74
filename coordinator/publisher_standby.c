/*-------------------------------------------------------------------------
 *
 * publisher_standby.c
 *		guid.publisher_standby_slots: publish only what the standbys have
 *		(PostgreSQL 17's synchronized_standby_slots, for the audit stream).
 *
 * With asynchronous replication the primary may publish a transaction to
 * Kafka that never reaches a standby; after a failover to that standby,
 * Kafka holds rows the new primary lacks.  When guid.publisher_standby_slots
 * names physical replication slots, the publisher sends no row of a
 * transaction to Kafka until every one of those slots has flushed its
 * commit record (a physical slot's restart_lsn is the flush position its
 * standby reported).  A slot that does not exist, or is not physical, is
 * waited for too, and said so: nothing is published past it, as PostgreSQL
 * 17 does.
 *
 * The wait is a latch wait with interrupts honoured (a reload that changes
 * the setting takes effect at once); the replication connection keeps
 * sending status updates, and guid.status shows "waiting for standby" with
 * the reason in publisher_error.
 *
 * What this file must not do: change a slot, or talk to Kafka.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "replication/slot.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "guid_core.h"
#include "kafka_sink.h"
#include "publisher_int.h"

/* Check the standby slots again this often while waiting, ms */
#define PUB_STANDBY_POLL_MS		100

/*
 * standby_slot: whether physical slot name has flushed lsn; fills why if
 * not.
 */
static bool
standby_slot(const char *name, XLogRecPtr lsn, char *why, size_t whylen)
{
	bool		found = false;
	bool		physical = false;
	XLogRecPtr	flushed = InvalidXLogRecPtr;
	int			i;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *slot = &ReplicationSlotCtl->replication_slots[i];

		if (!slot->in_use || strcmp(NameStr(slot->data.name), name) != 0)
			continue;
		SpinLockAcquire(&slot->mutex);
		physical = slot->data.database == InvalidOid;
		flushed = slot->data.restart_lsn;
		SpinLockRelease(&slot->mutex);
		found = true;
		break;
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (!found)
		snprintf(why, whylen, "standby slot \"%s\" (guid.publisher_standby_slots) does not exist", name);
	else if (!physical)
		snprintf(why, whylen, "standby slot \"%s\" (guid.publisher_standby_slots) is not a physical slot", name);
	else if (flushed == InvalidXLogRecPtr || flushed < lsn)
		snprintf(why, whylen, "waiting for standby slot \"%s\" to flush %X/%X",
				 name, LSN_FORMAT_ARGS(lsn));
	else
		return true;
	return false;
}

/*
 * PubStandbysFlushed: true if every slot guid.publisher_standby_slots
 * names has flushed lsn (or it names none); else fills why.
 */
bool
PubStandbysFlushed(XLogRecPtr lsn, char *why, size_t whylen)
{
	char	   *list;
	char	   *name;
	char	   *save = NULL;
	bool		ok = true;

	if (guid_publisher_standby_slots == NULL || guid_publisher_standby_slots[0] == '\0' ||
		ReplicationSlotCtl == NULL)
		return true;
	list = pstrdup(guid_publisher_standby_slots);
	for (name = strtok_r(list, ", \t", &save); name && ok; name = strtok_r(NULL, ", \t", &save))
		ok = standby_slot(name, lsn, why, whylen);
	pfree(list);
	return ok;
}

/*
 * PubWaitForStandbys: wait until PubStandbysFlushed(lsn), keeping the
 * replication connection alive.  Returns false if the connection failed
 * (reported).  SIGTERM ends the worker as anywhere else.
 */
bool
PubWaitForStandbys(PubSession *s, XLogRecPtr lsn)
{
	char		why[GUID_ERROR_LEN];
	bool		waited = false;

	while (!PubStandbysFlushed(lsn, why, sizeof(why)))
	{
		if (!waited)
			PubSetState("waiting for standby");
		waited = true;
		PubFail(LOG, "%s", why);
		if (s->ks)
			KafkaSinkPoll(s->ks);
		if (!ReplSendStatus(s, false))
			return false;
		PubWait(NULL, PUB_STANDBY_POLL_MS);
	}
	if (waited)
	{
		PubSetState(s->copying ? "streaming" : "recovering");
		PubClearError();
	}
	return true;
}
