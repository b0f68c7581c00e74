/*
 * kafka_fence.c: a test helper that plays the newer instance of a
 * transactional producer: init_transactions with the given transactional.id
 * (which fences every older producer with it), then exit.
 *
 *	kafka_fence BROKERS TRANSACTIONAL_ID
 */
#include <stdio.h>
#include <librdkafka/rdkafka.h>

int
main(int argc, char **argv)
{
	char		err[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_error_t *error;
	int			tries = 0;

	if (argc != 3)
	{
		fprintf(stderr, "usage: kafka_fence BROKERS TRANSACTIONAL_ID\n");
		return 2;
	}
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)) ||
		rd_kafka_conf_set(conf, "transactional.id", argv[2], err, sizeof(err)))
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
	while ((error = rd_kafka_init_transactions(rk, 10000)) != NULL)
	{
		fprintf(stderr, "init_transactions: %s\n", rd_kafka_error_string(error));
		if (!rd_kafka_error_is_retriable(error) || ++tries > 5)
			return 1;
		rd_kafka_error_destroy(error);
	}
	printf("fenced older producers of %s\n", argv[2]);
	rd_kafka_destroy(rk);
	return 0;
}
