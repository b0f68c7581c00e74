/*-------------------------------------------------------------------------
 *
 * gateway_config.c
 *		guid_gateway's config file: "key = value" lines, '#' comments, blank
 *		lines.  An unknown key, a bad value or an unreadable key file is an
 *		error that names the line: the gateway does not start (or, on
 *		SIGHUP, keeps its old config).  README, "HTTP API", lists every key.
 *
 * GwConfigLoad fills a fresh GwConfig; the caller swaps it in under
 * gw_config_lock.  Key files (JWT secret and public keys) are read here, so
 * a reload picks up rotated keys.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gateway.h"

pthread_rwlock_t gw_config_lock = PTHREAD_RWLOCK_INITIALIZER;
GwConfig   *gw_config;

#define CFG_MAX_FILE	(64 * 1024)

static char *
cfg_trim(char *s)
{
	char	   *e;

	while (isspace((unsigned char) *s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char) e[-1]))
		*--e = '\0';
	return s;
}

/* Reads a whole small file; returns a malloc'd buffer or NULL (err set). */
static char *
cfg_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char	   *buf;
	size_t		n;

	if (f == NULL)
	{
		snprintf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
		return NULL;
	}
	buf = malloc(CFG_MAX_FILE + 1);
	n = fread(buf, 1, CFG_MAX_FILE + 1, f);
	fclose(f);
	if (n == 0 || n > CFG_MAX_FILE)
	{
		snprintf(err, errlen, "\"%s\" is empty or larger than %d bytes", path, CFG_MAX_FILE);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * The HS256 secret: a file only its owner may access, used whole but for
 * trailing line ends.
 */
static bool
cfg_secret(GwConfig *cfg, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0)
	{
		snprintf(err, errlen, "could not stat \"%s\": %s", path, strerror(errno));
		return false;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		snprintf(err, errlen, "\"%s\" may be accessed by its group or others (chmod 600 it)", path);
		return false;
	}
	free(cfg->hs256_secret);
	cfg->hs256_secret = cfg_read_file(path, &cfg->hs256_len, err, errlen);
	if (cfg->hs256_secret == NULL)
		return false;
	while (cfg->hs256_len > 0 && (cfg->hs256_secret[cfg->hs256_len - 1] == '\n' ||
								  cfg->hs256_secret[cfg->hs256_len - 1] == '\r'))
		cfg->hs256_secret[--cfg->hs256_len] = '\0';
	if (cfg->hs256_len == 0)
	{
		snprintf(err, errlen, "\"%s\" holds no secret", path);
		return false;
	}
	return true;
}

static bool
cfg_int(const char *v, int min, int max, int *out)
{
	char	   *end;
	long		l;

	if (!isdigit((unsigned char) *v))
		return false;
	errno = 0;
	l = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || l < min || l > max)
		return false;
	*out = (int) l;
	return true;
}

static bool
cfg_positive(const char *v, double *out)
{
	char	   *end;
	double		d;

	if (!isdigit((unsigned char) *v))
		return false;
	d = strtod(v, &end);
	if (*end != '\0' || !(d > 0) || d > 1e9)
		return false;
	*out = d;
	return true;
}

static bool
cfg_bool(const char *v, bool *out)
{
	if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*out = true;
	else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*out = false;
	else
		return false;
	return true;
}

/* "limit.CLIENT = RATE BURST" */
static bool
cfg_limit(GwConfig *cfg, const char *client, char *v)
{
	GwClientLimit *l;
	char	   *sp = strchr(v, ' ');
	double		rate;
	double		burst;

	if (*client == '\0' || strlen(client) > GW_MAX_CLIENT || sp == NULL)
		return false;
	*sp = '\0';
	if (!cfg_positive(v, &rate) || !cfg_positive(cfg_trim(sp + 1), &burst) || burst < 1)
		return false;
	l = calloc(1, sizeof(*l));
	l->client = strdup(client);
	l->rate = rate;
	l->burst = burst;
	l->next = cfg->limits;
	cfg->limits = l;
	return true;
}

