# fixture.sh: the fixtures of tests/itest_requests.c, run in the test's folder with
# the fixture registry's URL (http://127.0.0.1:PORT/) as $1 and this folder as $2:
#   www/       the registry: tarballs made with `npm pack` from tiny packages (fix-b in two
#              versions, fix-a -> fix-b@^1.5, @fixscope/c -> fix-b@^2, fix-d, fix-e) and
#              their packuments; the registry must be serving www/ already;
#   repos/app1 package.json + package-lock.json (made by npm against the registry:
#              nested node_modules, a scoped package, a dev dependency) at the root;
#   repos/app2 the same under web/, sharing fix-b@2.1.0 and adding fix-d;
#   repos/bad  one commit per failure: an integrity mismatch, a missing tarball, a bad
#              lockfile, a package only this request needs (for the unreachable registry);
#   repos/gen*, repos/both  the generic package manager's (see below);
#   repos/*.sha  the commits.
set -eu
REG=$1
SRC=$2
export GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org GIT_COMMITTER_NAME=Ada \
	GIT_COMMITTER_EMAIL=ada@example.org GIT_AUTHOR_DATE=2020-01-01T00:00:00Z \
	GIT_COMMITTER_DATE=2020-01-01T00:00:00Z GIT_CONFIG_GLOBAL=/dev/null
export HOME=$PWD/home npm_config_cache=$PWD/npm-cache npm_config_registry=$REG \
	npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
mkdir -p home pk www repos

