/*
 * kafka_admin.c: a test helper for what kcat cannot do, through librdkafka's
 * admin API:
 *
 *	kafka_admin BROKERS create TOPIC PARTITIONS [RF [NAME=VALUE...]]
 *												create a topic (replication
 *												factor 1 unless RF is given,
 *												with these configs; retried
 *												while an older one is being
 *												deleted)
 *	kafka_admin BROKERS alter-config TOPIC NAME=VALUE...
 *												set the topic's configs (the
 *												others go back to defaults)
 *	kafka_admin BROKERS describe TOPIC [NODE]	print "replication.factor=N
 *												min.insync.replicas=M"
 *	kafka_admin BROKERS delete TOPIC			delete a topic
 *	kafka_admin BROKERS partitions TOPIC TOTAL	raise its partition count
 *	kafka_admin BROKERS delete-records TOPIC PARTITION OFFSET
 *												delete the records before
 *												OFFSET, as retention does
 *	kafka_admin BROKERS group-offset GROUP TOPIC [latest]
 *												print the stable committed
 *												offset of GROUP for
 *												TOPIC [0] and its metadata
 *												("OFFSET<tab>METADATA";
 *												offset -1001: none); with
 *												"latest", the last committed
 *												one, even while a transaction
 *												with newer offsets is open
 *	kafka_admin BROKERS delete-group GROUP		delete a consumer group
 *
 * Exits 0 when the broker said yes, 1 with the reason on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>

static rd_kafka_t *rk;

/* Wait for the admin result on queue; returns its first topic error. */
static int
admin_result(rd_kafka_queue_t *queue, rd_kafka_event_type_t type, char *err, size_t errlen)
{
	rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 60000);
	const rd_kafka_topic_result_t **tr = NULL;
	size_t		n = 0;
	int			code = 0;

	if (ev == NULL)
	{
		snprintf(err, errlen, "timed out");
		return -1;
	}
	if (rd_kafka_event_error(ev))
	{
		snprintf(err, errlen, "%s", rd_kafka_event_error_string(ev));
		code = rd_kafka_event_error(ev);
	}
	else if (type == RD_KAFKA_EVENT_CREATETOPICS_RESULT)
		tr = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
	else if (type == RD_KAFKA_EVENT_DELETETOPICS_RESULT)
		tr = rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
	else if (type == RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT)
		tr = rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
	else if (type == RD_KAFKA_EVENT_DELETERECORDS_RESULT)
	{
		const rd_kafka_topic_partition_list_t *offsets =
			rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));

		if (offsets && offsets->cnt > 0 && offsets->elems[0].err)
		{
			code = offsets->elems[0].err;
			snprintf(err, errlen, "%s", rd_kafka_err2str(offsets->elems[0].err));
		}
	}
	if (n > 0 && rd_kafka_topic_result_error(tr[0]))
	{
		code = rd_kafka_topic_result_error(tr[0]);
		snprintf(err, errlen, "%s", rd_kafka_topic_result_error_string(tr[0]));
	}
	rd_kafka_event_destroy(ev);
	return code;
}

