/* load_fetch.c: the network side of the "load" job (worker/load.c has the overview): the
 * URL checks, the forked child that fetches with libgit2 and reports on a pipe, and the
 * parent's side, which relays the child's lines, and kills and reaps it when the load must
 * end (load_timeout, cancellation, a worker stop). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <git2.h>

#include "shared/log.h"
#include "shared/netguard.h"
#include "worker/load.h"
#include "worker/worker.h"

/* Longer ref names are skipped (git's own file-system refs cannot hold them anyway). */
#define LOAD_MAX_REF_NAME 255
/* The parent's longest wait on the child's pipe, and on its exit. */
#define LOAD_POLL_MS 250
/* The longest line on the pipe; libgit2's words are cut well before. */
#define LOAD_LINE_MAX 4096
#define LOAD_WORDS_MAX 400
/* Transfer progress lines at most this often. */
#define LOAD_PROGRESS_MS 200

/* The host and port of an authority ("example.org", "[::1]:8080"), new strings; the port
 * defaults to the scheme's. false when it cannot be split. */
static bool
split_authority(const char *url, const char *auth, size_t len, char **host, char **port)
{
	const char *colon = NULL, *h = auth;
	size_t hlen;

	if (auth[0] == '[') {
		const char *close = memchr(auth, ']', len);
		if (close == NULL)
			return false;
		h = auth + 1;
		hlen = (size_t)(close - h);
		if (close + 1 < auth + len) {
			if (close[1] != ':')
				return false;
			colon = close + 1;
		}
	} else {
		colon = memchr(auth, ':', len);
		hlen = colon != NULL ? (size_t)(colon - auth) : len;
	}
	if (hlen == 0)
		return false;
	*host = xstrndup(h, hlen);
	if (colon != NULL && colon + 1 < auth + len)
		*port = xstrndup(colon + 1, (size_t)(auth + len - colon - 1));
	else
		*port = xstrdup(strncasecmp(url, "https", 5) == 0 ? "443"
			: strncasecmp(url, "http", 4) == 0        ? "80"
								  : "9418");
	return true;
}

/* ---- the fetch child ---------------------------------------------------------------- */

/* What the child knows: all set before the fork. It writes lines on fd:
 *   C                          connecting (after the address check)
 *   H <name>                   the remote's default branch
 *   F                          fetching
 *   T <received> <total> <bytes>   transfer progress
 *   R <40 hex> <name>          a ref fetched
 *   S <L|I> <name>             a ref skipped, too long or invalid (the first few;
 *                              the name escaped as load_escape_name does)
 *   N <count>                  how many refs were skipped
 *   E <reason>                 the fetch failed (the last line)
 *   O                          the fetch worked (the last line)
 * Names on R and H lines are valid git ref names: no control characters, no newline. */
struct child {
	int fd;
	pid_t parent;
	const char *url, *ref, *tmpdir;
	const char *auth; /* the URL's authority, NULL for file:// */
	size_t auth_len;
	bool allow_private;
	int64_t max_objects, max_size;
	uint64_t last_sent_ms;
	unsigned int last_received;
	char *reason; /* why the transfer callback stopped the fetch */
	git_remote_callbacks cb;
};

/* One line to the parent; a parent gone means there is nothing left to do. */
static void
child_write(struct child *c, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(c->fd, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1);
		line += n;
		len -= (size_t)n;
	}
}

/* A line "<code> <text>": printf-style, cut at LOAD_LINE_MAX; line breaks in the text
 * become spaces, and when clean, every non-printable byte becomes '?' (reasons must be
 * valid UTF-8 for the job's JSON). */
static void BV_PRINTF(4, 5) say(struct child *c, char code, bool clean, const char *fmt, ...)
{
	char line[LOAD_LINE_MAX];
	va_list ap;
	int n;
	size_t len;

	line[0] = code;
	line[1] = ' ';
	va_start(ap, fmt);
	n = vsnprintf(line + 2, sizeof line - 3, fmt, ap);
	va_end(ap);
	len = 2 + (n < 0 ? 0 : (size_t)n < sizeof line - 4 ? (size_t)n : sizeof line - 4);
	for (size_t i = 2; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];
		if (ch == '\n' || ch == '\r' || (clean && (ch < 0x20 || ch >= 0x7f)))
			line[i] = ch == '\n' || ch == '\r' ? ' ' : '?';
	}
	line[len++] = '\n';
	child_write(c, line, len);
}

