/*-------------------------------------------------------------------------
 *
 * guid_resolve.h
 *		Resolve the hosts of a connect string without blocking the caller.
 *
 * Plain C (libc only): no PostgreSQL header, no global state.  A caller
 * starts a lookup, polls it from its own event loop until it is done, and
 * frees it.  See extension/core/resolve.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GUID_RESOLVE_H
#define GUID_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>

/* Hosts in one connect string, at most. */
#define GUID_RESOLVE_MAX_HOSTS	64

typedef struct GuidResolve GuidResolve;

/*
 * Start looking up every host of spec, "host:port[,host:port...][/chroot]"
 * (the port follows the last ':').  Returns NULL with the reason in err when
 * spec is malformed or the lookup cannot start.
 */
extern GuidResolve *GuidResolveStart(const char *spec, char *err, size_t errlen);

/*
 * Is the lookup done?  Returns 0 while it runs; 1 when out holds the
 * numeric connect string ("addr:port,...", then the chroot); -1 with the
 * reason in err when no host resolved or out is too small.  Never blocks.
 */
extern int	GuidResolvePoll(GuidResolve *r, char *out, size_t outlen,
							char *err, size_t errlen);

/*
 * Free a lookup, finished or not; returns true when it is freed.  A lookup
 * the resolver thread is still working on is cancelled; one it cannot cancel
 * is left to it and false returned: the caller may call again later to free
 * it (or leave it, which leaks it).
 */
extern bool GuidResolveFree(GuidResolve *r);

#endif							/* GUID_RESOLVE_H */
