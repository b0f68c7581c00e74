/*-------------------------------------------------------------------------
 *
 * publisher_failover.c
 *		The audit stream across a failover: the checkpoint's value, the
 *		marks it records, and the recovery that publishes the committed
 *		audit rows a new slot would never see.
 *
 * The problem
 * -----------
 * PostgreSQL 15 has no failover slots: a promoted standby has guid.audit
 * (replicated) but not the slot, and a slot created now decodes only what
 * commits from now on.  Rows committed on the old primary after the last
 * Kafka checkpoint and replicated are in the table and nowhere else.  The
 * same holds whenever the slot is recreated over an existing checkpoint
 * (dropped by hand, lost).
 *
 * What the checkpoint records
 * ---------------------------
 * "<end LSN> tli=<timeline> xmin=<xid> off=<o0>,<o1>,...": besides the LSN,
 * the timeline it is on and a mark, taken every PUB_MARK_MS while streaming:
 *
 *	1. the data topic's end offsets O (every partition), then
 *	2. N, the next transaction id, then
 *	3. X, the oldest transaction id still running, and the WAL insert
 *	   position W.
 *
 * A mark recorded is X with the offsets O of the latest earlier point whose
 * N does not follow X, recorded only in checkpoints at or past W.  Then:
 *
 *	- a row whose xmin precedes X is in Kafka: its (sub)transaction's top
 *	  transaction id is no later, so it was not running when X was read: it
 *	  committed before W, and the checkpoint is past W;
 *	- a row with a later xmin got its transaction id after N was read, so
 *	  its transaction committed, and was published, after O was read: if it
 *	  is in Kafka at all, it is at or after O.
 *
 * So reading the data topic back from O finds exactly which of the rows
 * with an xmin from X on are in Kafka: nothing is guessed.  Only a read
 * that retention cut short (O already deleted), or a checkpoint without a
 * mark (written before 1.5: the topic is read from its beginning), leaves
 * rows undecided; those are published and counted as possible duplicates.
 *
 * The recovery
 * ------------
 * When a checkpoint is found but no slot (or the slot of a recovery that did
 * not finish, which is dropped first): after init_transactions (which fenced
 * the old primary's producer: a promoted standby has the same system
 * identifier, so the same transactional.id), the publisher
 *	(a) commits the checkpoint again with " recovering", so that a crash
 *		before (e) is recognised and the recovery redone;
 *	(b) reads the data topic back from the mark's offsets, collecting the
 *		guids this cluster (system identifier) published;
 *	(c) in a REPEATABLE READ transaction on its replication connection,
 *		creates the slot with USE_SNAPSHOT: every transaction committed
 *		before the slot's consistent point P is visible, every later one
 *		comes through the slot;
 *	(d) selects the audit rows whose xmin is from X on (and from the oldest
 *		transaction running before (c), which covers rows of this timeline
 *		written while the slot was being created), and publishes those not
 *		collected in (b), in one Kafka transaction with the checkpoint P on
 *		this timeline (waiting for guid.publisher_standby_slots first);
 *	(e) streams from P.
 * Republished rows carry P as their "lsn" and their xmin as "xid".
 *
 * After a promotion the old timeline's WAL past the switch point never
 * reached this server.  If the checkpoint is past it (asynchronous
 * replication), Kafka holds rows this server lacks: those of (b) whose lsn
 * is past the switch point and which guid.audit does not hold are counted
 * as missing and logged (guid.publisher_standby_slots prevents it).
 *
 * What this file must not do: raise an error (failures are PubFail and
 * false), or stream (coordinator/publisher.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libpq-fe.h>

#include "access/timeline.h"
#include "access/transam.h"
#include "access/xlog.h"
#include "storage/procarray.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "guid_core.h"
#include "guid_stream.h"
#include "kafka_sink.h"
#include "publisher_int.h"

/* Waiting for Kafka's answers, ms */
#define PUB_MARK_TIMEOUT_MS		2000
#define PUB_READBACK_MS			30000

/* A guid this cluster published, found reading the data topic back. */
typedef struct PubSeen
{
	int64		guid;			/* the key */
	XLogRecPtr	lsn;			/* the message's "lsn" */
} PubSeen;

typedef struct PubReadback
{
	HTAB	   *seen;
	uint64		sysid;
	uint64		messages;
} PubReadback;

/* ----------
 * The checkpoint value
 * ----------
 */

