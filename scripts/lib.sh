# shellcheck shell=bash disable=SC2034 # (the BV_* globals are for the scripts sourcing this)
# scripts/lib.sh: the set-up shared by scripts/run, scripts/test and bench/*: Debian
# packages, the build, a private Postgres cluster and Redis server under a data folder, and
# the bitsvault processes. Source it from bash; it defines bv_* functions and BV_* variables
# and sets no shell options of its own. Nothing here touches a system service: every server
# runs from the data folder, on loopback, on a port we choose.
#
# Layout of a data folder (docs/operations.md):
#   <data>/store     blobs (written by bitsvault itself)
#   <data>/pg        the Postgres cluster        <data>/redis   Redis's dump
#   <data>/secrets   admin_token, worker_token, pg_password (0600)
#   <data>/log       api.log, worker-N.log, postgres.log, redis.log
#   <data>/run       pid files of the processes started from the folder, and the lock

BV_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BV_PROG=${BV_PROG:-$(basename "$0")}

# Debian packages needed to build and run; scripts/test adds clang-format.
BV_PACKAGES=(build-essential autoconf automake pkg-config libevhtp-dev libevent-dev
	libhiredis-dev libpq-dev libcurl4-openssl-dev libssl-dev libarchive-dev libjansson-dev
	libdeflate-dev zlib1g-dev libgit2-dev libyaml-dev check libsubunit-dev postgresql redis-server git curl
	ca-certificates tar gzip zip unzip bzip2 xz-utils zstd procps iproute2 redis-tools busybox)
# tests/itest_requests runs node and npm: Debian's npm (which brings nodejs), unless an npm
# is installed already (NodeSource's nodejs bundles npm and conflicts with Debian's).
command -v npm >/dev/null 2>&1 || BV_PACKAGES+=(npm)

# State of what this shell started, so bv_stop_all can undo it in the right order.
BV_WORKER_PIDS=()	# workers: stopped first, while the API still takes their PATCHes
BV_API_PIDS=()
BV_REDIS_PIDS=()
BV_PG_CLUSTERS=()	# "bindir|clusterdir"
BV_TAIL_PIDS=()		# tail -F of the logs (scripts/run shows them on the terminal)
declare -A BV_PID_NAMES	# pid -> api, worker-N
BV_PORTS_TAKEN=" "	# ports handed out by bv_free_port in this shell
BV_APT_UPDATED=0
BV_STOPPING=0

bv_say() { printf '%s: %s\n' "$BV_PROG" "$*" >&2; }
bv_die() {
	printf '%s: error: %s\n' "$BV_PROG" "$*" >&2
	exit 1
}

# The last lines of each log given, for error messages.
bv_show_logs() {
	local f
	for f in "$@"; do
		[[ -s $f ]] || continue
		printf -- '--- last lines of %s ---\n' "$f" >&2
		tail -n "${BV_LOG_LINES:-25}" "$f" >&2
	done
}

# --- packages --------------------------------------------------------------------------

bv_pkg_installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

# Installs the Debian packages that are missing (apt-get update once first). Not root and
# something missing: an error naming the packages.
bv_ensure_packages() {
	local p missing=()
	command -v dpkg-query >/dev/null || bv_die "dpkg-query not found: these scripts expect Debian 12"
	for p in "$@"; do
		bv_pkg_installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	if ((EUID != 0)); then
		bv_die "missing Debian packages: ${missing[*]}
run as root, or install them first: sudo apt-get install ${missing[*]}"
	fi
	bv_say "installing missing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ((!BV_APT_UPDATED)); then
		apt-get update -q >&2 || bv_die "apt-get update failed"
		BV_APT_UPDATED=1
	fi
	apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2 ||
		bv_die "apt-get install failed for: ${missing[*]}"
	for p in "${missing[@]}"; do
		bv_pkg_installed "$p" || bv_die "package $p is still not installed after apt-get install"
	done
}

# --- build -----------------------------------------------------------------------------

