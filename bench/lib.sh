# bench/lib.sh: helpers for the bench/* scripts that drive a whole stack (bench/cook):
# timing, medians, a source tree of a given size. Sources scripts/lib.sh for the stack
# itself (packages, build, Postgres, Redis, the processes). Source it from bash.
# shellcheck shell=bash
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# Nanoseconds since the epoch.
bench_now() { date +%s%N; }

# bench_secs NS: nanoseconds as seconds with 3 decimals.
bench_secs() { awk -v n="$1" 'BEGIN { printf "%.3f", n / 1e9 }'; }

# bench_median N...: the median of integers (the lower middle one for an even count).
bench_median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# bench_min N...: the smallest of integers.
bench_min() { printf '%s\n' "$@" | sort -n | head -n 1; }

# bench_ratio A B: A / B with 2 decimals.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }

# bench_mib BYTES: bytes as MiB with 1 decimal.
bench_mib() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1048576 }'; }

# bench_make_tree DEST MIB SRC...: copies regular files and symlinks from the SRC folders
# (in order, each under DEST/<its base name>, paths sorted) into DEST until their sizes add
# up to MIB MiB. Prints "<bytes> <entries>" of what was copied.
bench_make_tree() {
	local dest=$1 limit=$(($2 * 1048576)) src list total=0 n=0 got n_src
	shift 2
	mkdir -p "$dest"
	for src in "$@"; do
		[[ -d $src ]] || continue
		((total < limit)) || break
		list=$dest.files # next to the tree, in the caller's temp folder
		# Sizes and relative paths up to the limit (the last file may cross it); awk reads
		# everything, so that sort never meets a closed pipe.
		find "$src" \( -type f -o -type l \) -printf '%s\t%P\n' | LC_ALL=C sort -t $'\t' -k2 |
			awk -F '\t' -v t="$total" -v lim="$limit" -v L="$list" '
				BEGIN { n = 0; printf "" > L }
				t >= lim { next }
				{ t += $1; n++; print $2 > L }
				END { print t, n }' >"$list.sum"
		read -r got n_src <"$list.sum"
		if ((n_src == 0)); then
			rm -f "$list" "$list.sum"
			continue
		fi
		mkdir -p "$dest/$(basename "$src")"
		tar -C "$src" -cf - --no-recursion -T "$list" |
			tar -C "$dest/$(basename "$src")" -xf -
		total=$got
		n=$((n + n_src))
		rm -f "$list" "$list.sum"
	done
	echo "$total $n"
}
