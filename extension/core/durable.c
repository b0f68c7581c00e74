/*-------------------------------------------------------------------------
 *
 * durable.c
 *		Crash-safe replacement of a small file in the data directory.
 *
 * The generator's reservation (guid.reservation) and the lease's saved
 * session (guid.zksession) are written this way: after a crash the file
 * holds either the old content or the new one, never a mix.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "storage/fd.h"

#include "guid_core.h"

/*
 * GuidWriteFileDurably: replace the file at path (relative to the data
 * directory) with content, crash-safely: write a temporary file, then
 * durable_rename(), which fsyncs it, renames it and fsyncs the directory.
 * Returns true on success; on failure reports at elevel (ERROR does not
 * return).  Callers serialise writes to the same path.
 */
bool
GuidWriteFileDurably(const char *path, const char *content, int elevel)
{
	char		tmp[MAXPGPATH];
	int			len = strlen(content);
	int			fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
		return false;
	}
	errno = 0;
	if (write(fd, content, len) != len)
	{
		int			save_errno = errno ? errno : ENOSPC;

		CloseTransientFile(fd);
		errno = save_errno;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
		return false;
	}
	if (CloseTransientFile(fd) != 0)
	{
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmp)));
		return false;
	}
	return durable_rename(tmp, path, elevel) == 0;
}
