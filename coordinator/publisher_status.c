/*-------------------------------------------------------------------------
 *
 * publisher_status.c
 *		What the publisher shows in guid.status: every write of its figures
 *		(GuidState->pub) goes through the functions here.
 *
 * Only the publisher worker calls them, and only the publisher writes
 * GuidState->pub, each field under its spinlock; backends read it for
 * guid.status (extension/status.c).  PubFail also logs the error, an
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
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "guid.h"
#include "publisher_int.h"

/* What was last logged, to log a repeated error once a minute only. */
static char pub_logged[GUID_ERROR_LEN];
static TimestampTz pub_logged_at = 0;

/* PubSetState: what the publisher is doing, for guid.status. */
void
PubSetState(const char *state)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	strlcpy(p->state, state, sizeof(p->state));
	SpinLockRelease(&p->mutex);
}

/* PubFail: record an error for guid.status and log it (an unchanged one
 * at most once a minute). */
void
PubFail(int elevel, const char *fmt,...)
{
	GuidPublisherShared *p = &GuidState->pub;
	char		msg[GUID_ERROR_LEN];
	va_list		ap;
	TimestampTz now = GetCurrentTimestamp();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	SpinLockAcquire(&p->mutex);
	strlcpy(p->error, msg, sizeof(p->error));
	SpinLockRelease(&p->mutex);

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
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	p->error[0] = '\0';
	SpinLockRelease(&p->mutex);
	pub_logged[0] = '\0';
}

/*
 * PubAttach: show this process as the publisher, and arrange for PubDetach
 * to run at exit.  Caller has checked that GuidState is set.
 */
void
PubAttach(void)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	p->pid = MyProcPid;
	SpinLockRelease(&p->mutex);
	before_shmem_exit(PubDetach, (Datum) 0);
}

/* PubDetach: the publisher is gone (a before_shmem_exit callback). */
void
PubDetach(int code, Datum arg)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	strlcpy(p->state, "stopped", sizeof(p->state));
	p->pid = 0;
	p->oldest_pending = 0;
	SpinLockRelease(&p->mutex);
}

/* PubPending: a Kafka transaction opened for a PostgreSQL transaction that
 * committed at commit_time. */
void
PubPending(TimestampTz commit_time)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	p->oldest_pending = commit_time;
	SpinLockRelease(&p->mutex);
}

/*
 * PubPublished: a Kafka transaction of rows rows from xacts PostgreSQL
 * transactions and the checkpoint lsn committed at now, in ms milliseconds.
 */
void
PubPublished(uint64 rows, uint64 xacts, XLogRecPtr lsn, TimestampTz now, double ms)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	p->rows += rows;
	p->xacts += xacts;
	p->commits++;
	p->published_lsn = lsn;
	p->oldest_pending = 0;
	p->caught_up_at = now;
	p->commit_ms = ms;
	SpinLockRelease(&p->mutex);
}

/* PubCaughtUp: nothing was waiting at now. */
void
PubCaughtUp(TimestampTz now)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	p->caught_up_at = now;
	SpinLockRelease(&p->mutex);
}

/* PubRetrying: a session ended; "gap" and "error" stay shown until the
 * next session gets past them. */
void
PubRetrying(void)
{
	GuidPublisherShared *p = &GuidState->pub;

	SpinLockAcquire(&p->mutex);
	if (strcmp(p->state, "gap") != 0 && strcmp(p->state, "error") != 0)
		strlcpy(p->state, "retrying", sizeof(p->state));
	p->oldest_pending = 0;
	SpinLockRelease(&p->mutex);
}