/* The end of the child: a failure's reason, libgit2's words cut short. */
static void __attribute__((noreturn)) BV_PRINTF(2, 3)
    child_fail(struct child *c, const char *fmt, ...)
{
	va_list ap;
	char *text;

	va_start(ap, fmt);
	text = xvasprintf(fmt, ap);
	va_end(ap);
	say(c, 'E', true, "%s", text);
	_exit(0);
}

/* libgit2's message, at most LOAD_WORDS_MAX bytes (a message may quote a whole ref). */
static const char *
child_words(char *out, size_t size)
{
	snprintf(out, size, "%s", load_git_words());
	if (strlen(load_git_words()) >= size)
		memcpy(out + size - 4, "...", 4);
	return out;
}

/* The fetch's progress callback, in the child: limits, and a line now and then. */
static int
child_transfer(const git_indexer_progress *st, void *arg)
{
	struct child *c = arg;
	uint64_t now = now_ms();

	if ((int64_t)st->total_objects > c->max_objects) {
		c->reason =
		    xasprintf("the repository has more than %lld objects (max_load_objects)",
			(long long)c->max_objects);
		return GIT_EUSER;
	}
	if ((int64_t)st->received_bytes > c->max_size) {
		c->reason = xasprintf("the fetch received more than %lld bytes (max_load_size)",
		    (long long)c->max_size);
		return GIT_EUSER;
	}
	if (now - c->last_sent_ms >= LOAD_PROGRESS_MS ||
	    (st->received_objects == st->total_objects &&
		c->last_received != st->received_objects)) {
		c->last_sent_ms = now;
		c->last_received = st->received_objects;
		say(c, 'T', false, "%u %u %zu", st->received_objects, st->total_objects,
		    st->received_bytes);
	}
	return 0;
}

/* Whether a ref the remote lists is one to load, in a load of every branch and tag. NULL
 * when it is; else why it is skipped ("L" too long, "I" invalid: see skip_reason), or ""
 * when it is not a branch or tag at all (not counted: pull requests and the like are
 * simply not loaded). */
static const char *
child_ref_problem(const char *name)
{
	int valid = 0;
	size_t len = strlen(name);

	if (strncmp(name, "refs/heads/", 11) != 0 && strncmp(name, "refs/tags/", 10) != 0)
		return "";
	if (len >= 3 && strcmp(name + len - 3, "^{}") == 0)
		return ""; /* a peeled tag, listed after the tag itself */
	if (len > LOAD_MAX_REF_NAME)
		return "L";
	if (git_reference_name_is_valid(&valid, name) != 0 || !valid)
		return "I";
	return NULL;
}

/* The remote's ref for c->ref: "HEAD" is the default branch, a full name is used as is, a
 * short one is a branch, then a tag. NULL when the remote has none of them. */
static const char *
child_resolve(struct child *c, const git_remote_head **heads, size_t n, const char *def)
{
	char *cand[2] = {NULL, NULL};
	const char *found = NULL;

	if (strcmp(c->ref, "HEAD") == 0) {
		if (def == NULL)
			return NULL;
		cand[0] = xstrdup(def);
	} else if (strncmp(c->ref, "refs/", 5) == 0) {
		cand[0] = xstrdup(c->ref);
	} else {
		cand[0] = xasprintf("refs/heads/%s", c->ref);
		cand[1] = xasprintf("refs/tags/%s", c->ref);
	}
	for (int k = 0; k < 2 && found == NULL && cand[k] != NULL; k++)
		for (size_t i = 0; i < n; i++)
			if (strcmp(heads[i]->name, cand[k]) == 0) {
				found = heads[i]->name;
				break;
			}
	free(cand[0]);
	free(cand[1]);
	return found;
}

/* The child: address check, connect, list, fetch, report; never returns. Memory is not
 * freed: _exit hands it all back at once. */
