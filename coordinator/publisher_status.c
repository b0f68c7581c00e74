/*-------------------------------------------------------------------------
 *
 * publisher_status.c
 *		What the publisher shows in guid.status: every write of its figures
 *		goes through the functions here.
 *
 * Only the publisher worker calls them, and only the publisher writes its
 * status area (a copy of pub_status, under the area's spinlock); backends
 * read it for guid.status (extension/status.c).  PubFail also logs the error, an
 * unchanged one at most once every PUB_WARN_MS, so that a service that
 * stays down does not flood the log.
 *
 * What this file must not do: decide anything.  It records what the
 * session (coordinator/publisher.c) tells it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

#include "guid_core.h"
#include "guid_stream.h"
#include "publisher_int.h"

/*
 * The publisher's figures for guid.status: this process's copy, changed by
 * the functions below and then copied whole to the status area
 * STREAM_STATUS_AREA (include/guid_core.h), which backends read.
 */
static GuidStatusArea *pub_area = NULL;
static StreamStatus pub_status;

/* What was last logged, to log a repeated error once a minute only. */
static char pub_logged[GUID_ERROR_LEN];
static TimestampTz pub_logged_at = 0;

/* The first figures, at server start: nothing waiting yet. */
static void
pub_status_init(void *status)
{
	((StreamStatus *) status)->caught_up_at = GetCurrentTimestamp();
}

/* PubStatusInit: (while preloading) register the status area. */
void
PubStatusInit(void)
{
	pub_area = GuidStatusRegister(STREAM_STATUS_AREA, sizeof(StreamStatus),
								  pub_status_init);
}

/* PubSetState: what the publisher is doing, for guid.status. */
void
PubSetState(const char *state)
{
	StreamStatus *p = &pub_status;

	strlcpy(p->state, state, sizeof(p->state));
	GuidStatusWrite(pub_area, p);
}

/* PubState: what PubSetState last set. */
const char *
PubState(void)
{
	return pub_status.state;
}

/* PubNoteError: show msg as the error in guid.status, without logging it
 * (the caller logs when it is time to). */
void
PubNoteError(const char *msg)
{
	StreamStatus *p = &pub_status;

	strlcpy(p->error, msg, sizeof(p->error));
	GuidStatusWrite(pub_area, p);
}

/* PubFail: record an error for guid.status and log it (an unchanged one
 * at most once a minute). */
void
PubFail(int elevel, const char *fmt,...)
{
	StreamStatus *p = &pub_status;
	char		msg[GUID_ERROR_LEN];
	va_list		ap;
	TimestampTz now = GetCurrentTimestamp();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	strlcpy(p->error, msg, sizeof(p->error));
	GuidStatusWrite(pub_area, p);

	if (strcmp(msg, pub_logged) != 0 ||
		TimestampDifferenceExceeds(pub_logged_at, now, PUB_WARN_MS))
	{
		ereport(elevel,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("guid publisher: %s", msg)));
		strlcpy(pub_logged, msg, sizeof(pub_logged));
		pub_logged_at = now;
	}
}

/* PubClearError: the publisher works again; the next error is logged. */
void
PubClearError(void)
{
	StreamStatus *p = &pub_status;

	p->error[0] = '\0';
	GuidStatusWrite(pub_area, p);
	pub_logged[0] = '\0';
}

/*
 * PubAttach: show this process as the publisher (carrying on from the
 * figures an earlier publisher left), and arrange for PubDetach to run at
 * exit.  Caller has checked that guid is preloaded.
 */
void
PubAttach(void)
{
	StreamStatus *p = &pub_status;

	(void) GuidStatusRead(STREAM_STATUS_AREA, p, sizeof(*p));
	p->pid = MyProcPid;
	GuidStatusWrite(pub_area, p);
	before_shmem_exit(PubDetach, (Datum) 0);
}

/* PubDetach: the publisher is gone (a before_shmem_exit callback). */
void
PubDetach(int code, Datum arg)
{
	StreamStatus *p = &pub_status;

	strlcpy(p->state, "stopped", sizeof(p->state));
	p->pid = 0;
	p->oldest_pending = 0;
	GuidStatusWrite(pub_area, p);
}

/* PubPending: a Kafka transaction opened for a PostgreSQL transaction that
 * committed at commit_time. */
void
PubPending(TimestampTz commit_time)
{
	StreamStatus *p = &pub_status;

	p->oldest_pending = commit_time;
	GuidStatusWrite(pub_area, p);
}

/*
 * PubPublished: a Kafka transaction of rows rows from xacts PostgreSQL
 * transactions and the checkpoint lsn committed at now, in ms milliseconds.
 */
void
PubPublished(uint64 rows, uint64 xacts, XLogRecPtr lsn, TimestampTz now, double ms)
{
	StreamStatus *p = &pub_status;

	p->rows += rows;
	p->xacts += xacts;
	p->commits++;
	p->published_lsn = lsn;
	p->oldest_pending = 0;
	p->caught_up_at = now;
	p->commit_ms = ms;
	GuidStatusWrite(pub_area, p);
}

/* PubCaughtUp: nothing was waiting at now. */
void
PubCaughtUp(TimestampTz now)
{
	StreamStatus *p = &pub_status;

	p->caught_up_at = now;
	GuidStatusWrite(pub_area, p);
}

/* PubRetrying: a session ended; "gap" and "error" stay shown until the
 * next session gets past them. */
void
PubRetrying(void)
{
	StreamStatus *p = &pub_status;

	if (strcmp(p->state, "gap") != 0 && strcmp(p->state, "error") != 0)
		strlcpy(p->state, "retrying", sizeof(p->state));
	p->oldest_pending = 0;
	GuidStatusWrite(pub_area, p);
}

/* PubFailoverCounted: a failover recovery republished rows, of which
 * duplicates may already have been in Kafka, and found missing guids in
 * Kafka that guid.audit lacks. */
void
PubFailoverCounted(uint64 republished, uint64 duplicates, uint64 missing)
{
	StreamStatus *p = &pub_status;

	p->failover_republished += republished;
	p->failover_duplicates += duplicates;
	p->failover_missing += missing;
	GuidStatusWrite(pub_area, p);
}
