/*-------------------------------------------------------------------------
 *
 * settings.c
 *		The settings that identify a cluster and that several modules read
 *		(guid.node_id, guid.zookeeper, guid.namespace), and the rule that
 *		restart-only guid.* settings are strict.
 *
 * guid.node_id and guid.zookeeper decide the generator's mode and drive the
 * lease; guid.namespace names the lease's ZooKeeper path, prefixes the
 * idempotency keys in Redis and the publisher's Kafka transactional.id.
 * Settings only one module reads are defined by that module.
 *
 * Strictness: an invalid restart-only value stops the server at startup
 * instead of turning into the default.
 *
 * PostgreSQL reads postgresql.conf before an extension defines its settings
 * and keeps each guid.* value as a placeholder string.  When the library
 * then defines the setting, a value that fails its parser or check hook is
 * only logged as a WARNING, and the setting keeps its default.  For the
 * settings that define identity or routing (the node id, the namespace,
 * ZooKeeper, Kafka, the slot, the database) that is the wrong answer: a
 * mistyped namespace would silently become "default", a mistyped node id
 * could collide with another cluster's.
 *
 * So _PG_init calls GuidSettingsCapture() before any module defines its
 * settings (it copies the placeholders' strings) and GuidSettingsEnforce()
 * after all of them have (it validates each restart-only value again, and
 * raises an ERROR, which stops the postmaster, for one that is invalid).
 * Settings that can be reloaded keep PostgreSQL's behaviour: a reload with
 * a bad value is refused and the old value stays.
 *
 * Integer settings without a unit must also be plain decimal: PostgreSQL's
 * parse_int reads '010' as 8 and '0x3ff' as 1023, and rounds '3.7' to 4.
 *
 * Only the postmaster runs this, while preloading.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/memutils.h"

#include "guid_core.h"

int			guid_node_id = -1;
char	   *guid_zookeeper = NULL;
static char *guid_namespace = NULL;

typedef struct CapturedSetting
{
	char	   *name;
	char	   *value;
} CapturedSetting;

static CapturedSetting *captured = NULL;
static int	ncaptured = 0;

/*
 * GuidSettingsCapture: remember the raw value of every guid.* placeholder.
 * Call before any guid setting is defined.
 */
void
GuidSettingsCapture(void)
{
	struct config_generic **vars;
	int			nvars;
	int			i;

	if (!process_shared_preload_libraries_in_progress)
		return;

	vars = get_guc_variables();
	nvars = GetNumConfigOptions();
	captured = MemoryContextAllocZero(TopMemoryContext, sizeof(CapturedSetting) * Max(nvars, 1));
	for (i = 0; i < nvars; i++)
	{
		const char *value;

		if (!(vars[i]->flags & GUC_CUSTOM_PLACEHOLDER) || strncmp(vars[i]->name, "guid.", 5) != 0)
			continue;
		value = GetConfigOption(vars[i]->name, true, false);
		if (value == NULL)
			continue;
		captured[ncaptured].name = MemoryContextStrdup(TopMemoryContext, vars[i]->name);
		captured[ncaptured].value = MemoryContextStrdup(TopMemoryContext, value);
		ncaptured++;
	}
}

/*
 * Is s an optionally signed run of decimal digits without a leading zero,
 * with optional blanks around it?
 */
static bool
settings_plain_decimal(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '-' || *s == '+')
		s++;
	if (!isdigit((unsigned char) *s))
		return false;
	/* parse_int reads a leading zero as octal */
	if (s[0] == '0' && isdigit((unsigned char) s[1]))
		return false;
	while (isdigit((unsigned char) *s))
		s++;
	while (*s == ' ' || *s == '\t')
		s++;
	return *s == '\0';
}

/* Stop the server: the value of a restart-only setting is invalid. */
static void
settings_refuse(const char *name, const char *value, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for parameter \"%s\": \"%s\"", name, value),
			 why ? errdetail("%s", why) : 0,
			 errhint("Correct %s in postgresql.conf (or with ALTER SYSTEM) and start the server again; guid does not fall back to a default for it.",
					 name)));
}

/*
 * GuidSettingsEnforce: validate every captured restart-only guid.* value
 * again, now that its definition exists, and raise an ERROR for the first
 * invalid one.  Call after every guid setting is defined.
 */
