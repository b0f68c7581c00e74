/*-------------------------------------------------------------------------
 *
 * publisher_int.h
 *		What the files of the audit stream's publisher share, and nothing
 *		else: not for other modules (they use include/guid.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PUBLISHER_INT_H
#define PUBLISHER_INT_H

/* coordinator/publisher_settings.c: settings only the publisher reads */
extern char *guid_kafka_properties;
extern char *guid_kafka_properties_file;
extern char *guid_publisher_conninfo;
#ifdef GUID_FAULT_INJECTION
extern char *guid_publisher_test_pause;
#endif

#endif							/* PUBLISHER_INT_H */
