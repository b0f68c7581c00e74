/*-------------------------------------------------------------------------
 *
 * gateway_published.c
 *		"published" in guid_gateway's GET /guid/status: whether a guid.audit
 *		row is provably in Kafka, from samples the pool takes and the
 *		publisher's checkpoint.  No PostgreSQL connection here: the pool
 *		(coordinator/gateway_pool.c) runs the statements and hands over
 *		what they read.
 *
 * The upper bound
 * ---------------
 * About once a second a pool worker that becomes free (before it takes a
 * batch) runs one statement (POOL_SAMPLE_SQL in gateway_pool.c):
 *
 *	SELECT pg_snapshot_xmin(pg_current_snapshot()), pg_current_wal_insert_lsn(),
 *	       guid.status started_at, pg_snapshot_xmax(pg_current_snapshot()),
 *	       whether the slot guid.slot_name exists and is consistent
 *
 * The statement's snapshot is taken before its target list runs, so every
 * xid below xmin had ended, and a committed one had inserted its commit
 * record, before the insert position was read: its commit record ends at
 * or below lsn.  The publisher's checkpoint P (guid.status
 * last_published_lsn) says every transaction the slot streams whose commit
 * record ends at or below P is in Kafka.  So a visible guid.audit row whose
 * xid precedes pt, the largest sampled xmin with lsn <= P, is in Kafka if
 * the slot streams it at all.
 *
 * The lower bound
 * ---------------
 * A slot streams only transactions that commit after it was created: rows
 * committed before the publisher was first set up are never published, yet
 * they precede pt like any other.  An xid at or above the xmax of a sample
 * sent after the answer of a sample that saw the slot consistent had not ended when
 * the slot already existed, so its commit comes through the slot.  The
 * first such xmax of an incarnation is the lower bound lo_xid: rows below
 * it are not proven (false), which includes every row older than the
 * gateway's second sample (the slot's creation point is not visible in
 * SQL).  A sample that finds no slot drops the bound: a slot made again
 * without a checkpoint in Kafka starts afresh (what committed before it is
 * never streamed).  Not covered: a slot dropped and made again between two
 * samples (about a second; the publisher backs off for longer after it
 * finds its checkpoint gone), and a guid.audit row changed by an UPDATE or
 * rewritten (pg_repack): its xmin is then the later transaction's, so a
 * row of before the slot can read true.  guid.audit rows are not to be
 * updated (the stream ignores UPDATEs).
 *
 * Incarnations, thinning
 * ----------------------
 * Samples count only for the incarnation of shared memory they were taken
 * in (guid.status started_at, new at every start and crash restart): xids
 * that left no WAL before a crash are handed out again after it, at new
 * commit positions, so a sample from before the crash proves nothing about
 * them.  A full ring drops the inner sample whose neighbours are closest in
 * time, so a publisher far behind still finds a sample below its
 * checkpoint.
 *
 * Locking: sample_lock protects the ring and the lower bound; the pool's
 * workers add samples, the HTTP threads read them.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "gateway.h"

#define PUB_SAMPLES			64		/* samples kept (thinned when full) */

static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static GwSample samples[PUB_SAMPLES];	/* oldest first */
static int	nsamples;
static bool slot_seen;			/* a sample of this incarnation saw the slot */
static double slot_seen_at;		/* ... answered at this GwNow() */
static bool lo_valid;			/* lo_xid is set */
static uint64_t lo_xid;			/* rows at or above it commit through the slot */

/* Adds a sample to the ring.  A new incarnation empties it first; a full
 * ring drops the inner sample whose neighbours are closest in time. */
void
GwPublishedSample(const GwSample *ps)
{
	pthread_mutex_lock(&sample_lock);
	if (nsamples > 0 && samples[nsamples - 1].incarnation != ps->incarnation)
	{
		nsamples = 0;
		slot_seen = lo_valid = false;
	}

	/*
	 * No slot now: the one the bound was taken under is gone.  A slot made
	 * again without a checkpoint in Kafka starts afresh and never streams
	 * what committed before it (README, "The audit stream": the slot
	 * dropped with the checkpoint lost), so the bound must be taken anew
	 * under the next one.
	 */
	if (!ps->slot)
		slot_seen = lo_valid = false;
	/* the slot existed before this statement was sent, so before its
	 * snapshot: xids not ended at it come through the slot (two workers'
	 * samples may overlap, hence the times) */
	if (slot_seen && !lo_valid && ps->taken > slot_seen_at)
	{
		lo_xid = ps->xmax;
		lo_valid = true;
	}
	if (ps->slot && (!slot_seen || ps->done < slot_seen_at))
	{
		slot_seen = true;
		slot_seen_at = ps->done;
	}
	if (nsamples == PUB_SAMPLES)
	{
		int			drop = 1;

		for (int i = 2; i < PUB_SAMPLES - 1; i++)
			if (samples[i + 1].taken - samples[i - 1].taken <
				samples[drop + 1].taken - samples[drop - 1].taken)
				drop = i;
		memmove(&samples[drop], &samples[drop + 1],
				(PUB_SAMPLES - drop - 1) * sizeof(GwSample));
		nsamples--;
	}
	samples[nsamples++] = *ps;
	pthread_mutex_unlock(&sample_lock);
}

/*
 * Whether a guid.audit row is provably in Kafka: its xmin (32 bits, as
 * the row holds it), the full xmax of the snapshot that saw it, the
 * publisher's checkpoint P and the incarnation, all read by one lookup
 * statement.  The row being visible, its xid is below xmax: widening xmin
 * to the largest full xid below xmax congruent to it never makes it older
 * than it is (exact for rows less than 2^32 xids old), so "widened xid <
 * pt" proves "xid < pt" at any age, where a 32-bit comparison
 * (TransactionIdPrecedes) would turn false for rows more than 2^31 xids
 * older than pt.  The lower bound lo (see "Published to Kafka") is exact
 * for rows less than 2^32 xids old too; an older row's 32-bit xmin cannot
 * tell its age, which PostgreSQL's own visibility leaves to freezing.  (A
 * frozen row keeps its raw xmin since PostgreSQL 9.4, and freezing says
 * nothing about Kafka, so it gets no special case.)
 */
bool
GwPublishedProven(uint32_t xmin, uint64_t snap_xmax, uint64_t published_lsn,
					  int64_t incarnation)
{
	uint64_t	back = (uint32_t) ((uint32_t) snap_xmax - xmin);
	uint64_t	xid;
	uint64_t	pt = 0;
	bool		found = false;

	if (back == 0 || back > snap_xmax)
		return false;			/* not below xmax: cannot be, prove nothing */
	xid = snap_xmax - back;
	pthread_mutex_lock(&sample_lock);
	if (nsamples == 0 || samples[0].incarnation != incarnation || !lo_valid || xid < lo_xid)
	{
		pthread_mutex_unlock(&sample_lock);
		return false;			/* may have committed before the slot existed */
	}
	for (int i = 0; i < nsamples; i++)
		if (samples[i].incarnation == incarnation && samples[i].lsn <= published_lsn &&
			(!found || samples[i].xmin > pt))
		{
			pt = samples[i].xmin;
			found = true;
		}
	pthread_mutex_unlock(&sample_lock);
	return found && xid < pt;
}
