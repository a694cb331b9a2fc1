/* loadurl.c: the URLs a git load may read (see loadurl.h). */
#include <string.h>
#include <strings.h>

#include "shared/loadurl.h"

const char *
loadurl_problem(
    const char *url, size_t len, bool allow_file, const char **auth_at, size_t *auth_len)
{
	const char *auth, *end;

	*auth_at = NULL;
	*auth_len = 0;
	if (len == 0)
		return "url must not be empty";
	if (len > LOADURL_MAX)
		return "url is too long: at most 2048 bytes";
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f ||
		    url[i] == '\\')
			return "url must not contain spaces, backslashes, control characters or "
			       "non-ASCII bytes (percent-encode them)";
	if (strpbrk(url, "?#") != NULL)
		return "url must not carry a query string (?...) or fragment (#...): it would be "
		       "stored and shown; give the repository's plain URL";
	if (strncasecmp(url, "https://", 8) == 0)
		auth = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		auth = url + 7;
	else if (strncasecmp(url, "git://", 6) == 0)
		auth = url + 6;
	else if (strncasecmp(url, "file://", 7) == 0) {
		if (!allow_file)
			return "file:// URLs are not allowed on this server (configuration key "
			       "load_allow_file); use " LOADURL_SCHEMES;
		if (url[7] != '/')
			return "a file:// URL must name an absolute path (file:///path/to/repo)";
		return NULL;
	} else
		return "url must start with " LOADURL_SCHEMES "; ssh, scp-like host:path, plain "
		       "paths and other schemes are not loaded";
	end = auth + strcspn(auth, "/");
	if (end == auth)
		return "url has no host";
	if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
		return "url must not carry a user name or password (user@host): it would be "
		       "stored and shown; only public repositories can be loaded";
	if (memchr(auth, '%', (size_t)(end - auth)) != NULL)
		return "url must not percent-encode its host";
	*auth_at = auth;
	*auth_len = (size_t)(end - auth);
	return NULL;
}
