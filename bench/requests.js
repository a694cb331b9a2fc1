// requests.js: the node side of bench/requests, three commands:
//   node requests.js registry WWW PORT LOG [DELAY_MS]
//       a fixture npm registry (as tests/data/requests/registry.js: packuments at /<name>,
//       scoped names as /@scope%2fname too, tarballs as plain files under WWW) that appends
//       "<status> <bytes sent> <path>" to LOG for every GET; writes LOG.ready once listening.
//       DELAY_MS (default 0) holds every answer that long first: a remote registry's
//       round trip, without which downloads from loopback cost next to nothing.
//   node requests.js fixture DIR REGISTRY_URL COUNT
//       COUNT npm packages made deterministically (no npm run): DIR/www/<name>/-/<x>.tgz
//       (tarballs of 5-40 KiB, written here as ustar + gzip the way `npm pack` lays them
//       out), their packuments, and DIR/app/{package.json,package-lock.json,index.js}: an
//       application whose lockfile (lockfileVersion 3) holds all COUNT packages, nested
//       where two versions of a name are needed. Prints "<count> <total tarball bytes>".
//   node requests.js fire API_URL TOKEN REPO_URL SHAS_FILE TIMEOUT_S
//       one POST /api/v1/requests per commit in SHAS_FILE, all at once, then GET
//       /api/v1/requests/{id} of every unfinished one, a sweep every 0.2 s, until none is in_progress
//       (or TIMEOUT_S); prints a JSON summary (wall time, per-request times, failures).
'use strict';
const fs = require('fs'), path = require('path'), http = require('http'), zlib = require('zlib');
const crypto = require('crypto');

const [cmd, ...args] = process.argv.slice(2);

function registry(root, port, log, delay) {
	const R = path.resolve(root);
	const wait = Math.max(0, +delay || 0);
	http.createServer((req, res) => setTimeout(() => {
		const p = decodeURIComponent(req.url.split('?')[0]);
		const done = (status, type, data) => {
			res.writeHead(status, {'Content-Type': type, 'Content-Length': data.length});
			res.end(data);
			fs.appendFileSync(log, `${status} ${data.length} ${p}\n`);
		};
		let f = path.join(R, p);
		if (!f.startsWith(R))
			return done(403, 'application/json', Buffer.from('{"error":"forbidden"}'));
		if (fs.existsSync(f) && fs.statSync(f).isDirectory())
			f = path.join(f, 'index.json');
		fs.readFile(f, (err, data) => {
			if (err)
				return done(404, 'application/json', Buffer.from('{"error":"not found"}'));
			done(200, f.endsWith('.json') ? 'application/json' : 'application/octet-stream', data);
		});
	}, wait)).listen(+port, '127.0.0.1', () => fs.writeFileSync(log + '.ready', ''));
}

// --- fixture ---------------------------------------------------------------------------

// xorshift32 seeded from a string: the same bytes on every run.
function prng(seed) {
	let x = crypto.createHash('sha256').update(seed).digest().readUInt32LE(0) || 1;
	return () => {
		x ^= x << 13;
		x >>>= 0;
		x ^= x >>> 17;
		x ^= x << 5;
		x >>>= 0;
		return x;
	};
}

// One ustar header + body, padded to 512.
function tarEntry(name, body) {
	const h = Buffer.alloc(512);
	const put = (off, len, s) => h.write(s, off, len, 'latin1');
	const oct = (off, len, n) => put(off, len, n.toString(8).padStart(len - 1, '0') + '\0');
	put(0, 100, name);
	oct(100, 8, 0o644);
	oct(108, 8, 0);
	oct(116, 8, 0);
	oct(124, 12, body.length);
	oct(136, 12, 499162500); // npm pack's fixed mtime (1985-10-26T08:15:00Z)
	put(148, 8, '        ');
	put(156, 1, '0');
	put(257, 6, 'ustar\0');
	put(263, 2, '00');
	let sum = 0;
	for (const b of h)
		sum += b;
	put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
	const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
	return Buffer.concat([h, body, pad]);
}

function tgz(files) {
	const parts = files.map(([n, s]) => tarEntry('package/' + n, Buffer.from(s)));
	parts.push(Buffer.alloc(1024));
	return zlib.gzipSync(Buffer.concat(parts), {level: 9});
}