# autoreconf when configure is missing or older than its inputs, configure when the
# Makefile is missing or older than configure, then make. Output goes to stderr.
bv_build() {
	(
		cd "$BV_REPO" || exit 1
		local f regen=0
		if [[ ! -x configure ]]; then
			regen=1
		else
			for f in configure.ac Makefile.am */Makefile.inc; do
				[[ -e $f && $f -nt configure ]] && regen=1
			done
		fi
		if ((regen)); then
			bv_say "autoreconf -fi"
			autoreconf -fi >&2 || bv_die "autoreconf failed"
		fi
		if [[ ! -f Makefile || configure -nt Makefile ]]; then
			bv_say "./configure"
			./configure >&2 || bv_die "./configure failed (see $BV_REPO/config.log)"
		fi
		bv_say "make -j$(nproc)"
		make -j"$(nproc)" >&2 || bv_die "make failed"
		for f in api/bitsvault-api worker/bitsvault-worker; do
			[[ -x $f ]] || bv_die "make did not produce $f"
		done
	)
}

# --- small tools -----------------------------------------------------------------------

# True while pid is a live process (a zombie child counts as gone).
bv_alive() {
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[[ ${st:0:1} != Z ]]
}

# bv_port_in_use PORT [listen]: true when something on this machine uses TCP port PORT
# (any socket state; with "listen", only a listening socket counts).
bv_port_in_use() {
	local states=-Htan
	[[ ${2:-} == listen ]] && states=-Hltn
	if command -v ss >/dev/null; then
		[[ -n $(ss "$states" "( sport = :$1 )" 2>/dev/null) ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# bv_free_port VAR: a random free port in 20000-31999 (below Linux's ephemeral range),
# never one handed out before by this shell.
bv_free_port() {
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $BV_PORTS_TAKEN == *" $p "* ]] && continue
		bv_port_in_use "$p" && continue
		BV_PORTS_TAKEN+="$p "
		printf -v "$1" '%s' "$p"
		return 0
	done
	bv_die "no free TCP port found"
}

# bv_secret VAR FILE: the secret in FILE, made once (32 random bytes as hex, mode 0600).
bv_secret() {
	local v
	if [[ ! -s $2 ]]; then
		(
			umask 077
			od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$2.tmp" && mv "$2.tmp" "$2"
		) || bv_die "cannot write $2"
	fi
	chmod 600 "$2"
	v=$(<"$2")
	[[ -n $v ]] || bv_die "$2 is empty"
	printf -v "$1" '%s' "$v"
}

# Runs a command as the postgres user when we are root (Postgres refuses to run as root),
# from / so that it never starts in a folder that user cannot read.
bv_as_pg() {
	if ((EUID == 0)); then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# The newest installed Postgres, or the one an existing cluster was made with.
bv_pg_bindir() {
	local cluster=$1 d
	if [[ -f $cluster/PG_VERSION ]]; then
		d=/usr/lib/postgresql/$(<"$cluster/PG_VERSION")/bin
		[[ -x $d/postgres ]] ||
			bv_die "$cluster was made by Postgres $(<"$cluster/PG_VERSION"), which is not installed ($d)"
	else
		d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
		[[ -x $d/postgres ]] || bv_die "no Postgres server under /usr/lib/postgresql (package postgresql)"
	fi
	printf '%s\n' "$d"
}

# Postgres (running as postgres) must be able to enter every folder above its cluster.
bv_check_pg_path() {
	local dir=$1 p=""
	((EUID == 0)) || return 0
	getent passwd postgres >/dev/null || bv_die "no postgres user: is the postgresql package installed?"
	local IFS=/ part
	for part in $dir; do
		[[ -n $part ]] || continue
		p+="/$part"
		[[ -d $p ]] || break
		runuser -u postgres -- test -x "$p" ||
			bv_die "the postgres user cannot enter $p (needed to reach $dir): run 'chmod o+x $p' or set BITSVAULT_DATA to a folder under a traversable path (e.g. /srv/bitsvault)"
	done
}

# bv_pidfile_alive FILE [NAME]: true when the pid file names a live process (whose
# command name starts with NAME, if given: a stale file's pid may have been reused).
bv_pidfile_alive() {
	local pid comm
	[[ -s $1 ]] || return 1
	read -r pid <"$1" || return 1
	[[ $pid =~ ^[0-9]+$ ]] && bv_alive "$pid" || return 1
	[[ -z ${2:-} ]] && return 0
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == "$2"* ]]
}