/* PubCheckpointParse: parse a checkpoint value; false if it is not one. */
bool
PubCheckpointParse(const char *value, PubCheckpoint *c)
{
	uint32		hi,
				lo;
	const char *p;

	memset(c, 0, sizeof(*c));
	if (strcmp(value, GUID_CHECKPOINT_INIT) == 0)
	{
		c->init = true;
		return true;
	}
	if (sscanf(value, "%X/%X", &hi, &lo) != 2)
		return false;
	c->lsn = ((uint64) hi << 32) | lo;
	if ((p = strstr(value, " tli=")) != NULL)
		c->tli = (TimeLineID) strtoul(p + 5, NULL, 10);
	c->recovering = strstr(value, " recovering") != NULL;
	if ((p = strstr(value, " xmin=")) != NULL && strstr(value, " off=") != NULL)
	{
		char	   *end;

		c->mark.xmin = (TransactionId) strtoul(p + 6, NULL, 10);
		p = strstr(value, " off=") + 5;
		while (c->mark.nparts < PUB_MARK_PARTS && *p >= '0' && *p <= '9')
		{
			c->mark.offsets[c->mark.nparts++] = strtoll(p, &end, 10);
			p = *end == ',' ? end + 1 : end;
		}
		c->mark.valid = TransactionIdIsNormal(c->mark.xmin);
		if ((p = strstr(value, " from=")) != NULL)
			c->mark.from = (TransactionId) strtoul(p + 6, NULL, 10);
	}
	return true;
}

/* ckpt_format: a checkpoint value into buf; the mark is left out if it
 * does not fit. */
static void
ckpt_format(char *buf, size_t len, XLogRecPtr lsn, TimeLineID tli, const PubMark *mark,
			bool recovering)
{
	size_t		n;
	int			i;

	n = snprintf(buf, len, "%X/%X tli=%u", LSN_FORMAT_ARGS(lsn), tli);
	if (mark->valid)
	{
		size_t		base = n;

		n += snprintf(buf + n, len - n, " xmin=%u", mark->xmin);
		if (TransactionIdIsNormal(mark->from) && n < len)
			n += snprintf(buf + n, len - n, " from=%u", mark->from);
		if (n < len)
			n += snprintf(buf + n, len - n, " off=");
		for (i = 0; i < mark->nparts && n < len; i++)
			n += snprintf(buf + n, len - n, "%s" INT64_FORMAT, i ? "," : "", mark->offsets[i]);
		if (n + 16 >= len)
			n = base;			/* too long: no mark */
		buf[n] = '\0';
	}
	if (recovering)
		snprintf(buf + n, len - n, " recovering");
}

/*
 * PubCheckpointFormat: the value of the checkpoint end_lsn on this
 * timeline, with the mark; a pending mark becomes the mark once end_lsn
 * reaches its insert position.
 */
void
PubCheckpointFormat(PubSession *s, XLogRecPtr end_lsn, bool recovering, char *buf, size_t len)
{
	if (s->pending.valid && end_lsn >= s->pending.at)
	{
		s->mark = s->pending;
		s->pending.valid = false;
	}
	ckpt_format(buf, len, end_lsn, s->tli, &s->mark, recovering);
}

/* ----------
 * Marks
 * ----------
 */

/*
 * PubMarkMaybe: every PUB_MARK_MS, take a point (data topic ends, next xid)
 * and, unless one is pending, a pending mark (see the file header).  A
 * failure to read the ends only skips this mark.  Returns false after
 * reporting that the data topic has more partitions than a checkpoint
 * records (some were added since the session began): the session ends, and
 * the next one refuses the topic.
 */
bool
PubMarkMaybe(PubSession *s)
{
	TimestampTz now = GetCurrentTimestamp();
	PubMarkPoint *pt;
	char		err[GUID_ERROR_LEN];
	TransactionId xmin;
	XLogRecPtr	at;
	int			i;
	KafkaStatus st;

	if (!TimestampDifferenceExceeds(s->last_mark, now, PUB_MARK_MS))
		return true;
	s->last_mark = now;
	if (s->points == NULL)
		s->points = palloc0(sizeof(PubMarkPoint) * PUB_MARK_HISTORY);
	pt = &s->points[s->npoints % PUB_MARK_HISTORY];
	st = KafkaTopicEnds(s->ks, guid_kafka_topic, pt->offsets, PUB_MARK_PARTS, &pt->nparts,
						PUB_MARK_TIMEOUT_MS, err, sizeof(err));
	if (st == KAFKA_FATAL)
	{
		PubSetState("error");
		PubFail(WARNING, "%s", err);
		return false;
	}
	if (st != KAFKA_OK)
	{
		ereport(DEBUG1, (errmsg_internal("guid publisher: no mark: %s", err)));
		return true;
	}
	/* in this order: ends, next xid, oldest running, insert position */
	pt->next_xid = XidFromFullTransactionId(ReadNextFullTransactionId());
	s->npoints++;
	if (s->pending.valid)
		return true;
	xmin = GetOldestActiveTransactionId();
	at = GetXLogInsertRecPtr();
	for (i = 0; i < Min(s->npoints, PUB_MARK_HISTORY); i++)
	{
		PubMarkPoint *q = &s->points[(s->npoints - 1 - i) % PUB_MARK_HISTORY];

		if (TransactionIdPrecedesOrEquals(q->next_xid, xmin))
		{
			s->pending.valid = true;
			s->pending.xmin = xmin;
			s->pending.from = InvalidTransactionId;
			s->pending.at = at;
			s->pending.nparts = q->nparts;
			memcpy(s->pending.offsets, q->offsets, sizeof(int64) * q->nparts);
			return true;
		}
	}
	return true;
}