int
main(int argc, char **argv)
{
	char		err[512] = "";
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_queue_t *queue;
	const char *cmd;
	const char *topic;
	int			code = -1;
	int			tries;

	if (argc < 4)
	{
		fprintf(stderr, "usage: kafka_admin BROKERS create|alter-config|describe|delete|partitions|delete-records TOPIC ...\n");
		return 2;
	}
	cmd = argv[2];
	topic = argv[3];
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof(err)))
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
	queue = rd_kafka_queue_new(rk);

	if (strcmp(cmd, "create") == 0 && argc >= 5)
	{
		/* a topic being deleted cannot be created again at once */
		for (tries = 0; tries < 300; tries++)
		{
			rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, atoi(argv[4]),
															argc >= 6 ? atoi(argv[5]) : 1,
															err, sizeof(err));
			int			i;

			for (i = 6; i < argc; i++)
			{
				char	   *eq = strchr(argv[i], '=');

				*eq = '\0';
				rd_kafka_NewTopic_set_config(nt, argv[i], eq + 1);
				*eq = '=';
			}
			rd_kafka_CreateTopics(rk, &nt, 1, NULL, queue);
			code = admin_result(queue, RD_KAFKA_EVENT_CREATETOPICS_RESULT, err, sizeof(err));
			rd_kafka_NewTopic_destroy(nt);
			if (code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
				break;
			usleep(200000);
		}
	}
	else if (strcmp(cmd, "alter-config") == 0 && argc >= 5)
	{
		rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
		int			i;
		rd_kafka_event_t *ev;

		for (i = 4; i < argc; i++)
		{
			char	   *eq = strchr(argv[i], '=');

			*eq = '\0';
			rd_kafka_ConfigResource_set_config(res, argv[i], eq + 1);
		}
		rd_kafka_AlterConfigs(rk, &res, 1, NULL, queue);
		ev = rd_kafka_queue_poll(queue, 60000);
		code = ev == NULL ? -1 : rd_kafka_event_error(ev);
		if (ev && !code)
		{
			size_t		n;
			const rd_kafka_ConfigResource_t **rs =
				rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);

			if (n > 0 && (code = rd_kafka_ConfigResource_error(rs[0])))
				snprintf(err, sizeof(err), "%s", rd_kafka_ConfigResource_error_string(rs[0]));
		}
		else
			snprintf(err, sizeof(err), "%s", ev ? rd_kafka_event_error_string(ev) : "timed out");
		if (ev)
			rd_kafka_event_destroy(ev);
		rd_kafka_ConfigResource_destroy(res);
	}
	else if (strcmp(cmd, "describe") == 0 && (argc == 4 || argc == 5))
	{
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
		const struct rd_kafka_metadata *md;
		rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
		rd_kafka_event_t *ev;
		int			rf = -1;
		const char *min_isr = "?";

		code = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
		if (code == 0 && md->topic_cnt == 1 && md->topics[0].err == 0)
		{
			int			p;

			for (p = 0; p < md->topics[0].partition_cnt; p++)
				if (rf < 0 || md->topics[0].partitions[p].replica_cnt < rf)
					rf = md->topics[0].partitions[p].replica_cnt;
		}
		if (code == 0)
			rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(rkt);
		{
			/* argv[4], if given: ask that broker (node id), not any one */
			rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
			char		errstr[256];

			if (argc >= 5 && rd_kafka_AdminOptions_set_broker(opts, atoi(argv[4]), errstr, sizeof(errstr)) != 0)
			{
				fprintf(stderr, "kafka_admin: %s\n", errstr);
				return 1;
			}
			rd_kafka_DescribeConfigs(rk, &res, 1, opts, queue);
			ev = rd_kafka_queue_poll(queue, 60000);
			rd_kafka_AdminOptions_destroy(opts);
		}
		if (ev && !rd_kafka_event_error(ev))
		{
			size_t		n,
						cnt,
						i;
			const rd_kafka_ConfigResource_t **rs =
				rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
			const rd_kafka_ConfigEntry_t **e = n > 0 ? rd_kafka_ConfigResource_configs(rs[0], &cnt) : NULL;

			for (i = 0; e && i < cnt; i++)
				if (strcmp(rd_kafka_ConfigEntry_name(e[i]), "min.insync.replicas") == 0)
					min_isr = rd_kafka_ConfigEntry_value(e[i]);
			printf("replication.factor=%d min.insync.replicas=%s\n", rf, min_isr);
		}
		else
		{
			code = -1;
			snprintf(err, sizeof(err), "%s", ev ? rd_kafka_event_error_string(ev) : "timed out");
		}
		if (ev)
			rd_kafka_event_destroy(ev);
		rd_kafka_ConfigResource_destroy(res);
	}
	else if (strcmp(cmd, "delete") == 0 && argc == 4)
	{
		rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);

		rd_kafka_DeleteTopics(rk, &dt, 1, NULL, queue);
		code = admin_result(queue, RD_KAFKA_EVENT_DELETETOPICS_RESULT, err, sizeof(err));
		rd_kafka_DeleteTopic_destroy(dt);
	}
	else if (strcmp(cmd, "partitions") == 0 && argc == 5)
	{
		rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(topic, atoi(argv[4]), err, sizeof(err));

		rd_kafka_CreatePartitions(rk, &np, 1, NULL, queue);
		code = admin_result(queue, RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT, err, sizeof(err));
		rd_kafka_NewPartitions_destroy(np);
	}
	else if (strcmp(cmd, "delete-records") == 0 && argc == 6)
	{
		rd_kafka_topic_partition_list_t *before = rd_kafka_topic_partition_list_new(1);
		rd_kafka_DeleteRecords_t *dr;

		rd_kafka_topic_partition_list_add(before, topic, atoi(argv[4]))->offset = atoll(argv[5]);
		dr = rd_kafka_DeleteRecords_new(before);
		rd_kafka_DeleteRecords(rk, &dr, 1, NULL, queue);
		code = admin_result(queue, RD_KAFKA_EVENT_DELETERECORDS_RESULT, err, sizeof(err));
		rd_kafka_DeleteRecords_destroy(dr);
		rd_kafka_topic_partition_list_destroy(before);
	}
	else if (strcmp(cmd, "group-offset") == 0 && (argc == 5 || (argc == 6 && strcmp(argv[5], "latest") == 0)))
	{
		rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
		rd_kafka_ListConsumerGroupOffsets_t *req;
		rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);

		rd_kafka_topic_partition_list_add(parts, argv[4], 0);
		req = rd_kafka_ListConsumerGroupOffsets_new(topic, parts);
		rd_kafka_topic_partition_list_destroy(parts);
		if (argc == 5)
			rd_kafka_error_destroy(rd_kafka_AdminOptions_set_require_stable_offsets(options, 1));
		/* a transaction of the group's producer may be completing */
		for (tries = 0; tries < 300; tries++)
		{
			rd_kafka_event_t *ev;
			const rd_kafka_group_result_t **groups;
			const rd_kafka_topic_partition_list_t *got;
			size_t		n = 0;

			rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, options, queue);
			ev = rd_kafka_queue_poll(queue, 60000);
			if (ev == NULL)
			{
				snprintf(err, sizeof(err), "timed out");
				break;
			}
			code = rd_kafka_event_error(ev);
			if (code)
				snprintf(err, sizeof(err), "%s", rd_kafka_event_error_string(ev));
			else
			{
				groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
					rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
				got = n == 1 ? rd_kafka_group_result_partitions(groups[0]) : NULL;
				if (got == NULL || got->cnt != 1)
				{
					code = -1;
					snprintf(err, sizeof(err), "no answer");
				}
				else if ((code = got->elems[0].err) != 0)
					snprintf(err, sizeof(err), "%s", rd_kafka_err2str(code));
				else
					printf("%lld\t%.*s\n", (long long) got->elems[0].offset,
						   (int) got->elems[0].metadata_size, (const char *) got->elems[0].metadata);
			}
			rd_kafka_event_destroy(ev);
			if (code != RD_KAFKA_RESP_ERR_UNSTABLE_OFFSET_COMMIT)
				break;
			usleep(100000);
		}
		rd_kafka_AdminOptions_destroy(options);
		rd_kafka_ListConsumerGroupOffsets_destroy(req);
	}
	else if (strcmp(cmd, "delete-group") == 0 && argc == 4)
	{
		rd_kafka_DeleteGroup_t *dg = rd_kafka_DeleteGroup_new(topic);
		rd_kafka_event_t *ev;

		rd_kafka_DeleteGroups(rk, &dg, 1, NULL, queue);
		ev = rd_kafka_queue_poll(queue, 60000);
		if (ev == NULL)
			snprintf(err, sizeof(err), "timed out");
		else
		{
			const rd_kafka_group_result_t **groups;
			size_t		n = 0;

			code = rd_kafka_event_error(ev);
			if (code)
				snprintf(err, sizeof(err), "%s", rd_kafka_event_error_string(ev));
			else
			{
				groups = rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(ev), &n);
				if (n == 1 && rd_kafka_group_result_error(groups[0]))
				{
					code = rd_kafka_error_code(rd_kafka_group_result_error(groups[0]));
					snprintf(err, sizeof(err), "%s", rd_kafka_error_string(rd_kafka_group_result_error(groups[0])));
				}
			}
			rd_kafka_event_destroy(ev);
		}
		rd_kafka_DeleteGroup_destroy(dg);
	}
	else
	{
		fprintf(stderr, "kafka_admin: bad arguments\n");
		return 2;
	}
	if (code == -1 && err[0] == '\0')
		snprintf(err, sizeof(err), "failed");
	if (code != 0)
		fprintf(stderr, "kafka_admin %s %s: %s\n", cmd, topic, err);
	rd_kafka_queue_destroy(queue);
	rd_kafka_destroy(rk);
	return code == 0 ? 0 : 1;
}