# The command name expected for a pid file in <data>/run.
bv_pidfile_comm() {
	case ${1##*/} in
	redis.pid) echo redis-server ;;
	api.pid | worker-*.pid) echo "${BV_PROC_COMM:-bitsvault}" ;; # BV_PROC_COMM: stand-in binaries
	*) echo "" ;;
	esac
}

# --- data folder -----------------------------------------------------------------------

# Creates the folder's skeleton and takes its lock (fd 9, closed in every child so the
# lock lives exactly as long as this shell). Dies if another run holds the folder.
bv_data_prepare() {
	local data=$1 f
	[[ $data == /* ]] || bv_die "bv_data_prepare: $data is not an absolute path"
	if [[ ! -d $data ]]; then
		mkdir -p "$data" || bv_die "cannot create $data"
		chmod 711 "$data"
	fi
	mkdir -p "$data/log" "$data/run" "$data/secrets" "$data/redis" || bv_die "cannot create folders in $data"
	chmod 700 "$data/secrets" "$data/redis"
	exec 9>"$data/run/lock"
	if ! flock -n 9; then
		f=$(cat "$data/run/owner.pid" 2>/dev/null)
		bv_die "another scripts/run (or test, or bench${f:+, pid $f}) is using $data"
	fi
	# A killed run can leave servers behind; two of them on one folder would corrupt it.
	if bv_pidfile_alive "$data/pg/postmaster.pid" postgres; then
		bv_die "$data is in use: Postgres (pid $(head -n 1 "$data/pg/postmaster.pid")) is running on $data/pg; stop the other run first (or scripts/stop if it was killed)"
	fi
	for f in "$data"/run/*.pid; do
		[[ -e $f && $f != */owner.pid ]] || continue
		bv_pidfile_alive "$f" "$(bv_pidfile_comm "$f")" &&
			bv_die "$data is in use: $(basename "$f" .pid) (pid $(<"$f")) is still running; stop the other run first (or scripts/stop if it was killed)"
		rm -f "$f"
	done
	echo "$$" >"$data/run/owner.pid"
	return 0
}

# --- Postgres --------------------------------------------------------------------------