/* Applies one key; returns false with err set when the value is bad. */
static bool
cfg_set(GwConfig *cfg, const char *k, char *v, char *err, size_t errlen)
{
	bool		ok = true;

	if (strcmp(k, "listen_address") == 0)
		free(cfg->listen_address), cfg->listen_address = strdup(v);
	else if (strcmp(k, "port") == 0)
		ok = cfg_int(v, 1, 65535, &cfg->port);
	else if (strcmp(k, "conninfo") == 0)
		free(cfg->conninfo), cfg->conninfo = strdup(v);
	else if (strcmp(k, "pool_size") == 0)
		ok = cfg_int(v, 1, 64, &cfg->pool_size);
	else if (strcmp(k, "threads") == 0)
		ok = cfg_int(v, 1, 256, &cfg->threads);
	else if (strcmp(k, "tls_cert_file") == 0)
		free(cfg->tls_cert_file), cfg->tls_cert_file = strdup(v);
	else if (strcmp(k, "tls_key_file") == 0)
		free(cfg->tls_key_file), cfg->tls_key_file = strdup(v);
	else if (strcmp(k, "drain_timeout") == 0)
		ok = cfg_int(v, 0, 3600, &cfg->drain_timeout);
	else if (strcmp(k, "max_body") == 0)
		ok = cfg_int(v, 0, 1024 * 1024, &cfg->max_body);
	else if (strcmp(k, "max_header") == 0)
		ok = cfg_int(v, 1024, 1024 * 1024, &cfg->max_header);
	else if (strcmp(k, "rate_clients_max") == 0)
		ok = cfg_int(v, 1, 10000000, &cfg->rate_clients_max);
	else if (strcmp(k, "auth") == 0)
		ok = cfg_bool(v, &cfg->auth);
	else if (strcmp(k, "jwt_hs256_secret_file") == 0)
		ok = cfg_secret(cfg, v, err, errlen);
	else if (strcmp(k, "jwt_rs256_public_key_file") == 0)
		ok = (free(cfg->rs256_key),
			  (cfg->rs256_key = cfg_read_file(v, &cfg->rs256_len, err, errlen)) != NULL);
	else if (strcmp(k, "jwt_es256_public_key_file") == 0)
		ok = (free(cfg->es256_key),
			  (cfg->es256_key = cfg_read_file(v, &cfg->es256_len, err, errlen)) != NULL);
	else if (strcmp(k, "jwt_issuer") == 0)
		free(cfg->issuer), cfg->issuer = strdup(v);
	else if (strcmp(k, "jwt_audience") == 0)
		free(cfg->audience), cfg->audience = strdup(v);
	else if (strcmp(k, "jwt_leeway") == 0)
		ok = cfg_int(v, 0, 3600, &cfg->leeway);
	else if (strcmp(k, "rate_limit") == 0)
		ok = cfg_positive(v, &cfg->rate);
	else if (strcmp(k, "rate_burst") == 0)
		ok = cfg_positive(v, &cfg->burst) && cfg->burst >= 1;
	else if (strcmp(k, "retry_after") == 0)
		ok = cfg_int(v, 1, 3600, &cfg->retry_after);
	else if (strncmp(k, "limit.", 6) == 0)
		ok = cfg_limit(cfg, k + 6, v);
	else
	{
		snprintf(err, errlen, "unknown key \"%s\"", k);
		return false;
	}
	if (!ok && err[0] == '\0')
		snprintf(err, errlen, "invalid value for \"%s\": \"%s\"", k, v);
	return ok;
}

static void
cfg_defaults(GwConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen_address = strdup("127.0.0.1");
	cfg->port = 8080;
	cfg->conninfo = strdup("dbname=postgres");
	cfg->pool_size = 4;
	cfg->threads = 4;
	cfg->drain_timeout = 30;
	cfg->max_body = 4096;
	cfg->max_header = 8192;
	cfg->rate_clients_max = 100000;
	cfg->auth = true;
	cfg->leeway = 30;
	cfg->rate = 1000;
	cfg->burst = 1000;
	cfg->retry_after = 1;
}

/*
 * GwConfigLoad: reads path into cfg (defaults first).  Returns false with
 * "FILE:LINE: why" in err; cfg is then freed.
 */
bool
GwConfigLoad(const char *path, GwConfig *cfg, char *err, size_t errlen)
{
	FILE	   *f;
	char		line[8192];
	int			lineno = 0;

	cfg_defaults(cfg);
	err[0] = '\0';
	if ((f = fopen(path, "r")) == NULL)
	{
		snprintf(err, errlen, "could not open config file \"%s\": %s", path, strerror(errno));
		GwConfigFree(cfg);
		return false;
	}
	while (fgets(line, sizeof(line), f) != NULL)
	{
		char	   *s = cfg_trim(line);
		char	   *eq;
		char		why[512] = "";

		lineno++;
		if (*s == '\0' || *s == '#')
			continue;
		if ((eq = strchr(s, '=')) == NULL)
			snprintf(why, sizeof(why), "expected \"key = value\"");
		else
		{
			*eq = '\0';
			cfg_set(cfg, cfg_trim(s), cfg_trim(eq + 1), why, sizeof(why));
		}
		if (why[0] != '\0')
		{
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			fclose(f);
			GwConfigFree(cfg);
			return false;
		}
	}
	fclose(f);
	if (cfg->auth && !cfg->hs256_secret && !cfg->rs256_key && !cfg->es256_key)
	{
		snprintf(err, errlen, "%s: auth is on but no jwt_*_file key is set (set one, or auth = off)", path);
		GwConfigFree(cfg);
		return false;
	}
	if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL))
	{
		snprintf(err, errlen, "%s: tls_cert_file and tls_key_file go together", path);
		GwConfigFree(cfg);
		return false;
	}
	return true;
}

void
GwConfigFree(GwConfig *cfg)
{
	GwClientLimit *l = cfg->limits;

	while (l)
	{
		GwClientLimit *next = l->next;

		free(l->client);
		free(l);
		l = next;
	}
	free(cfg->listen_address);
	free(cfg->conninfo);
	free(cfg->tls_cert_file);
	free(cfg->tls_key_file);
	free(cfg->hs256_secret);
	free(cfg->rs256_key);
	free(cfg->es256_key);
	free(cfg->issuer);
	free(cfg->audience);
	memset(cfg, 0, sizeof(*cfg));
}
