/*
 * kafka_open_txn.c: a test helper that plays a publisher of another cluster
 * that stopped mid-transaction: a transactional producer that produces one
 * message to partition 0 of each TOPIC and leaves its transaction open,
 * holding back the last stable offset of those partitions for every
 * read_committed reader, until its standard input closes; then it aborts.
 *
 *	kafka_open_txn BROKERS TRANSACTIONAL_ID TOPIC...
 *
 * Prints "open" once the messages are on the brokers.  Its transaction
 * timeout is 10 minutes, so the broker does not abort it during a test.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <librdkafka/rdkafka.h>

static int
fail(const char *what, rd_kafka_error_t *error)
{
	fprintf(stderr, "%s: %s\n", what, rd_kafka_error_string(error));
	rd_kafka_error_destroy(error);
	return 1;
}

int
main(int argc, char **argv)
{
	char		err[512];
	sigset_t	term;
	int			sig;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_error_t *error;
	const char *value = "{\"open\":\"transaction\"}";
	int			i;

	if (argc < 4)
	{
		fprintf(stderr, "usage: kafka_open_txn BROKERS TRANSACTIONAL_ID TOPIC...\n");
		return 2;
	}
	/* blocked before librdkafka's threads start, so that they inherit it */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, NULL);
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "transactional.id", argv[2], err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "transaction.timeout.ms", "600000", err, sizeof(err)))
	{
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (rk == NULL)
	{
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if ((error = rd_kafka_init_transactions(rk, 60000)) != NULL)
		return fail("init_transactions", error);
	if ((error = rd_kafka_begin_transaction(rk)) != NULL)
		return fail("begin_transaction", error);
	for (i = 3; i < argc; i++)
	{
		rd_kafka_resp_err_t rerr = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(argv[i]),
													 RD_KAFKA_V_PARTITION(0),
													 RD_KAFKA_V_KEY(argv[2], strlen(argv[2])),
													 RD_KAFKA_V_VALUE((void *) value, strlen(value)),
													 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
													 RD_KAFKA_V_END);

		if (rerr)
		{
			fprintf(stderr, "produce to %s: %s\n", argv[i], rd_kafka_err2str(rerr));
			return 1;
		}
	}
	if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		fprintf(stderr, "flush timed out\n");
		return 1;
	}
	printf("open\n");
	fflush(stdout);
	sigwait(&term, &sig);
	if ((error = rd_kafka_abort_transaction(rk, 60000)) != NULL)
		return fail("abort_transaction", error);
	rd_kafka_destroy(rk);
	return 0;
}