/* ----------
 * Timelines
 * ----------
 */

/*
 * PubTimelineSwitch: where this server's history left timeline tli (the
 * checkpoint's).  Returns false if tli is not in its history (another
 * cluster with this system identifier wrote the checkpoint).
 */
bool
PubTimelineSwitch(PubSession *s, TimeLineID tli, XLogRecPtr *switchpoint)
{
	List	   *history;

	*switchpoint = InvalidXLogRecPtr;
	if (tli == s->tli)
		return true;
	if (tli > s->tli)
		return false;
	history = readTimeLineHistory(s->tli);
	if (!tliInHistory(tli, history))
		return false;
	*switchpoint = tliSwitchPoint(tli, history, NULL);
	return true;
}

/* ----------
 * The recovery
 * ----------
 */

/* the value of "field":"..." or "field":N in a message, or NULL */
static const char *
rb_field(const char *json, const char *field)
{
	char		pat[48];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", field);
	p = strstr(json, pat);
	if (p == NULL)
		return NULL;
	p += strlen(pat);
	return *p == '"' ? p + 1 : p;
}

/* KafkaReadbackCallback: remember a guid of this cluster. */
static void
rb_collect(void *arg, const char *value, size_t len)
{
	PubReadback *rb = arg;
	char		json[1024];
	const char *g;
	const char *sys;
	const char *l;
	int64		guid;
	uint32		hi = 0,
				lo = 0;
	PubSeen    *e;
	bool		found;

	rb->messages++;
	if (len >= sizeof(json))
		len = sizeof(json) - 1;
	memcpy(json, value, len);
	json[len] = '\0';
	if ((g = rb_field(json, "guid")) == NULL || (sys = rb_field(json, "system_identifier")) == NULL ||
		strtoull(sys, NULL, 10) != rb->sysid)
		return;
	guid = strtoll(g, NULL, 10);
	if ((l = rb_field(json, "lsn")) != NULL)
		(void) sscanf(l, "%X/%X", &hi, &lo);
	e = hash_search(rb->seen, &guid, HASH_ENTER, &found);
	e->lsn = ((uint64) hi << 32) | lo;
}


/*
 * rc_count_missing: how many guids of the readback, published from the old
 * timeline past its switch point, guid.audit lacks (under the slot's
 * snapshot).  -1 after reporting a failure.
 */
static int64
rc_count_missing(PubSession *s, PubReadback *rb, XLogRecPtr switchpoint)
{
	StringInfoData q;
	HASH_SEQ_STATUS seq;
	PubSeen    *e;
	PGresult   *res;
	int64		missing;
	int			n = 0;

	initStringInfo(&q);
	appendStringInfoString(&q, "SELECT count(*) FROM unnest('{");
	hash_seq_init(&seq, rb->seen);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->lsn > switchpoint)
			appendStringInfo(&q, "%s" INT64_FORMAT, n++ ? "," : "", e->guid);
	if (n == 0)
		return 0;
	appendStringInfoString(&q, "}'::pg_catalog.int8[]) g WHERE NOT EXISTS "
						   "(SELECT 1 FROM guid.audit a WHERE a.guid::pg_catalog.int8 = g)");
	res = ReplExec(s, q.data, PGRES_TUPLES_OK);
	pfree(q.data);
	if (res == NULL)
		return -1;
	missing = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return missing;
}