static void __attribute__((noreturn)) child_run(struct child *c)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	git_remote_connect_options co;
	git_fetch_options fo;
	const git_remote_head **heads;
	size_t nheads, nwant = 0;
	const git_remote_head **want;
	git_buf def = {0};
	const char *head = NULL;
	char words[LOAD_WORDS_MAX];
	int64_t nskipped = 0;

#ifdef __linux__
	/* A worker killed outright must not leave its fetch running. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != c->parent)
		_exit(1);
#endif
	if (git_repository_init(&repo, c->tmpdir, 1) != 0)
		child_fail(c, "cannot make a temporary repository on the worker: %s",
		    child_words(words, sizeof words));
	if (git_remote_create_anonymous(&remote, repo, c->url) != 0)
		child_fail(c, "cannot use %s: %s", c->url, child_words(words, sizeof words));
	if (c->auth != NULL && !c->allow_private) {
		char *host, *port, *err = NULL;
		if (!split_authority(c->url, c->auth, c->auth_len, &host, &port))
			child_fail(c, "cannot read the host of %s", c->url);
		if (netguard_check_host(host, port, &err) != 0)
			child_fail(c, "cannot load %s: %s", c->url, err);
	}
	say(c, 'C', false, "connecting");

	/* No redirects: one could lead the load to a host the check above never saw. */
	git_remote_connect_options_init(&co, GIT_REMOTE_CONNECT_OPTIONS_VERSION);
	co.callbacks = c->cb;
	co.follow_redirects = GIT_REMOTE_REDIRECT_NONE;
	if (git_remote_connect_ext(remote, GIT_DIRECTION_FETCH, &co) != 0 ||
	    git_remote_ls(&heads, &nheads, remote) != 0)
		child_fail(c, "cannot read %s: %s", c->url, child_words(words, sizeof words));
	if (git_remote_default_branch(&def, remote) == 0 && def.ptr != NULL &&
	    child_ref_problem(def.ptr) == NULL) {
		head = def.ptr;
		say(c, 'H', false, "%s", head);
	}
	git_error_clear();

	/* The refspecs come from the remote's own list: one bad name must not fail the
	 * whole fetch, so each ref is asked for by name, and the odd ones are skipped. */
	want = xmalloc((nheads + 1) * sizeof *want);
	if (c->ref != NULL) {
		const char *name = child_resolve(c, heads, nheads, head);
		if (name == NULL) {
			if (strcmp(c->ref, "HEAD") == 0)
				child_fail(c,
				    "ref 'HEAD' not found in %s: the remote has no default "
				    "branch",
				    c->url);
			child_fail(c, "ref '%s' not found in %s", c->ref, c->url);
		}
		for (size_t i = 0; i < nheads; i++)
			if (strcmp(heads[i]->name, name) == 0)
				want[nwant++] = heads[i];
	} else {
		for (size_t i = 0; i < nheads; i++) {
			const char *why = child_ref_problem(heads[i]->name);
			if (why == NULL) {
				want[nwant++] = heads[i];
			} else if (*why != '\0') {
				if (nskipped++ < LOAD_SKIPPED_LISTED) {
					char *esc = load_escape_name(heads[i]->name, 200);
					say(c, 'S', true, "%s %s", why, esc);
				}
			}
		}
	}
	/* libgit2 1.5 checks every advertised name while it negotiates (maybe_want in
	 * fetch.c), and a name past its 1,024-byte buffer fails the whole download ("the
	 * provided buffer is too short to hold the normalization of ..."). The only way
	 * around is to rename them in the list the transport holds, to a name no refspec
	 * asks for and that the local transport can still resolve ("HEAD"; an empty one
	 * fails its revparse). This process ends with the fetch: nothing else sees it. */
	for (size_t i = 0; i < nheads; i++)
		if (strlen(heads[i]->name) > LOAD_MAX_REF_NAME)
			memcpy(heads[i]->name, "HEAD", 5);
	if (nskipped > 0)
		say(c, 'N', false, "%lld", (long long)nskipped);

	say(c, 'F', false, "fetching");
	if (nwant > 0) {
		git_strarray specs = {xmalloc(nwant * sizeof(char *)), nwant};
		for (size_t i = 0; i < nwant; i++)
			specs.strings[i] = xasprintf("+%s:%s", want[i]->name, want[i]->name);
		/* The init calls, not the _INIT macros: those leave fields to -Wextra's
		 * complaint. Download, not fetch: the remote is connected already, and no
		 * local ref needs writing (the parent gets them on the pipe). */
		git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
		fo.callbacks = c->cb;
		fo.follow_redirects = GIT_REMOTE_REDIRECT_NONE;
		fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
		fo.update_fetchhead = 0;
		if (git_remote_download(remote, &specs, &fo) != 0) {
			if (c->reason != NULL)
				child_fail(c, "%s", c->reason);
			child_fail(
			    c, "cannot fetch %s: %s", c->url, child_words(words, sizeof words));
		}
		const git_indexer_progress *st = git_remote_stats(remote);
		if (st != NULL)
			say(c, 'T', false, "%u %u %zu", st->received_objects, st->total_objects,
			    st->received_bytes);
	}
	for (size_t i = 0; i < nwant; i++) {
		char hex[41];
		git_oid_tostr(hex, sizeof hex, &want[i]->oid);
		say(c, 'R', false, "%s %s", hex, want[i]->name);
	}
	say(c, 'O', false, "ok");
	_exit(0);
}