# bv_pg_start DATA PORT MODE: starts (creating on first use) the cluster <DATA>/pg on
# 127.0.0.1:PORT with scram-sha-256 and the password in <DATA>/secrets/pg_password, and
# creates database bitsvault. MODE test turns durability off (fsync, ...) for speed.
# Sets BV_PG_PASSWORD and BV_PG_BINDIR.
bv_pg_start() {
	local data=$1 port=$2 mode=$3
	local dir=$data/pg log=$data/log/postgres.log bindir pwtmp sockdir
	bv_check_pg_path "$data"
	bindir=$(bv_pg_bindir "$dir") || exit 1
	BV_PG_BINDIR=$bindir
	bv_secret BV_PG_PASSWORD "$data/secrets/pg_password"

	if [[ ! -f $dir/PG_VERSION ]]; then
		if [[ -d $dir ]] && [[ -n $(ls -A "$dir") ]]; then
			bv_die "$dir exists, is not empty and holds no Postgres cluster: move it away"
		fi
		mkdir -p "$dir" || bv_die "cannot create $dir"
		chmod 700 "$dir"
		((EUID == 0)) && chown postgres:postgres "$dir"
		# initdb reads the password from a file the postgres user can read.
		pwtmp=$data/run/pg_pwfile
		(umask 077 && printf '%s\n' "$BV_PG_PASSWORD" >"$pwtmp")
		((EUID == 0)) && chown postgres:postgres "$pwtmp"
		bv_say "creating the Postgres cluster in $dir"
		local initargs=(-D "$dir" -U postgres --auth=scram-sha-256 --pwfile="$pwtmp"
			--encoding=UTF8 --locale=C.UTF-8)
		[[ $mode == test ]] && initargs+=(--no-sync)
		if ! bv_as_pg "$bindir/initdb" "${initargs[@]}" </dev/null >"$data/log/initdb.log" 2>&1 9>&-; then
			rm -f "$pwtmp"
			bv_show_logs "$data/log/initdb.log"
			bv_die "initdb failed (log: $data/log/initdb.log)"
		fi
		rm -f "$pwtmp"
		printf "\n# bitsvault: settings written by scripts/lib.sh at every start\ninclude_if_exists = 'bitsvault.conf'\n" >>"$dir/postgresql.conf"
	fi
	[[ -f $dir/postgresql.conf ]] || bv_die "$dir/postgresql.conf is missing"

	# The socket path must fit in 107 bytes; past that, TCP only (we never use the socket).
	sockdir=$dir
	((${#dir} > 90)) && sockdir=""
	{
		echo "# written by scripts/lib.sh at every start: do not edit"
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$sockdir'"
		echo "max_connections = 200"
		echo "logging_collector = off"
		echo "log_line_prefix = '%m [%p] '"
		if [[ $mode == test ]]; then
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		fi
	} >"$dir/bitsvault.conf"
	((EUID == 0)) && chown postgres:postgres "$dir/bitsvault.conf"
	touch "$log"
	((EUID == 0)) && chown postgres "$log"

	bv_say "starting Postgres on 127.0.0.1:$port ($dir)"
	# shellcheck disable=SC2094 # pg_ctl's own messages go to the server's log, appended
	if ! bv_as_pg setsid -w "$bindir/pg_ctl" -D "$dir" -l "$log" -w -t 60 -s start </dev/null >>"$log" 2>&1 9>&-; then
		bv_show_logs "$log"
		bv_die "Postgres did not start (log: $log)"
	fi
	BV_PG_CLUSTERS+=("$bindir|$dir")

	local have
	have=$(bv_psql "$port" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'bitsvault'") ||
		bv_die "cannot connect to Postgres on 127.0.0.1:$port (log: $log)"
	if [[ $have != 1 ]]; then
		bv_psql "$port" postgres -qc "CREATE DATABASE bitsvault" >/dev/null ||
			bv_die "cannot create database bitsvault"
	fi
}

# bv_psql PORT DB ARGS...: psql over TCP as the superuser (password from BV_PG_PASSWORD).
bv_psql() {
	local port=$1 db=$2
	shift 2
	PGPASSWORD=$BV_PG_PASSWORD PGCONNECT_TIMEOUT=10 "$BV_PG_BINDIR/psql" -X -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$port" -U postgres -d "$db" "$@" </dev/null 9>&-
}

# Stops the cluster (fast: rolls back open transactions, then a clean checkpoint).
bv_pg_stop() {
	local bindir=${1%%|*} dir=${1#*|}
	[[ -f $dir/postmaster.pid ]] || return 0
	bv_say "stopping Postgres ($dir)"
	bv_as_pg "$bindir/pg_ctl" -D "$dir" -m fast -w -t 60 -s stop </dev/null >&2 9>&- ||
		bv_say "warning: pg_ctl stop failed for $dir"
}

# --- Redis -----------------------------------------------------------------------------

# bv_redis_start DATA PORT MODE: redis-server on 127.0.0.1:PORT with its dump in
# <DATA>/redis (saved every 15 min and at shutdown; MODE test: never saved). 64 databases:
# each integration test program has its own (tests/itest.h).
bv_redis_start() {
	local data=$1 port=$2 mode=$3 pid i save=(900 1)
	local log=$data/log/redis.log pidfile=$data/run/redis.pid
	[[ $mode == test ]] && save=("")
	bv_say "starting Redis on 127.0.0.1:$port ($data/redis)"
	setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$data/redis" --save "${save[@]}" \
		--appendonly no --daemonize no --protected-mode yes --pidfile "$pidfile" --databases 64 \
		--logfile "" </dev/null >>"$log" 2>&1 9>&- &
	pid=$!
	BV_REDIS_PIDS+=("$pid")
	for ((i = 0; i < 300; i++)); do
		bv_alive "$pid" || break
		[[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && return 0
		sleep 0.1
	done
	bv_show_logs "$log"
	bv_die "Redis did not start on 127.0.0.1:$port (log: $log)"
}

# --- the bitsvault processes -----------------------------------------------------------

# bv_spawn LOG CMD...: CMD in its own session (a Ctrl-C on the terminal reaches only this
# script, which then stops everything in order), stdin closed, output appended to LOG.
# Sets BV_SPAWNED to its pid.
bv_spawn() {
	local log=$1
	shift
	setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
	BV_SPAWNED=$!
}

# Shows new lines of LOG on stderr prefixed with [NAME] until this shell exits.
bv_follow_log() {
	touch "$2"
	tail -n 0 -F -s 0.2 --pid=$$ "$2" 2>/dev/null </dev/null 9>&- | sed -u "s/^/[$1] /" >&2 &
	BV_TAIL_PIDS+=("$!")
}

# The URL clients use for a listen address: a wildcard host becomes loopback.
bv_listen_url() {
	local listen=$1 host port
	host=${listen%:*}
	port=${listen##*:}
	case $host in
	"" | "*" | 0.0.0.0) host=127.0.0.1 ;;
	"[::]" | "::") host="[::1]" ;;
	esac
	printf 'http://%s:%s\n' "$host" "$port"
}

# bv_stack_start DATA LISTEN MODE NWORKERS: Postgres + Redis on free ports under DATA,
# migrations, the API on LISTEN and NWORKERS workers; waits until GET /status/short is 200.
# MODE run keeps data durable, MODE test trades durability for speed. With BV_FOLLOW_LOGS=1
# the processes' logs are also shown on stderr. Sets BV_URL and BV_ADMIN_TOKEN (and BV_ENV,
# the environment the binaries get).
bv_stack_start() {
	local data=$1 listen=$2 mode=$3 nworkers=$4
	local api=${BV_API_BIN:-$BV_REPO/api/bitsvault-api}
	local worker=${BV_WORKER_BIN:-$BV_REPO/worker/bitsvault-worker}
	local pgport redisport worker_token url lport i code pid timeout f
	[[ -x $api && -x $worker ]] || bv_die "binaries missing: build first (make)"
	[[ $listen == *:* ]] || bv_die "BITSVAULT_LISTEN must be HOST:PORT, not '$listen'"
	lport=${listen##*:}
	[[ $lport =~ ^[0-9]+$ ]] || bv_die "BITSVAULT_LISTEN must be HOST:PORT, not '$listen'"
	bv_data_prepare "$data"
	bv_port_in_use "$lport" listen && bv_die "port $lport (BITSVAULT_LISTEN=$listen) is already in use"
	if [[ -n ${BITSVAULT_ADMIN_TOKEN:-} ]]; then
		BV_ADMIN_TOKEN=$BITSVAULT_ADMIN_TOKEN
	else
		bv_secret BV_ADMIN_TOKEN "$data/secrets/admin_token"
	fi
	bv_secret worker_token "$data/secrets/worker_token"
	bv_free_port pgport
	bv_free_port redisport
	bv_pg_start "$data" "$pgport" "$mode"
	bv_redis_start "$data" "$redisport" "$mode"
	# For people and tools (scripts/psql) that want to reach the servers of this run.
	printf 'postgres=%s\nredis=%s\napi=%s\n' "$pgport" "$redisport" "$listen" >"$data/run/ports"

	url=$(bv_listen_url "$listen")
	BV_ENV=(
		"BITSVAULT_LISTEN=$listen"
		"BITSVAULT_DATA_DIR=$data"
		"BITSVAULT_DATABASE_URL=postgresql://postgres:$BV_PG_PASSWORD@127.0.0.1:$pgport/bitsvault"
		"BITSVAULT_REDIS_URL=redis://127.0.0.1:$redisport/0"
		"BITSVAULT_ADMIN_TOKEN=$BV_ADMIN_TOKEN"
		"BITSVAULT_WORKER_TOKEN=$worker_token"
		"BITSVAULT_API_URL=$url"
		"BITSVAULT_MIGRATIONS_DIR=$BV_REPO/db/migrations"
		"BITSVAULT_LOG_LEVEL=${BITSVAULT_LOG_LEVEL:-info}"
	)
	for ((i = 0; i <= nworkers; i++)); do
		f=$data/log/worker-$i.log
		((i)) || f=$data/log/api.log
		printf '=== %s: %s started by %s ===\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" \
			"$(basename "$f" .log)" "$BV_PROG" >>"$f"
	done
	if [[ ${BV_FOLLOW_LOGS:-0} == 1 ]]; then
		bv_follow_log api "$data/log/api.log"
		for ((i = 1; i <= nworkers; i++)); do
			bv_follow_log "worker-$i" "$data/log/worker-$i.log"
		done
	fi

	bv_say "applying migrations"
	env "${BV_ENV[@]}" "$api" --migrate-only </dev/null >>"$data/log/api.log" 2>&1 9>&- || {
		bv_show_logs "$data/log/api.log"
		bv_die "bitsvault-api --migrate-only failed (log: $data/log/api.log)"
	}

	bv_say "starting the API on $listen and $nworkers workers (logs: $data/log)"
	bv_spawn "$data/log/api.log" env "${BV_ENV[@]}" "$api"
	BV_API_PIDS+=("$BV_SPAWNED")
	BV_PID_NAMES[$BV_SPAWNED]=api
	echo "$BV_SPAWNED" >"$data/run/api.pid"
	for ((i = 1; i <= nworkers; i++)); do
		bv_spawn "$data/log/worker-$i.log" env "${BV_ENV[@]}" \
			"BITSVAULT_WORKER_NAME=${HOSTNAME:-local}-worker-$i" "$worker"
		BV_WORKER_PIDS+=("$BV_SPAWNED")
		BV_PID_NAMES[$BV_SPAWNED]=worker-$i
		echo "$BV_SPAWNED" >"$data/run/worker-$i.pid"
	done

	# Ready when /status/short says 200: the API answers and has seen a worker's heartbeat.
	timeout=${BITSVAULT_START_TIMEOUT:-60}
	for ((i = 0; i < timeout * 5; i++)); do
		for pid in "${BV_API_PIDS[@]}" "${BV_WORKER_PIDS[@]}"; do
			bv_alive "$pid" && continue
			bv_show_logs "$data"/log/api.log "$data"/log/worker-*.log
			bv_die "${BV_PID_NAMES[$pid]} (pid $pid) exited during start-up (logs: $data/log)"
		done
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url/status/short" 9>&-) || true
		if [[ $code == 200 ]]; then
			BV_URL=$url
			return 0
		fi
		sleep 0.2
	done
	bv_show_logs "$data"/log/api.log "$data"/log/worker-*.log
	bv_die "$url/status/short did not answer 200 within ${timeout}s (last answer: ${code:-none}; logs: $data/log)"
}

# Sends TERM to the pids, waits up to $1 seconds, then KILLs what is left; reaps them.
bv_stop_pids() {
	local secs=$1 pid i left
	shift
	(($#)) || return 0
	for pid in "$@"; do
		bv_alive "$pid" && kill -TERM "$pid" 2>/dev/null
	done
	for ((i = 0; i < secs * 10; i++)); do
		left=0
		for pid in "$@"; do
			bv_alive "$pid" && left=1
		done
		((left)) || break
		sleep 0.1
	done
	for pid in "$@"; do
		if bv_alive "$pid"; then
			bv_say "pid $pid did not stop within ${secs}s: killing it"
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null || true
	done
	return 0
}

# Stops everything this shell started: workers (they may finish a job and report it), the
# API, Redis (saves its dump), Postgres. Safe to call more than once.
bv_stop_all() {
	local - c
	set +e # stop everything, whatever fails on the way
	((BV_STOPPING)) && return 0
	BV_STOPPING=1
	if ((${#BV_WORKER_PIDS[@]} + ${#BV_API_PIDS[@]})); then
		bv_say "stopping the workers and the API"
	fi
	bv_stop_pids 15 "${BV_WORKER_PIDS[@]}"
	bv_stop_pids 15 "${BV_API_PIDS[@]}"
	if ((${#BV_REDIS_PIDS[@]})); then
		bv_say "stopping Redis"
	fi
	bv_stop_pids 30 "${BV_REDIS_PIDS[@]}"
	for c in "${BV_PG_CLUSTERS[@]}"; do
		bv_pg_stop "$c"
	done
	if ((${#BV_TAIL_PIDS[@]})); then
		sleep 0.3 # let the followers print the last lines
		kill "${BV_TAIL_PIDS[@]}" 2>/dev/null
		wait "${BV_TAIL_PIDS[@]}" 2>/dev/null || true
	fi
	BV_WORKER_PIDS=() BV_API_PIDS=() BV_REDIS_PIDS=() BV_PG_CLUSTERS=() BV_TAIL_PIDS=()
	BV_STOPPING=0
	return 0
}