/*
 * rc_candidates: under the slot's snapshot, the audit rows whose xmin does
 * not precede lo (all rows if !use_lo), as (guid, service, JSON, in band)
 * where "in band" means the xmin precedes the mark's own xmin (see
 * PubFailoverRecover).  NULL after reporting a failure.
 *
 * Transaction ids compare modulo 2^32, within the window [lo, xmax) where
 * xmax is the snapshot's: every visible row's xmin precedes it.  age() is
 * no measure: a row frozen long ago keeps its raw xmin, which age() reads
 * as from the future once it is 2^31 transactions old.
 */
static PGresult *
rc_candidates(PubSession *s, XLogRecPtr cp, bool use_lo, TransactionId lo,
			  bool band, TransactionId mark_xmin)
{
	char	   *q;
	char		where[192] = "";
	char		inband[192] = "false";
	PGresult   *res;

#define RC_DIST(x) "((" x " - %u) & 4294967295)"
	if (use_lo)
		snprintf(where, sizeof(where),
				 "WHERE " RC_DIST("xmin::pg_catalog.text::pg_catalog.int8") " < " RC_DIST("w.xmax"), lo, lo);
	if (band)
		snprintf(inband, sizeof(inband),
				 RC_DIST("xmin::pg_catalog.text::pg_catalog.int8") " < " RC_DIST("%u"), lo, mark_xmin, lo);
#undef RC_DIST
	q = psprintf("SELECT guid::pg_catalog.int8, service, pg_catalog.format("
				 "'{\"guid\":\"%%s\",\"node_id\":%%s,\"system_identifier\":\"%%s\",\"guid_node_id\":%%s,"
				 "\"created_at\":\"%%s\",\"service\":%%s,\"lsn\":\"%%s\",\"xid\":%%s}', "
				 "guid::pg_catalog.int8, node_id, '" UINT64_FORMAT "', (guid::pg_catalog.int8 >> 12) & 1023, "
				 "pg_catalog.to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
				 "pg_catalog.to_json(service::pg_catalog.text), '%X/%X', xmin), %s "
				 "FROM guid.audit, (SELECT pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())"
				 "::pg_catalog.text::pg_catalog.int8 & 4294967295 AS xmax) w %s",
				 GetSystemIdentifier(), LSN_FORMAT_ARGS(cp), inband, where);
	res = ReplExec(s, q, PGRES_TUPLES_OK);
	pfree(q);
	return res;
}

/*
 * PubFailoverRecover: the recovery of the file header, for the checkpoint
 * c found without a usable slot (drop_slot: the slot exists and must be
 * made again).  On success s->checkpoint is the new slot's consistent point
 * and everything before it is in Kafka.  Returns false after reporting a
 * failure; the next session starts it again.
 */