// Some JavaScript of about n bytes whose gzip is about n * 0.74 bytes: words (which
// compress) and base64 strings (which do not), as minified bundles mix them.
function jsBody(rnd, n) {
	const words = ['function', 'return', 'const', 'value', 'options', 'this', 'length',
		'undefined', 'prototype', 'callback', 'result', 'index', 'typeof', 'object'];
	const out = [];
	let len = 0;
	while (len < n) {
		let line;
		if (rnd() % 4 === 0) {
			const w = [];
			for (let i = 0; i < 10; i++)
				w.push(words[rnd() % words.length]);
			line = '// ' + w.join(' ');
		} else {
			const b = Buffer.alloc(57);
			for (let i = 0; i < 57; i++)
				b[i] = rnd() & 255;
			line = `exports.k${rnd() % 100000} = "${b.toString('base64')}";`;
		}
		out.push(line);
		len += line.length + 1;
	}
	return out.join('\n') + '\n';
}

function fixture(dir, reg, count) {
	if (!reg.endsWith('/'))
		reg += '/';
	const www = path.join(dir, 'www'), app = path.join(dir, 'app');
	fs.mkdirSync(www, {recursive: true});
	fs.mkdirSync(app, {recursive: true});
	// Packages: count - nv names at version 1.0.0 (every 10th scoped), plus nv of the first
	// names again at 2.0.0, each needed by one other package (nested in the lockfile).
	const nv = Math.floor(count / 10);
	const nnames = count - nv;
	const nroot = Math.min(40, nnames);
	const name = (i) => (i % 10 === 5 ? '@bench/pkg-' : 'bench-pkg-') + String(i).padStart(3, '0');
	const pkgs = []; // {name, version, deps: {name: range}, lockPath}
	for (let i = 0; i < nnames; i++)
		pkgs.push({name: name(i), version: '1.0.0', deps: {}, lockPath: 'node_modules/' + name(i)});
	// The root needs the first nroot; package i < nroot needs i + nroot, i + 2 nroot, ...
	for (let i = 0; i < nroot; i++)
		for (let j = i + nroot; j < nnames; j += nroot)
			pkgs[i].deps[name(j)] = '^1.0.0';
	// Package nroot + k needs name(k)@^2.0.0, nested under it.
	for (let k = 0; k < nv; k++) {
		const owner = pkgs[(nroot + k) % nnames];
		owner.deps[name(k)] = '^2.0.0';
		pkgs.push({name: name(k), version: '2.0.0', deps: {}, lockPath: owner.lockPath + '/node_modules/' + name(k)});
	}
	const docs = {};
	const lockPkgs = {};
	const rootDeps = {};
	for (let i = 0; i < nroot; i++)
		rootDeps[name(i)] = '^1.0.0';
	lockPkgs[''] = {name: 'bench-app', version: '1.0.0', dependencies: rootDeps};
	let total = 0;
	for (const p of pkgs) {
		const rnd = prng(p.name + '@' + p.version);
		const target = 5120 + (rnd() % (45 * 1024)); // 5-50 KiB of gzip
		const manifest = {name: p.name, version: p.version, description: 'bench fixture ' + p.name,
			main: 'index.js', license: 'MIT', dependencies: p.deps};
		const files = [
			['package.json', JSON.stringify(manifest, null, 2) + '\n'],
			['README.md', `# ${p.name}\n\nA package of the bitsvault benchmark (bench/requests).\n`],
			['index.js', Object.keys(p.deps).map((d) => `require(${JSON.stringify(d)});`).join('\n') +
				`\nmodule.exports = require("./lib/data.js");\n`],
			['lib/data.js', jsBody(rnd, Math.floor(target / 0.74))],
		];
		const data = tgz(files);
		total += data.length;
		const short = p.name.replace(/^@[^/]*\//, '');
		const rel = `${p.name}/-/${short}-${p.version}.tgz`;
		fs.mkdirSync(path.join(www, p.name, '-'), {recursive: true});
		fs.writeFileSync(path.join(www, rel), data);
		const integrity = 'sha512-' + crypto.createHash('sha512').update(data).digest('base64');
		const shasum = crypto.createHash('sha1').update(data).digest('hex');
		docs[p.name] = docs[p.name] || {name: p.name, 'dist-tags': {}, versions: {}};
		docs[p.name].versions[p.version] = Object.assign({}, manifest,
			{dist: {integrity, shasum, tarball: reg + rel}});
		docs[p.name]['dist-tags'].latest = p.version;
		const e = {version: p.version, resolved: reg + rel, integrity, license: 'MIT'};
		if (Object.keys(p.deps).length)
			e.dependencies = p.deps;
		lockPkgs[p.lockPath] = e;
	}
	for (const n in docs)
		fs.writeFileSync(path.join(www, n, 'index.json'), JSON.stringify(docs[n]));
	// npm writes the packages sorted by path.
	const sorted = {};
	for (const k of Object.keys(lockPkgs).sort())
		sorted[k] = lockPkgs[k];
	const lock = {name: 'bench-app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: sorted};
	fs.writeFileSync(path.join(app, 'package-lock.json'), JSON.stringify(lock, null, 2) + '\n');
	fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(
		{name: 'bench-app', version: '1.0.0', private: true, main: 'index.js', dependencies: rootDeps}, null, 2) + '\n');
	fs.writeFileSync(path.join(app, 'index.js'),
		Object.keys(rootDeps).map((d) => `require(${JSON.stringify(d)});`).join('\n') + '\n');
	console.log(`${pkgs.length} ${total}`);
}

// --- fire ------------------------------------------------------------------------------

function call(method, url, token, body) {
	return new Promise((resolve) => {
		const headers = {'Content-Type': 'application/json'};
		if (token)
			headers.Authorization = 'Bearer ' + token;
		const t0 = Date.now();
		const req = http.request(url, {method, headers, agent: false}, (res) => {
			const chunks = [];
			res.on('data', (c) => chunks.push(c));
			res.on('end', () => {
				const text = Buffer.concat(chunks).toString();
				let json = null;
				try {
					json = JSON.parse(text);
				} catch (e) {
					// left null: reported as an error
				}
				resolve({status: res.statusCode, json, text, ms: Date.now() - t0});
			});
		});
		req.on('error', (e) => resolve({status: 0, json: null, text: String(e), ms: Date.now() - t0}));
		if (body)
			req.write(body);
		req.end();
	});
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (a, q) => {
	if (!a.length)
		return null;
	const s = [...a].sort((x, y) => x - y);
	return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function fire(api, token, repo, shasFile, timeoutS) {
	const shas = fs.readFileSync(shasFile, 'utf8').trim().split('\n');
	const t0 = Date.now();
	const posts = await Promise.all(shas.map((ref) => call('POST', api + '/api/v1/requests', token,
		JSON.stringify({repo, ref, pkg_managers: ['npm']}))));
	const postErrors = posts.filter((r) => r.status !== 201).map((r) => `${r.status} ${r.text.slice(0, 200)}`);
	const pending = new Map(); // id -> {posted}
	for (const r of posts)
		if (r.status === 201)
			pending.set(r.json.id, {posted: t0 + r.ms});
	const done = [];
	const deadline = t0 + timeoutS * 1000;
	let pollErrors = 0, polls = 0;
	while (pending.size && Date.now() < deadline) {
		await sleep(200);
		for (const [id, info] of [...pending]) {
			const r = await call('GET', `${api}/api/v1/requests/${id}`);
			polls++;
			if (r.status !== 200 || !r.json) {
				pollErrors++;
				continue;
			}
			if (r.json.state === 'in_progress')
				continue;
			pending.delete(id);
			done.push({id, state: r.json.state, reason: r.json.state_reason, seen: Date.now(),
				posted: info.posted, created: r.json.created, updated: r.json.updated});
		}
	}
	const t1 = done.length ? Math.max(...done.map((d) => d.seen)) : Date.now();
	const ok = done.filter((d) => d.state === 'complete');
	const lat = ok.map((d) => d.seen - t0);
	// The server's own span: first created to last complete (its clock, no polling delay).
	const ts = (s) => (s ? Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : s + 'Z') : NaN);
	const created = done.map((d) => ts(d.created)).filter((x) => !isNaN(x));
	const updated = ok.map((d) => ts(d.updated)).filter((x) => !isNaN(x));
	const reasons = {};
	for (const d of done.filter((x) => x.state !== 'complete'))
		reasons[`${d.state}: ${d.reason}`] = (reasons[`${d.state}: ${d.reason}`] || 0) + 1;
	console.log(JSON.stringify({
		posted: shas.length, accepted: posts.length - postErrors.length, post_errors: postErrors.slice(0, 5),
		post_ms_max: Math.max(...posts.map((r) => r.ms)), post_ms_p50: pct(posts.map((r) => r.ms), 0.5),
		complete: ok.length, not_complete: done.length - ok.length, timed_out: pending.size, reasons,
		wall_ms: t1 - t0,
		server_span_ms: created.length && updated.length ? Math.max(...updated) - Math.min(...created) : null,
		first_ms: pct(lat, 0), p50_ms: pct(lat, 0.5), p90_ms: pct(lat, 0.9), max_ms: pct(lat, 1),
		polls, poll_errors: pollErrors, ids: done.map((d) => d.id).sort((a, b) => a - b),
	}));
}

if (cmd === 'registry')
	registry(...args);
else if (cmd === 'fixture')
	fixture(args[0], args[1], +args[2]);
else if (cmd === 'fire')
	fire(args[0], args[1], args[2], args[3], +args[4]).catch((e) => {
		console.error(e);
		process.exit(1);
	});
else {
	console.error('usage: node requests.js registry|fixture|fire ...');
	process.exit(2);
}