/* ---- the parent's side of the fetch ------------------------------------------------- */

/* One line from the child. 0, or -1 with the load's outcome noted (cancelled). */
static int
child_line(struct load *l, char *line, char **child_err, bool *ok)
{
	char a[32], b[32], *text = line[0] != '\0' && line[1] == ' ' ? line + 2 : line + 1;
	unsigned long long rcv, total, bytes;

	switch (line[0]) {
	case 'C':
		l->phase = "connecting to the server";
		break;
	case 'H':
		free(l->head);
		l->head = xstrdup(text);
		break;
	case 'F':
		l->phase = "fetching";
		if (!job_phase(l->run, "Fetching %s", l->url)) {
			l->cancelled = true;
			return -1;
		}
		break;
	case 'T':
		if (sscanf(text, "%llu %llu %llu", &rcv, &total, &bytes) != 3)
			break;
		l->fetched_total = (unsigned int)total;
		if (!job_progress(l->run, "Fetched %s / %s objects (%.1f MiB)",
			load_commas((int64_t)rcv, a), load_commas((int64_t)total, b),
			(double)bytes / (1024.0 * 1024.0))) {
			l->cancelled = true;
			return -1;
		}
		break;
	case 'R':
		if (strlen(text) < 42 || text[40] != ' ')
			break;
		text[40] = '\0'; /* hex_decode wants the id alone */
		GROW(l->refs, l->nrefs, l->crefs);
		memset(&l->refs[l->nrefs], 0, sizeof l->refs[0]);
		if (!hex_decode(text, l->refs[l->nrefs].id, 20))
			break;
		l->refs[l->nrefs].name = xstrdup(text + 41);
		l->nrefs++;
		break;
	case 'S':
		if (strlen(text) > 2)
			load_note_skipped(l, text + 2,
			    text[0] == 'L' ? "name longer than 255 bytes"
					   : "not a valid git ref name");
		break;
	case 'N':
		l->n_skipped_refs += strtoll(text, NULL, 10);
		break;
	case 'E':
		free(*child_err);
		*child_err = xstrdup(text);
		break;
	case 'O':
		*ok = true;
		break;
	}
	return 0;
}

/* Waits for the child to exit, up to ms; then kills it. Its wait status. */
static int
child_reap(pid_t pid, uint64_t ms, bool *killed)
{
	uint64_t end = now_ms() + ms;
	int st = 0;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return st;
		if (now_ms() >= end)
			break;
		usleep(20000);
	}
	kill(pid, SIGKILL);
	*killed = true;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* The parent's loop: relays the child's lines, and kills it when the load must end (time,
 * cancellation, worker stop). 0 when the fetch worked, -1 with the outcome noted. */
