/* config.h: every setting in one table (key, type, default, bounds), loaded from a JSON
 * file and BITSVAULT_* environment overrides, validated at start. docs/configuration.md
 * and docs/bitsvault.example.json describe each key. */
#ifndef BV_CONFIG_H
#define BV_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "shared/util.h"

struct config {
	/* network and paths */
	char *listen; /* "127.0.0.1:8080" */
	char *public_url; /* base URL in fetch_url etc.; "" = from the Host header */
	char *api_url; /* where workers send PATCHes; "" = http://<listen> */
	char *data_dir; /* store lives in <data_dir>/store */
	char *migrations_dir; /* numbered SQL files */
	char *database_url; /* libpq conninfo or postgresql:// URL (secret: has a password) */
	char *redis_url; /* redis://host:port[/db] */
	/* auth */
	char *admin_token; /* secret */
	char *worker_token; /* secret */
	char *user_tokens; /* secret: comma-separated list of tokens with role user */
	bool anonymous_read; /* GET/HEAD of status, bundles and objects without a token */
	bool anonymous_cook; /* POST /api/1/vault/... without a token (SWH's clients send none) */
	/* logging */
	char *log_level; /* debug, info, warn, error */
	/* HTTP limits */
	int64_t max_upload_size; /* bytes, archive and file uploads */
	int64_t max_json_size; /* bytes, JSON bodies */
	int64_t http_timeout; /* seconds without a body byte in, or a reply byte taken */
	int64_t http_header_timeout; /* seconds for a whole header section */
	int64_t http_keepalive_timeout; /* seconds a connection may idle between requests */
	int64_t max_headers; /* header fields per request: more is a 431 */
	int64_t max_header_size; /* bytes of header fields per request: more is a 431 */
	int64_t max_url_length; /* bytes of path and query: more is a 414 */
	int64_t max_json_depth; /* nesting of a JSON body: deeper is a 400 */
	int64_t max_keepalive_requests;
	int64_t shutdown_timeout; /* seconds to finish in-flight requests on SIGTERM */
	int64_t api_threads; /* blocking pool threads, each with its own Postgres/Redis */
	int64_t api_processes; /* API processes sharing the listening socket */
	int64_t status_cache_entries; /* finished jobs' status documents kept; 0 = none */
	/* archive uploads */
	int64_t max_archive_entries;
	int64_t max_archive_unpacked; /* bytes, sum of the entries' sizes */
	int64_t max_archive_ratio; /* unpacked bytes per archive byte; 0 = no limit */
	/* jobs */
	int64_t job_lease; /* seconds without progress before another worker claims */
	int64_t job_max_attempts;
	int64_t reconcile_interval; /* seconds between queue reconciliations */
	int64_t worker_heartbeat; /* seconds between worker heartbeats */
	char *worker_name; /* "" = <hostname>-<pid> */
	int64_t max_bundle_size; /* bytes; a cook past it fails with a reason */
	int64_t gzip_level; /* 1..12, libdeflate's scale (6 ~ gzip -6) */
	/* notify_url callbacks */
	int64_t notify_attempts; /* tries before a notification is given up */
	int64_t notify_backoff_ms; /* first retry's delay; later ones x5, x30, x120, x600 */
	bool notify_allow_private; /* notify_url may reach loopback, private, link-local */
	/* git loading */
	bool load_allow_file; /* file:// URLs (and nothing else local) may be loaded */
	int64_t load_timeout; /* seconds a load may run before it fails */
	int64_t max_load_objects; /* objects one load may read; past it the load fails */
	bool load_allow_private; /* loads may reach loopback, private, link-local addresses */
	int64_t max_load_blob; /* bytes of the largest file (blob) a load reads */
	int64_t max_load_size; /* bytes a load's fetch may receive */
	/* expiry and garbage collection (docs/operations.md) */
	int64_t bundle_ttl; /* seconds after the last download (or completion) a bundle lives */
	int64_t store_quota; /* bytes of bundles kept; 0 = no quota; LRU eviction past it */
	int64_t expiry_interval; /* seconds between expiry runs */
	int64_t gc_interval; /* seconds between garbage collections */
	int64_t gc_grace; /* seconds a blob is safe from collection after it was written */
	bool gc_dry_run; /* collections only report what they would delete */
	/* Requests (Cachito's API v1; docs/api.md "Requests") */
	char *request_package_managers; /* enabled, comma-separated: "npm,git-submodule,generic" */
	int64_t request_lifetime; /* seconds after completion (or last progress) before stale */
	int64_t request_lifetime_failed; /* seconds after a failure before stale */
	bool request_anonymous_create; /* POST /api/v1/requests without a token (trusted network) */
	char *request_user_header; /* header a TLS-terminating proxy sets to the client
				    * certificate's subject, taken as the user; "" = none */
	char *request_user_header_from; /* comma-separated proxy addresses the header is
					 * believed from; from anyone else it is ignored */
	char *request_representatives; /* users who may create requests for another "user" */
	char *npm_registry; /* where npm dependencies are downloaded from */
	int64_t npm_download_attempts; /* tries per tarball before the request fails */
	int64_t max_artifact_size; /* bytes of the largest dependency artifact downloaded */
	/* Bits (the bits-service; docs/api.md "Bits") */
	int64_t bits_max_body_size; /* bytes of a Bits body; 0 = no limit */
	int64_t bits_packages_max_body_size; /* per resource; 0 = bits_max_body_size */
	int64_t bits_droplets_max_body_size;
	int64_t bits_buildpacks_max_body_size;
	int64_t bits_buildpack_cache_max_body_size;
	int64_t bits_app_stash_max_body_size;
	char *bits_private_host; /* Host of the internal endpoints; "" = any host but the public */
	char *bits_public_host; /* Host that serves only signed URLs; "" = none */
	char *bits_public_url; /* base of signed URLs; "" = http://<bits_public_host> */
	char *bits_private_auth; /* bearer, basic or none (a trusted network) */
	char *bits_signing_users; /* secret: "user:password,...": /sign's HTTP Basic */
	char *bits_signing_keys; /* secret: "key_id:secret,..." for HMAC-signed URLs */
	char *bits_active_key_id; /* the key new URLs are signed with */
	char *bits_secret; /* secret: the bits-service's legacy single secret (no AccessKeyId) */
	char *bits_md5_secret; /* secret: nginx secure_link's secret for md5+expires URLs */
	int64_t bits_sign_expiry; /* seconds a URL from /sign is valid */
	int64_t bits_app_stash_min_size; /* files smaller are not matched from the app stash */
	int64_t bits_app_stash_max_size; /* files larger are not matched */
	/* the Droplet Archiver (docs/api.md "Droplet Archiver") */
	char *archiver_users; /* secret: "user:password,...": HTTP Basic of its routes */
	char *archiver_sync_hosts; /* peers, "host:port,...": every droplet is sent to each */
	char *archiver_sync_user; /* the user this server presents to its peers */
	char *archiver_sync_password; /* secret: its password */
	int64_t archiver_sync_interval; /* seconds between reconciles with each peer */
};

/* Fills every key with its default. */
void config_defaults(struct config *cfg);
/* Defaults, then the JSON file (if path is non-NULL), then BITSVAULT_<KEY> environment
 * variables; validates types and bounds. -1 with *errstr naming the bad key. */
int config_load(struct config *cfg, const char *path, char **errstr) BV_MUSTCHECK;
void config_free(struct config *cfg);

/* The table itself, for docs and tests: iterate with i until config_key_name returns NULL. */
const char *config_key_name(int i);
/* True for keys whose values must never be logged or echoed. */
bool config_key_secret(const char *key);

#endif