bool
PubFailoverRecover(PubSession *s, const PubCheckpoint *c, bool drop_slot)
{
	char		value[GUID_CHECKPOINT_MAX];
	char		err[GUID_ERROR_LEN];
	char	   *file_properties = NULL;
	PubReadback rb;
	HASHCTL		ctl;
	int64		ends[PUB_MARK_PARTS];
	int			nends = 0;
	bool		undecidable = false;
	KafkaStatus st;
	XLogRecPtr	switchpoint = InvalidXLogRecPtr;
	XLogRecPtr	cp;
	TransactionId pre;
	TransactionId lo = InvalidTransactionId;
	PubMark		mark;
	bool		band = false;
	PGresult   *res;
	PGresult   *done;
	int64		missing = 0;
	uint64		republished = 0;
	uint64		duplicates = 0;
	int			i;

	/*
	 * Rows of this timeline written while the slot is being made belong to
	 * transactions running from here on.  If that is before the mark, the
	 * xids between were used again after the switch point: rows with them
	 * are candidates, undecidable.  That lower bound goes into the
	 * recovering checkpoint and stays in the mark until a new one, so that
	 * a recovery after a next failover (this one's unfinished, or before
	 * this server's first mark) still looks at this timeline's rows.
	 */
	pre = GetOldestActiveTransactionId();
	mark = c->mark;
	if (mark.valid)
	{
		lo = TransactionIdIsNormal(mark.from) ? mark.from : mark.xmin;
		if (TransactionIdPrecedes(pre, lo))
			lo = pre;
		band = TransactionIdPrecedes(lo, mark.xmin);
		mark.from = band ? lo : InvalidTransactionId;
	}
	if (c->tli != 0 && c->tli != s->tli)
		(void) PubTimelineSwitch(s, c->tli, &switchpoint);
	ereport(LOG,
			(errmsg("guid publisher: replication slot \"%s\" is missing for checkpoint %X/%X (timeline %u); recovering the audit rows committed since",
					guid_slot_name, LSN_FORMAT_ARGS(c->lsn), c->tli)));
	PubSetState("recovering");

	/* (a) */
	if (!c->recovering || mark.from != c->mark.from)
	{
		ckpt_format(value, sizeof(value), c->lsn, c->tli, &mark, true);
		if (!PubCommitCheckpointValue(s, value))
			return false;
	}
	if (drop_slot && !ReplDropSlot(s))
		return false;

	/* (b) */
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(PubSeen);
	ctl.hcxt = CurrentMemoryContext;
	rb.seen = hash_create("guid failover readback", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	rb.sysid = GetSystemIdentifier();
	rb.messages = 0;
	if (guid_kafka_properties_file[0] != '\0' &&
		(file_properties = GuidReadSecretFile("guid.kafka_properties_file", guid_kafka_properties_file,
											  err, sizeof(err))) == NULL)
	{
		PubFail(WARNING, "%s", err);
		return false;
	}
	while ((st = KafkaReadback(guid_kafka_brokers, guid_kafka_properties, file_properties,
							   guid_kafka_topic, c->mark.offsets, c->mark.valid ? c->mark.nparts : 0,
							   rb_collect, &rb, ends, PUB_MARK_PARTS, &nends, &undecidable,
							   PUB_READBACK_MS, err, sizeof(err))) == KAFKA_RETRY)
	{
		PubFail(LOG, "%s", err);
		hash_destroy(rb.seen);
		rb.seen = hash_create("guid failover readback", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		rb.messages = 0;
		PubProcessInterrupts();
	}
	if (st != KAFKA_OK)
	{
		PubFail(LOG, "%s", err);
		return false;
	}

	/* (c) */
	res = ReplExec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ", PGRES_COMMAND_OK);
	if (res == NULL)
		return false;
	PQclear(res);
	if (!ReplCreateSlot(s, &cp, true))
		return false;

	/* (d) */
	s->mark = mark;
	res = rc_candidates(s, cp, c->mark.valid, lo, band, c->mark.xmin);
	if (res == NULL)
		return false;
	if (c->tli != 0 && c->tli != s->tli && c->lsn > switchpoint &&
		(missing = rc_count_missing(s, &rb, switchpoint)) < 0)
	{
		PQclear(res);
		return false;
	}
	done = ReplExec(s, "COMMIT", PGRES_COMMAND_OK);
	if (done == NULL)
	{
		PQclear(res);
		return false;
	}
	PQclear(done);

	s->checkpoint = InvalidXLogRecPtr;
	for (i = 0; i < PQntuples(res); i++)
	{
		int64		guid = strtoll(PQgetvalue(res, i, 0), NULL, 10);

		if (hash_search(rb.seen, &guid, HASH_FIND, NULL) != NULL)
			continue;
		if (republished == 0 && !PubOnBegin(s, cp, GetCurrentTimestamp()))
		{
			PQclear(res);
			return false;
		}
		if (!PubOnRow(s, PQgetvalue(res, i, 1), PQgetlength(res, i, 1),
					  PQgetvalue(res, i, 2), PQgetlength(res, i, 2)))
		{
			PQclear(res);
			return false;
		}
		republished++;
		if (undecidable || strcmp(PQgetvalue(res, i, 3), "t") == 0)
			duplicates++;
	}
	PQclear(res);
	if (republished > 0)
	{
		PubOnCommit(s, cp);
		if (!PubCommit(s, cp))
			return false;
	}
	else if (!PubConfirmIdle(s, cp))
		return false;

	PubFailoverCounted(republished, duplicates, (uint64) missing);
	ereport(missing > 0 || duplicates > 0 ? WARNING : LOG,
			(errmsg("guid publisher: failover recovery: republished " UINT64_FORMAT " audit rows (" UINT64_FORMAT " possible duplicates), " INT64_FORMAT " guids in Kafka missing from guid.audit",
					republished, duplicates, missing),
			 errdetail("Checkpoint %X/%X on timeline %u%s; read " UINT64_FORMAT " messages back, " INT64_FORMAT " of this cluster; the new slot starts at %X/%X on timeline %u.",
					   LSN_FORMAT_ARGS(c->lsn), c->tli,
					   c->tli != 0 && c->tli != s->tli ? psprintf(", which this server left at %X/%X", LSN_FORMAT_ARGS(switchpoint)) : "",
					   rb.messages, (int64) hash_get_num_entries(rb.seen),
					   LSN_FORMAT_ARGS(cp), s->tli),
			 missing > 0 ? errhint("Those rows were published by the old primary but never reached this server (asynchronous replication); set guid.publisher_standby_slots to prevent it.") : 0));
	hash_destroy(rb.seen);
	return true;
}