static int
child_watch(struct load *l, int fd, pid_t pid)
{
	struct buf in;
	char *child_err = NULL;
	bool ok = false, eof = false, killed = false;
	int st, rc = -1;

	buf_init(&in);
	while (!eof) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int n = poll(&pfd, 1, LOAD_POLL_MS);

		if (n > 0) {
			char chunk[8192];
			ssize_t got = read(fd, chunk, sizeof chunk);
			if (got > 0)
				buf_add(&in, chunk, (size_t)got);
			else if (got == 0 || errno != EINTR)
				eof = true;
			char *start = in.data, *nl;
			while (in.len > 0 &&
			    (nl = memchr(start, '\n', in.len - (size_t)(start - in.data))) !=
				NULL) {
				*nl = '\0';
				if (child_line(l, start, &child_err, &ok) != 0)
					goto kill;
				start = nl + 1;
			}
			size_t rest = in.len - (size_t)(start - in.data);
			memmove(in.data, start, rest);
			in.len = rest;
			in.data[rest] = '\0';
			if (in.len > 2 * LOAD_LINE_MAX)
				eof = true; /* not our child's talk: the status below tells */
		}
		if (worker_stop) {
			l->stopped = true;
			goto kill;
		}
		if (now_ms() > l->deadline_ms) {
			load_fail(l, "the load took longer than load_timeout (%lld s) while %s",
			    (long long)l->w->cfg->load_timeout, l->phase);
			goto kill;
		}
		if (!job_keepalive(l->run)) {
			l->cancelled = true;
			goto kill;
		}
		load_keep_fresh(l);
	}
	st = child_reap(pid, 5000, &killed);
	if (child_err != NULL) {
		load_fail(l, "%s", child_err);
	} else if (!ok || killed || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		if (WIFSIGNALED(st))
			load_fail(l, "the fetch of %s ended unexpectedly (signal %d)", l->url,
			    WTERMSIG(st));
		else
			load_fail(l, "the fetch of %s ended unexpectedly", l->url);
	} else {
		rc = 0;
	}
	goto out;
kill:
	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
out:
	free(child_err);
	buf_free(&in);
	return rc;
}

/* Phase 1: the fetch, in a child process; then the fetched repository opened here. 0 or
 * -1. */
int
load_fetch(struct load *l, const char *auth, size_t auth_len)
{
	const struct config *cfg = l->w->cfg;
	struct child c;
	int fds[2];
	pid_t pid;
	char a[32];

	memset(&c, 0, sizeof c);
	c.parent = getpid();
	c.url = l->url;
	c.ref = l->ref;
	c.tmpdir = l->tmpdir;
	c.auth = auth;
	c.auth_len = auth_len;
	c.allow_private = cfg->load_allow_private;
	c.max_objects = l->max_objects;
	c.max_size = cfg->max_load_size;
	git_remote_init_callbacks(&c.cb, GIT_REMOTE_CALLBACKS_VERSION);
	c.cb.transfer_progress = child_transfer;
	c.cb.payload = &c;

	l->phase = "resolving the host";
	if (!job_phase(l->run, "Connecting to %s", l->url)) {
		l->cancelled = true;
		return -1;
	}
	if (pipe(fds) != 0) {
		l->run->detail = xasprintf("pipe: %s", strerror(errno));
		return load_fail(l, "the worker cannot start the fetch");
	}
	pid = fork();
	if (pid < 0) {
		l->run->detail = xasprintf("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return load_fail(l, "the worker cannot start the fetch");
	}
	if (pid == 0) {
		close(fds[0]);
		c.fd = fds[1];
		child_run(&c);
	}
	close(fds[1]);
	int rc = child_watch(l, fds[0], pid);
	close(fds[0]);
	if (rc != 0)
		return -1;

	if (git_repository_open_bare(&l->repo, l->tmpdir) != 0 ||
	    git_repository_odb(&l->odb, l->repo) != 0) {
		l->run->detail = xstrdup(load_git_words());
		return load_fail(l, "cannot open the fetched repository on the worker");
	}
	log_info_id(l->run->log_id, "fetched %s: %zu refs, %s objects", l->url, l->nrefs,
	    load_commas(l->fetched_total, a));
	return 0;
}
