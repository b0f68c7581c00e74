/*-------------------------------------------------------------------------
 *
 * guid_audit.h
 *		Writing guid.audit rows (extension/audit.c), for the SQL functions
 *		that issue IDs for a service.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_AUDIT_H
#define GUID_AUDIT_H

#include "guid.h"

extern void GuidCheckService(const char *service);
extern bool GuidAuditBegin(void);
extern void GuidAuditWrite(const guid *ids, const bool *mine, int n,
						   const char *service, int32 node_id, bool if_absent);

#endif							/* GUID_AUDIT_H */