void
GuidSettingsEnforce(void)
{
	struct config_generic **vars = get_guc_variables();
	int			nvars = GetNumConfigOptions();
	int			c;

	for (c = 0; c < ncaptured; c++)
	{
		struct config_generic *var = NULL;
		MemoryContext cxt = CurrentMemoryContext;
		int			i;

		for (i = 0; i < nvars; i++)
			if (strcmp(vars[i]->name, captured[c].name) == 0)
				var = vars[i];
		/* An unknown guid.* name: MarkGUCPrefixReserved reports it. */
		if (var == NULL || (var->flags & GUC_CUSTOM_PLACEHOLDER) || var->context != PGC_POSTMASTER)
			continue;

		if (var->vartype == PGC_INT && (var->flags & GUC_UNIT) == 0 &&
			!settings_plain_decimal(captured[c].value))
			settings_refuse(captured[c].name, captured[c].value,
							"This setting takes a plain decimal number.");

		/* Parse and check it as PostgreSQL did, without changing anything. */
		PG_TRY();
		{
			(void) set_config_option(captured[c].name, captured[c].value,
									 PGC_POSTMASTER, PGC_S_FILE, GUC_ACTION_SET,
									 false, ERROR, false);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			settings_refuse(captured[c].name, captured[c].value,
							edata->detail ? edata->detail : edata->message);
		}
		PG_END_TRY();
	}
}

/*
 * GuidHostPortProblem: why a list of servers is unusable, or NULL when it is
 * fine.  The list is "host:port[,host:port...]": host names or IPv4
 * addresses, or IPv6 addresses in brackets, and ports 1..65535 in plain
 * decimal.  For ZooKeeper a "/chroot" path may follow the list, and every
 * port is required; for Kafka an entry may carry a "proto://" prefix and
 * may omit the port (librdkafka then uses 9092).  The clients would turn a
 * bad port into another one (99999 into 34463) or fail late with an
 * unrelated error: refuse it where the setting is read.
 */
const char *
GuidHostPortProblem(const char *value, bool zookeeper)
{
	static char why[256];
	const char *p = value;

	if (value == NULL || value[0] == '\0')
		return NULL;			/* empty: the feature is off */

	for (;;)
	{
		const char *host;
		size_t		hostlen;
		long		port = -1;

		if (!zookeeper)
		{
			const char *sep = strstr(p, "://");
			const char *comma = strchr(p, ',');

			if (sep && (comma == NULL || sep < comma))
				p = sep + 3;
		}
		host = p;
		if (*p == '[')
		{
			p = strchr(p, ']');
			if (p == NULL)
				return "An IPv6 address must be closed by \"]\".";
			p++;
		}
		else
			while (*p && (isalnum((unsigned char) *p) || *p == '.' || *p == '-' || *p == '_'))
				p++;
		hostlen = p - host;
		if (hostlen == 0)
		{
			snprintf(why, sizeof(why), "A host name is missing at \"%.40s\".", host);
			return why;
		}
		if (*p == ':')
		{
			const char *digits = ++p;

			port = 0;
			while (isdigit((unsigned char) *p) && port <= 65535)
				port = port * 10 + (*p++ - '0');
			if (p == digits || isdigit((unsigned char) *p) || port < 1 || port > 65535)
			{
				snprintf(why, sizeof(why), "The port of \"%.*s\" must be a number from 1 to 65535.",
						 (int) Min(hostlen, 100), host);
				return why;
			}
		}
		else if (zookeeper)
		{
			snprintf(why, sizeof(why), "\"%.*s\" needs a port (host:port).", (int) Min(hostlen, 100), host);
			return why;
		}

		if (*p == ',')
		{
			p++;
			continue;
		}
		if (*p == '\0')
			return NULL;
		if (zookeeper && *p == '/')
		{
			/* a chroot: /a/b, no empty, "." or ".." component, no trailing "/" */
			const char *c = p;

			while (*c == '/')
			{
				const char *start = ++c;

				while (*c && *c != '/')
					c++;
				if (c == start || (c - start == 1 && start[0] == '.') ||
					(c - start == 2 && start[0] == '.' && start[1] == '.'))
					return "The chroot must be a ZooKeeper path such as \"/guid\", without empty, \".\" or \"..\" components.";
			}
			return NULL;
		}
		snprintf(why, sizeof(why), "Unexpected \"%.20s\" after \"%.*s\".", p, (int) Min(hostlen, 100), host);
		return why;
	}
}

/*
 * GuidReadSecretFile: read a secret (a password, credentials) from a file
 * that only the server's OS user may read, as libpq treats ~/.pgpass.
 *
 * Secrets do not belong in settings: every member of pg_read_all_settings
 * (and so of pg_monitor) reads even a GUC_SUPERUSER_ONLY setting, and a
 * reload logs the new value.  A file readable by the group or by others is
 * refused, and so is one that is not a regular file.  Trailing newlines are
 * dropped.  Returns the contents (palloc'd in the current memory context) or
 * NULL with a message in err.
 */
