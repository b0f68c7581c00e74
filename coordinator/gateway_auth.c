/*-------------------------------------------------------------------------
 *
 * gateway_auth.c
 *		JWT bearer tokens for guid_gateway, verified by libjwt (Debian's
 *		1.10: jwt_decode verifies the signature with the algorithm the
 *		token's header names).  No crypto of our own.
 *
 * A token is accepted when one configured key verifies it *and* the
 * token's algorithm is that key's algorithm: a token signed "HS256" with an
 * RSA public key as its HMAC secret (the classic confusion attack) or with
 * "alg": "none" is refused.  Then exp (required), nbf, iss and aud are
 * checked with the configured leeway, and sub (required) names the client.
 *
 * Runs on libmicrohttpd's threads; touches no shared state but the config,
 * which the caller holds read-locked.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jwt.h>

#include "gateway.h"

/* Returns true if one configured key verifies token with its own algorithm. */
static bool
auth_verify(const GwConfig *cfg, const char *token, jwt_t **out)
{
	struct
	{
		const char *key;
		size_t		len;
		jwt_alg_t	alg;
	}			keys[3] = {
		{cfg->hs256_secret, cfg->hs256_len, JWT_ALG_HS256},
		{cfg->rs256_key, cfg->rs256_len, JWT_ALG_RS256},
		{cfg->es256_key, cfg->es256_len, JWT_ALG_ES256},
	};

	for (int i = 0; i < 3; i++)
	{
		jwt_t	   *jwt = NULL;

		if (keys[i].key == NULL)
			continue;
		if (jwt_decode(&jwt, token, (const unsigned char *) keys[i].key,
					   (int) keys[i].len) == 0 && jwt_get_alg(jwt) == keys[i].alg)
		{
			*out = jwt;
			return true;
		}
		if (jwt)
			jwt_free(jwt);
	}
	return false;
}

/*
 * Reads a NumericDate claim (RFC 7519 2: a JSON number, possibly with a
 * fraction).  Returns 1 and its value, 0 when it is absent, -1 when it is
 * there but not a number: a claim that cannot be read is never ignored.
 */
static int
auth_time_claim(jwt_t *jwt, const char *name, double *value)
{
	char	   *json = jwt_get_grants_json(jwt, name);
	char	   *end;
	int			ret = -1;

	if (json == NULL)
		return 0;
	if (json[0] == '-' || isdigit((unsigned char) json[0]))
	{
		errno = 0;
		*value = strtod(json, &end);
		if (errno == 0 && *end == '\0' && isfinite(*value))
			ret = 1;
	}
	free(json);
	return ret;
}

/*
 * aud may be a string or an array of strings (RFC 7519 4.1.3).  The array
 * comes as libjwt's compact JSON text: walked element by element, each a
 * string compared whole (escaped as jansson escapes it); anything else in
 * the array refuses the token.
 */
static bool
auth_audience_ok(jwt_t *jwt, const char *want)
{
	const char *aud = jwt_get_grant(jwt, "aud");
	char	   *json;
	char	   *escaped;
	size_t		wlen;
	const char *p;
	bool		found = false;

	if (aud != NULL)
		return strcmp(aud, want) == 0;
	if ((json = jwt_get_grants_json(jwt, "aud")) == NULL)
		return false;
	wlen = 6 * strlen(want) + 8;	/* \u00XX at worst: never cut short */
	escaped = malloc(wlen);
	GwJsonEscape(escaped, wlen, want);
	wlen = strlen(escaped);
	p = json;
	if (*p++ != '[')
		goto refused;
	if (*p == ']')
		goto refused;
	for (;;)
	{
		const char *s;

		if (*p++ != '"')
			goto refused;
		for (s = p; *p && *p != '"'; p++)
			if (*p == '\\' && p[1])
				p++;
		if (*p != '"')
			goto refused;
		if ((size_t) (p - s) == wlen && strncmp(s, escaped, wlen) == 0)
			found = true;
		p++;
		if (*p == ']' && p[1] == '\0')
			break;
		if (*p++ != ',')
			goto refused;
	}
	free(json);
	free(escaped);
	return found;

refused:
	free(json);
	free(escaped);
	return false;
}

/*
 * GwAuthCheck: see gateway.h.
 */
bool
GwAuthCheck(const GwConfig *cfg, const char *authz, char *client, size_t clientlen,
			char *err, size_t errlen)
{
	jwt_t	   *jwt = NULL;
	const char *token;
	const char *sub;
	const char *iss;
	double		now = (double) time(NULL);
	double		exp = 0;
	double		nbf = 0;
	int			has_nbf = 0;
	bool		ok = false;

	if (authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
	{
		snprintf(err, errlen, "missing bearer token");
		return false;
	}
	token = authz + 7;
	while (*token == ' ')
		token++;
	if (!auth_verify(cfg, token, &jwt))
		snprintf(err, errlen, "invalid token: bad signature, algorithm or format");
	else if (auth_time_claim(jwt, "exp", &exp) != 1)
		snprintf(err, errlen, "invalid token: no numeric exp claim");
	else if (now > exp + cfg->leeway)
		snprintf(err, errlen, "invalid token: expired");
	else if ((has_nbf = auth_time_claim(jwt, "nbf", &nbf)) < 0)
		snprintf(err, errlen, "invalid token: nbf is not a number");
	else if (has_nbf && now + cfg->leeway < nbf)
		snprintf(err, errlen, "invalid token: not valid yet (nbf)");
	else if (cfg->issuer && ((iss = jwt_get_grant(jwt, "iss")) == NULL ||
							 strcmp(iss, cfg->issuer) != 0))
		snprintf(err, errlen, "invalid token: wrong issuer");
	else if (cfg->audience && !auth_audience_ok(jwt, cfg->audience))
		snprintf(err, errlen, "invalid token: wrong audience");
	else if ((sub = jwt_get_grant(jwt, "sub")) == NULL || sub[0] == '\0' ||
			 strlen(sub) >= clientlen || strlen(sub) > GW_MAX_CLIENT)
		snprintf(err, errlen, "invalid token: no usable sub claim");
	else
	{
		strcpy(client, sub);
		ok = true;
	}
	if (jwt)
		jwt_free(jwt);
	return ok;
}