mkpkg() { # name version dependencies-json
	d=pk/$1-$2
	mkdir -p "$d"
	printf '{"name":"%s","version":"%s","main":"index.js","dependencies":%s}\n' "$1" "$2" "$3" >"$d/package.json"
	printf 'module.exports = "%s@%s";\n' "$1" "$2" >"$d/index.js"
	(cd "$d" && npm pack --silent >/dev/null)
	short=${1#*/}
	file=$(echo "$1" | sed 's,^@,,; s,/,-,')-$2.tgz
	mkdir -p "www/$1/-"
	cp "$d/$file" "www/$1/-/$short-$2.tgz"
	echo "$1 $2 sha512-$(openssl dgst -sha512 -binary "www/$1/-/$short-$2.tgz" | base64 -w0) $3" >>pk/list
}
mkpkg fix-b 1.5.0 '{}'
mkpkg fix-b 2.1.0 '{}'
mkpkg fix-a 1.0.0 '{"fix-b":"^1.5.0"}'
mkpkg @fixscope/c 0.3.0 '{"fix-b":"^2.0.0"}'
mkpkg fix-d 1.0.0 '{}'
mkpkg fix-e 1.0.0 '{}'
node -e '
const fs = require("fs"), reg = process.argv[1], docs = {};
for (const line of fs.readFileSync("pk/list", "utf8").trim().split("\n")) {
	const [n, v, i, ...d] = line.split(" ");
	const short = n.replace(/^@[^/]*\//, "");
	docs[n] = docs[n] || {name: n, "dist-tags": {}, versions: {}};
	docs[n].versions[v] = {name: n, version: v, dependencies: JSON.parse(d.join(" ")),
		dist: {integrity: i, tarball: reg + n + "/-/" + short + "-" + v + ".tgz"}};
	docs[n]["dist-tags"].latest = v;
}
for (const n in docs) fs.writeFileSync("www/" + n + "/index.json", JSON.stringify(docs[n]));
' "$REG"

# A package folder: package.json with these dependencies, its lockfile made by npm.
mkapp() { # dir dependencies-json devDependencies-json
	mkdir -p "$1"
	printf '{"name":"%s","version":"1.0.0","private":true,"dependencies":%s,"devDependencies":%s}\n' \
		"$(basename "$1")" "$2" "$3" >"$1/package.json"
	(cd "$1" && npm install --package-lock-only --silent >/dev/null)
}
commit() { # repo message
	(cd "$1" && git add -A && git commit -q -m "$2" && git rev-parse HEAD)
}

git init -q -b main repos/app1
mkapp repos/app1 '{"fix-a":"^1.0.0","@fixscope/c":"^0.3.0"}' '{"fix-b":"^2.0.0"}'
printf 'console.log(require("fix-a"), require("@fixscope/c"));\n' >repos/app1/index.js
commit repos/app1 app1 >repos/app1.sha

git init -q -b main repos/app2
mkapp repos/app2/web '{"fix-b":"^2.1.0","fix-d":"^1.0.0"}' '{}'
echo app2 >repos/app2/README
commit repos/app2 app2 >repos/app2.sha

git init -q -b main repos/bad
mkapp repos/bad '{"fix-d":"^1.0.0"}' '{}'
good=$(grep '^fix-b 2.1.0 ' pk/list | cut -d' ' -f3)
mine=$(grep '^fix-d 1.0.0 ' pk/list | cut -d' ' -f3)
sed -i "s|$mine|$good|" repos/bad/package-lock.json
commit repos/bad mismatch >repos/mismatch.sha
printf '{"name":"bad","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{"":{"name":"bad","dependencies":{"fix-z":"9.9.9"}},"node_modules/fix-z":{"version":"9.9.9","resolved":"%sfix-z/-/fix-z-9.9.9.tgz","integrity":"sha512-AAAA"}}}\n' "$REG" >repos/bad/package-lock.json
printf '{"name":"bad","version":"1.0.0","dependencies":{"fix-z":"9.9.9"}}\n' >repos/bad/package.json
commit repos/bad missing >repos/missing.sha
printf '{"lockfileVersion": 3, "packages": {\n' >repos/bad/package-lock.json
commit repos/bad badjson >repos/badjson.sha
rm repos/bad/package-lock.json
mkapp repos/bad '{"fix-e":"^1.0.0"}' '{}'
commit repos/bad unreachable >repos/unreachable.sha
cp "$SRC/lsmods.js" .

# git-submodule: repos/super holds repos/lib at lib/ (a relative URL in .gitmodules).
git init -q -b main repos/lib
echo 'the library' >repos/lib/LIB.txt
commit repos/lib lib >repos/lib.sha
git init -q -b main repos/super
echo super >repos/super/README
(cd repos/super && git -c protocol.file.allow=always submodule add -q ../lib vendor/lib >/dev/null 2>&1)
commit repos/super super >repos/super.sha

# generic: files the fixture server serves under www/generic/, and repositories whose
# artifacts.lock.yaml lists them: repos/gen (one.bin by sha256 under its own name, two.txt
# by sha512 renamed), repos/gen at gencopy (one.bin's bytes at another URL and name: no
# download), genmis (a checksum nothing matches), gen404 (a file the server lacks),
# genyaml (bad YAML); repos/both: npm at the root and generic under assets/.
mkdir -p www/generic/sub
head -c 300000 /dev/urandom >www/generic/one.bin
printf 'two\n' >www/generic/two.txt
cp www/generic/one.bin www/generic/sub/one-again.bin
s256() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
s512() { echo "sha512:$(sha512sum "$1" | cut -d' ' -f1)"; }
lock() { # file: artifacts from stdin ("url checksum [filename]" lines)
	printf 'metadata:\n  version: "1.0"\nartifacts:\n' >"$1"
	while read -r url sum name; do
		printf '  - download_url: "%s%s"\n    checksum: "%s"\n' "$REG" "$url" "$sum" >>"$1"
		[ -z "$name" ] || printf '    filename: "%s"\n' "$name" >>"$1"
	done
}
git init -q -b main repos/gen
lock repos/gen/artifacts.lock.yaml <<EOF
generic/one.bin $(s256 www/generic/one.bin)
generic/two.txt $(s512 www/generic/two.txt) renamed.txt
EOF
commit repos/gen gen >repos/gen.sha
lock repos/gen/artifacts.lock.yaml <<EOF
generic/sub/one-again.bin $(s256 www/generic/one.bin) copy.bin
EOF
commit repos/gen gencopy >repos/gencopy.sha
printf 'not two\n' >notwo
lock repos/gen/artifacts.lock.yaml <<EOF
generic/two.txt $(s256 notwo)
EOF
commit repos/gen genmis >repos/genmis.sha
printf 'absent\n' >absent
lock repos/gen/artifacts.lock.yaml <<EOF
generic/missing.bin $(s256 absent)
EOF
commit repos/gen gen404 >repos/gen404.sha
printf 'metadata: {version: "1.0"}\nartifacts: [\n' >repos/gen/artifacts.lock.yaml
commit repos/gen genyaml >repos/genyaml.sha

git init -q -b main repos/both
mkapp repos/both '{"fix-d":"^1.0.0"}' '{}'
mkdir -p repos/both/assets
lock repos/both/assets/artifacts.lock.yaml <<EOF
generic/two.txt $(s256 www/generic/two.txt)
EOF
commit repos/both both >repos/both.sha

# Unsafe trees: repos/unsafe, one commit each: cfglink (.npmrc a symlink, to a file of the
# repository: a configuration file's target must be a regular file), cfgout (.npmrc ->
# ../../../../tmp/x, the reported case), cfgdir (npm-shrinkwrap.json a folder), outabs
# (passwd -> /etc/passwd), outchain (links each inside alone, whose chain climbs out:
# a/b/x -> l/l/../etc through a/b/l -> .. and a/l -> ..), both with safe links beside.
git init -q -b main repos/unsafe
mkapp repos/unsafe '{"fix-d":"^1.0.0"}' '{}'
echo hello >repos/unsafe/README
ln -s README repos/unsafe/.npmrc
commit repos/unsafe cfglink >repos/cfglink.sha
rm repos/unsafe/.npmrc
ln -s ../../../../tmp/x repos/unsafe/.npmrc
commit repos/unsafe cfgout >repos/cfgout.sha
rm repos/unsafe/.npmrc
mkdir repos/unsafe/npm-shrinkwrap.json
echo x >repos/unsafe/npm-shrinkwrap.json/x
commit repos/unsafe cfgdir >repos/cfgdir.sha
rm -r repos/unsafe/npm-shrinkwrap.json
ln -s README repos/unsafe/ok
mkdir -p repos/unsafe/a/b
ln -s ../../README repos/unsafe/a/b/up
ln -s /etc/passwd repos/unsafe/passwd
commit repos/unsafe outabs >repos/outabs.sha
ln -s .. repos/unsafe/a/l
ln -s .. repos/unsafe/a/b/l
ln -s l/l/../etc repos/unsafe/a/b/x
commit repos/unsafe outchain >repos/outchain.sha

# include-git-dir: repos/tagged, three commits on main (v1 annotated at the first, v2
# lightweight at the second; "side" tags a commit of another branch, not in main's
# history), with an executable, a symlink, a nested folder and a submodule (a gitlink in
# the index); the request is for the third commit.
git init -q -b main repos/tagged
echo one >repos/tagged/README
commit repos/tagged t1 >/dev/null
git -C repos/tagged tag -a -m 'version one' v1
echo two >repos/tagged/README
printf '#!/bin/sh\necho run\n' >repos/tagged/run.sh
chmod +x repos/tagged/run.sh
ln -s README repos/tagged/link
commit repos/tagged t2 >/dev/null
git -C repos/tagged tag v2
git -C repos/tagged checkout -q -b side
echo side >repos/tagged/SIDE
commit repos/tagged side >/dev/null
git -C repos/tagged tag -a -m 'a side tag' side
git -C repos/tagged checkout -q main
mkdir -p repos/tagged/src/deep
echo deep >repos/tagged/src/deep/f.txt
(cd repos/tagged && git -c protocol.file.allow=always submodule add -q ../lib vendor/lib >/dev/null 2>&1)
commit repos/tagged t3 >repos/tagged.sha

# A tree git refuses to check out: a folder ".GIT" holding a config that would run a
# command (made with plumbing, as git itself will not commit it).
git init -q -b main repos/dotgit
echo hi >repos/dotgit/README
commit repos/dotgit d0 >/dev/null
blob=$(printf '[core]\n\tfsmonitor = "touch pwned; false"\n' | git -C repos/dotgit hash-object -w --stdin)
sub=$(printf '100644 blob %s\tconfig\n' "$blob" | git -C repos/dotgit mktree)
readme=$(git -C repos/dotgit rev-parse HEAD:README)
root=$(printf '040000 tree %s\t.GIT\n100644 blob %s\tREADME\n' "$sub" "$readme" | git -C repos/dotgit mktree)
c=$(git -C repos/dotgit commit-tree -p HEAD -m evil "$root")
git -C repos/dotgit update-ref refs/heads/main "$c"
echo "$c" >repos/dotgit.sha