char *
GuidReadSecretFile(const char *setting, const char *path, char *err, size_t errlen)
{
	struct stat st;
	FILE	   *f;
	StringInfoData buf;
	char		chunk[1024];
	size_t		n;
	int			fd;

	fd = open(path, O_RDONLY | PG_BINARY | O_NOFOLLOW, 0);
	if (fd < 0)
	{
		snprintf(err, errlen, "could not open %s \"%s\": %m", setting, path);
		return NULL;
	}
	if (fstat(fd, &st) != 0)
	{
		snprintf(err, errlen, "could not stat %s \"%s\": %m", setting, path);
		close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
	{
		snprintf(err, errlen, "%s \"%s\" is not a regular file", setting, path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		snprintf(err, errlen, "%s \"%s\" has group or world access; permissions should be u=rw (0600) or less",
				 setting, path);
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (f == NULL)
	{
		snprintf(err, errlen, "could not read %s \"%s\": %m", setting, path);
		close(fd);
		return NULL;
	}
	initStringInfo(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && buf.len < 65536)
		appendBinaryStringInfo(&buf, chunk, (int) n);
	if (ferror(f))
	{
		snprintf(err, errlen, "could not read %s \"%s\": %m", setting, path);
		fclose(f);
		pfree(buf.data);
		return NULL;
	}
	fclose(f);
	while (buf.len > 0 && (buf.data[buf.len - 1] == '\n' || buf.data[buf.len - 1] == '\r'))
		buf.data[--buf.len] = '\0';
	if (buf.len == 0 || memchr(buf.data, '\0', buf.len) != NULL)
	{
		snprintf(err, errlen, "%s \"%s\" is empty or holds a NUL byte", setting, path);
		pfree(buf.data);
		return NULL;
	}
	return buf.data;
}

/*
 * GuidNamespace: guid.namespace ("default" when the library was not
 * preloaded and the setting is not defined).
 */
const char *
GuidNamespace(void)
{
	return guid_namespace ? guid_namespace : "default";
}

/*
 * GuidLeaseConfigured: true when node ids are to be leased from ZooKeeper.
 */
bool
GuidLeaseConfigured(void)
{
	return guid_node_id < 0 && guid_zookeeper != NULL && guid_zookeeper[0] != '\0';
}

/*
 * Why a guid.namespace value is unusable, or NULL when it is fine.  It is one
 * path component in ZooKeeper, where "." and ".." are not allowed.
 */
static const char *
settings_namespace_problem(const char *value)
{
	const char *p;

	if (value == NULL || value[0] == '\0' || strlen(value) > 100)
		return "guid.namespace must be 1 to 100 characters long.";
	for (p = value; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.'))
			return "guid.namespace may contain only letters, digits, \"_\", \"-\" and \".\".";
	if (strcmp(value, ".") == 0 || strcmp(value, "..") == 0)
		return "guid.namespace cannot be \".\" or \"..\", which are not ZooKeeper path components.";
	return NULL;
}

static bool
settings_check_namespace(char **newval, void **extra, GucSource source)
{
	const char *problem = settings_namespace_problem(*newval);

	if (problem)
	{
		GUC_check_errdetail("%s", problem);
		return false;
	}
	return true;
}

static bool
settings_check_zookeeper(char **newval, void **extra, GucSource source)
{
	const char *problem = GuidHostPortProblem(*newval, true);

	if (problem)
	{
		GUC_check_errdetail("guid.zookeeper is host:port[,host:port...][/chroot]. %s", problem);
		return false;
	}
	return true;
}

/*
 * GuidCoreSettingsInit: define guid.node_id, guid.zookeeper and
 * guid.namespace.  They are restart-only, and only defined while preloading:
 * loaded later, the library has no generator and no use for them.
 */
void
GuidCoreSettingsInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("guid.node_id",
							gettext_noop("Node id of this cluster (0..1023), or -1 to lease one from ZooKeeper."),
							gettext_noop("Every cluster of a namespace must have a different node id."),
							&guid_node_id,
							-1, -1, (int) GUID_MAX_NODE,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("guid.zookeeper",
							   gettext_noop("ZooKeeper connect string (host:port[,host:port...][/chroot]) to lease the node id from."),
							   gettext_noop("Used when guid.node_id is -1."),
							   &guid_zookeeper,
							   "",
							   PGC_POSTMASTER, 0,
							   settings_check_zookeeper, NULL, NULL);
	DefineCustomStringVariable("guid.namespace",
							   gettext_noop("Namespace of node ids in ZooKeeper: clusters sharing one never share an id."),
							   NULL,
							   &guid_namespace,
							   "default",
							   PGC_POSTMASTER, 0,
							   settings_check_namespace, NULL, NULL);
}
