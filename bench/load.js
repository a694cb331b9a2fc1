// load.js: the client of bench/load's mixed phase (node, one process, no dependencies).
//   node load.js mixed CONFIG_JSON
// CONFIG_JSON (a file) holds {url, token, seconds, pollers, uploaders, cookers, wait,
// pool, upload_files, upload_kb, medium_files, medium_kb, medium_every,
// pids: {api: [..], workers: [..]}}. It then:
//   1. uploads `pool` trees (untimed) and cooks two of them, so that the cookers have
//      trees and the pollers done jobs from the start;
//   2. for `seconds` runs at once:
//      - `uploaders` clients, each looping POST /directories of a new tar: a small tree
//        (`upload_files` files, `upload_kb` KiB in all), every `medium_every`-th upload a
//        medium one (`medium_files`, `medium_kb`); every file's bytes are new, so every
//        upload stores all of its files;
//      - `cookers` clients, each looping: take the newest uploaded tree not cooked yet
//        (CI uploads a tree, then asks for its bundle; none free: wait 50 ms), POST
//        /vault/directory/{id}, long-poll its status (?wait=) until done, GET the bundle
//        and check its size and sha256;
//      - `pollers` long-poll clients, each a client waiting for a cook: it picks a job not
//        done yet (one of the cookers' jobs in flight) and GETs …/status?wait=`wait` until
//        the job is done or failed, then picks another; one pick in five is a job already
//        done (a client checking an old bundle: answered at once, no wait). With no job in
//        flight it waits on a done one and sleeps 0.2 s.
//   3. stops starting requests, lets the uploads, cooks and downloads in flight finish,
//      cancels the long-polls in flight (not counted), and checks that every cook it asked
//      for ends done (long-polls for up to 120 s).
// Every request is counted; a failure is a connection error, a timeout (no answer within
// wait + 30 s) or an unexpected status (any non-2xx: none is expected here). Latencies per
// kind. Samples the processes' VmRSS every second and their CPU time, and the client's own.
// Prints a JSON summary on stdout; progress on stderr.
'use strict';
const fs = require('fs'), http = require('http'), crypto = require('crypto');

const [cmd, cfgFile] = process.argv.slice(2);
if (cmd !== 'mixed' || !cfgFile) {
	console.error('usage: node load.js mixed CONFIG_JSON');
	process.exit(2);
}
const C = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
const base = new URL(C.url);
const agent = new http.Agent({keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096});
const say = (m) => process.stderr.write(`bench/load: ${m}\n`);

// --- trees -----------------------------------------------------------------------------

// 1 MiB of text-like bytes; each file is a unique first line plus a slice of it, so every
// file is a new blob at the cost of a copy.
const filler = Buffer.from(crypto.randomBytes(786432).toString('base64').replace(/(.{76})/g, '$1\n'));

function tarHeader(name, size) {
	const h = Buffer.alloc(512);
	const put = (off, len, s) => h.write(s, off, len, 'latin1');
	const oct = (off, len, n) => put(off, len, n.toString(8).padStart(len - 1, '0') + '\0');
	put(0, 100, name);
	oct(100, 8, 0o644);
	oct(108, 8, 0);
	oct(116, 8, 0);
	oct(124, 12, size);
	oct(136, 12, 315532800);
	put(148, 8, '        ');
	put(156, 1, '0');
	put(257, 6, 'ustar\0');
	put(263, 2, '00');
	let sum = 0;
	for (const b of h)
		sum += b;
	put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
	return h;
}

// A tar of `files` files in a few folders, `kb` KiB in all, every file's bytes new.
function makeTar(files, kb) {
	const tag = crypto.randomBytes(12).toString('hex');
	const per = Math.max(64, Math.floor((kb * 1024) / files));
	const parts = [];
	for (let i = 0; i < files; i++) {
		const head = Buffer.from(`// ${tag} file ${i}\n`);
		const n = Math.max(0, per - head.length);
		const off = Math.floor(Math.random() * (filler.length - n));
		const body = Buffer.concat([head, filler.subarray(off, off + n)]);
		parts.push(tarHeader(`tree/d${i % 7}/s${i % 3}/f${i}.txt`, body.length), body);
		const pad = (512 - (body.length % 512)) % 512;
		if (pad)
			parts.push(Buffer.alloc(pad));
	}
	parts.push(Buffer.alloc(1024));
	return Buffer.concat(parts);
}

// --- HTTP and the figures --------------------------------------------------------------

const kinds = {}; // kind -> {n, fail, lat: [ms], codes: {code: n}, errors: {msg: n}}
function kind(k) {
	return kinds[k] || (kinds[k] = {n: 0, fail: 0, lat: [], codes: {}, errors: {}});
}
let stopping = false, inflight = 0;
const polls = new Set(); // long-polls in flight, cancelled at the end

// One request; resolves {status, body (Buffer), ms} or {error}. Counts it under kind.
function request(k, method, path, {body, headers = {}, timeout = 60000, poll = false, sha} = {}) {
	return new Promise((resolve) => {
		const t0 = process.hrtime.bigint();
		const hash = sha ? crypto.createHash('sha256') : null;
		let done = false, size = 0;
		const chunks = [];
		const h = {...headers};
		if (body)
			h['Content-Length'] = body.length;
		const req = http.request({host: base.hostname, port: base.port, method, path, headers: h, agent});
		inflight++;
		const finish = (r) => {
			if (done)
				return;
			done = true;
			inflight--;
			polls.delete(req);
			const ms = Number(process.hrtime.bigint() - t0) / 1e6;
			if (r.cancelled)
				return resolve(r);
			const s = kind(k);
			s.n++;
			if (r.error) {
				s.fail++;
				s.errors[r.error] = (s.errors[r.error] || 0) + 1;
			} else {
				s.codes[r.status] = (s.codes[r.status] || 0) + 1;
				if (r.status < 200 || r.status > 299) {
					s.fail++;
					const m = `HTTP ${r.status} ${String(r.body).slice(0, 120)}`;
					s.errors[m] = (s.errors[m] || 0) + 1;
				}
				s.lat.push(ms);
			}
			resolve({...r, ms});
		};
		if (poll)
			polls.add(req);
		req.cancel = () => {
			finish({cancelled: true});
			req.destroy();
		};
		req.setTimeout(timeout, () => {
			finish({error: `no answer within ${timeout / 1000} s`});
			req.destroy();
		});
		req.on('error', (e) => finish({error: e.code || e.message}));
		req.on('response', (res) => {
			res.on('data', (d) => {
				size += d.length;
				if (hash)
					hash.update(d);
				else
					chunks.push(d);
			});
			res.on('end', () => finish({status: res.statusCode, size,
				body: hash ? '' : Buffer.concat(chunks), sha256: hash ? hash.digest('hex') : null}));
			res.on('error', (e) => finish({error: e.code || e.message}));
		});
		req.end(body);
	});
}

const auth = {Authorization: `Bearer ${C.token}`};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const json = (r) => {
	try {
		return JSON.parse(r.body);
	} catch (e) {
		return null;
	}
};

async function upload(k, files, kb) {
	const r = await request(k, 'POST', '/directories', {body: makeTar(files, kb),
		headers: {...auth, 'Content-Type': 'application/x-tar'}, timeout: 120000});
	const j = r.error ? null : json(r);
	return j && r.status === 201 ? j.id : null;
}

// --- the clients ------------------------------------------------------------------------

const pool = [];          // uploaded directory ids not cooked yet (newest last)
const pending = new Map(); // job path -> true while a cooker waits on it
const doneJobs = [];       // status paths of jobs seen done
const asked = new Set();   // every status path a cooker asked for
let cooksDone = 0, cooksFailed = 0, downloadsBad = 0;
const cookFailures = {};
const pollOutcome = {woken: 0, timed_out: 0, done_at_once: 0, failed: 0, cancelled: 0};

function treeSize(i) {
	return i % C.medium_every === C.medium_every - 1 ? [C.medium_files, C.medium_kb] : [C.upload_files, C.upload_kb];
}
let treeNo = 0, cookerIdle = 0;

async function uploader() {
	while (!stopping) {
		const id = await upload('upload', ...treeSize(treeNo++));
		if (id) {
			pool.push(id);
			if (pool.length > 1000)
				pool.shift();
		}
	}
}

// Asks for a cook of id, waits for it, downloads it. Returns true when all went well.
async function cookOne(id, k) {
	const p = `/vault/directory/${id}`;
	const r = await request(k + 'post', 'POST', p, {headers: auth});
	if (r.error || (r.status !== 201 && r.status !== 200))
		return false;
	asked.add(p + '/status');
	pending.set(p + '/status', true);
	let st = json(r);
	const t0 = Date.now();
	while (st && (st.status === 'new' || st.status === 'pending')) {
		if (stopping && k === 'cook_')
			break;
		const w = await request(k + 'wait', 'GET', `${p}/status?wait=${C.wait}`, {timeout: (C.wait + 30) * 1000});
		if (w.error || w.status !== 200) {
			st = null;
			break;
		}
		st = json(w);
	}
	pending.delete(p + '/status');
	if (!st || (st.status !== 'done' && st.status !== 'failed'))
		return false;
	kind(k + 'to_done').lat.push(Date.now() - t0);
	kind(k + 'to_done').n++;
	if (st.status === 'failed') {
		cooksFailed++;
		const m = String(st.progress_message).slice(0, 120);
		cookFailures[m] = (cookFailures[m] || 0) + 1;
		return false;
	}
	cooksDone++;
	doneJobs.push(p + '/status');
	const d = await request(k + 'download', 'GET', p, {sha: true, timeout: 120000});
	if (d.error || d.status !== 200)
		return false;
	if (!st.bundle || d.size !== st.bundle.size || d.sha256 !== st.bundle.sha256) {
		downloadsBad++;
		return false;
	}
	return true;
}

async function cooker() {
	while (!stopping) {
		const id = pool.pop();
		if (!id) {
			cookerIdle++;
			await sleep(50);
			continue;
		}
		await cookOne(id, 'cook_');
	}
}

function pick(arr) {
	return arr[Math.floor(Math.random() * arr.length)];
}

async function poller() {
	await sleep(Math.random() * 1000); // spread the start
	while (!stopping) {
		const live = [...pending.keys()];
		let target, wait = C.wait;
		if (live.length && Math.random() >= 0.2) {
			target = pick(live);
		} else {
			target = pick(doneJobs);
			wait = 0;
		}
		// A client waiting for its cook: long-poll until it is done.
		for (;;) {
			const before = Date.now();
			const r = await request(wait ? 'poll_wait' : 'poll_done', 'GET', `${target}?wait=${wait}`,
				{timeout: (C.wait + 30) * 1000, poll: true});
			if (r.cancelled) {
				pollOutcome.cancelled++;
				return;
			}
			if (r.error || r.status !== 200) {
				pollOutcome.failed++;
				await sleep(200);
				break;
			}
			const st = json(r);
			if (!st || st.status === 'done' || st.status === 'failed') {
				if (wait)
					pollOutcome.woken++;
				else
					pollOutcome.done_at_once++;
				if (!live.length)
					await sleep(200);
				break;
			}
			if (Date.now() - before >= wait * 1000 - 50)
				pollOutcome.timed_out++;
			else
				pollOutcome.woken++;
			if (stopping)
				return;
		}
	}
}

// --- processes ---------------------------------------------------------------------------

function procStat(pid) {
	try {
		const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
		const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
		const kb = (k) => +((s.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [0, 0])[1]);
		return {rss: kb('VmRSS'), hwm: kb('VmHWM'), cpu: (+f[11] + +f[12]) / 100,
			threads: kb('Threads'), fds: fs.readdirSync(`/proc/${pid}/fd`).length};
	} catch (e) {
		return null;
	}
}

const procs = [...C.pids.api.map((p, i) => [C.pids.api.length > 1 ? `api-${i + 1}` : 'api', p]), ...C.pids.workers.map((p, i) => [`worker-${i + 1}`, p])];
const mem = {}; // name -> {start, peak, end (KiB), cpu0, cpu1, fds_peak}
function sample(which) {
	for (const [name, pid] of procs) {
		const s = procStat(pid);
		if (!s)
			continue;
		const m = mem[name] || (mem[name] = {start_kb: s.rss, peak_rss_kb: s.rss, cpu0: s.cpu, fds_peak: s.fds});
		m.peak_rss_kb = Math.max(m.peak_rss_kb, s.rss);
		m.fds_peak = Math.max(m.fds_peak, s.fds);
		m.end_kb = s.rss;
		m.hwm_kb = s.hwm;
		m.cpu_s = +(s.cpu - m.cpu0).toFixed(2);
		if (which === 'mid')
			m.mid_kb = s.rss;
	}
}

function pct(a, p) {
	if (!a.length)
		return null;
	const s = Float64Array.from(a).sort();
	return +s[Math.min(s.length - 1, Math.floor(s.length * p))].toFixed(1);
}

// --- main ------------------------------------------------------------------------------

async function main() {
	const tp = Date.now();
	// 1. The pool of trees for the cooks, and two done jobs.
	let next = 0;
	const ids = new Array(C.pool);
	await Promise.all(Array.from({length: 4}, async () => {
		while (next < C.pool) {
			const i = next++;
			const [f, kb] = treeSize(treeNo++);
			ids[i] = await upload('prepare', f, kb);
			if (!ids[i])
				throw new Error('preparing the pool: an upload failed: ' + JSON.stringify(kinds.prepare.errors));
		}
	}));
	pool.push(...ids);
	for (let i = 0; i < 2; i++)
		if (!(await cookOne(pool.shift(), 'prepare_')))
			throw new Error('preparing: a first cook failed');
	say(`prepared ${C.pool} trees in ${((Date.now() - tp) / 1000).toFixed(1)} s; running ${C.pollers} pollers, ${C.uploaders} uploaders, ${C.cookers} cookers for ${C.seconds} s`);
	delete kinds.prepare;
	for (const k of Object.keys(kinds))
		if (k.startsWith('prepare_'))
			delete kinds[k];

	// 2. The load.
	sample('start');
	const cpu0 = process.cpuUsage();
	const t0 = Date.now();
	const sampler = setInterval(() => sample(), 1000);
	const ticker = setInterval(() => {
		const n = Object.values(kinds).reduce((a, k) => a + k.n, 0);
		const f = Object.values(kinds).reduce((a, k) => a + k.fail, 0);
		say(`${((Date.now() - t0) / 1000).toFixed(0)} s: ${n} requests, ${f} failed, ${inflight} in flight, ${cooksDone} cooks done, ${pending.size} cooks pending, api rss ${Object.keys(mem).filter((k) => k.startsWith('api')).map((k) => (mem[k].end_kb / 1024).toFixed(1)).join('/') || '?'} MiB`);
	}, 10000);
	const running = [];
	for (let i = 0; i < C.uploaders; i++)
		running.push(uploader());
	for (let i = 0; i < C.cookers; i++)
		running.push(cooker());
	const pollers = [];
	for (let i = 0; i < C.pollers; i++)
		pollers.push(poller());
	let maxPolls = 0;
	const pollCount = setInterval(() => {
		maxPolls = Math.max(maxPolls, polls.size);
	}, 250);
	await sleep(C.seconds * 1000);
	sample('mid');
	stopping = true;
	const tStop = Date.now();
	clearInterval(pollCount);
	for (const r of [...polls])
		r.cancel();
	await Promise.all(pollers);
	await Promise.all(running);
	const drain = Date.now() - tStop;
	const wall = (Date.now() - t0) / 1000;
	const cpu = process.cpuUsage(cpu0);
	clearInterval(sampler);
	clearInterval(ticker);
	sample();

	// 3. Every cook asked for must end done.
	let unfinished = 0;
	const check = {};
	const tc = Date.now();
	for (const p of asked) {
		for (;;) {
			const r = await request('final_check', 'GET', `${p}?wait=${C.wait}`, {timeout: (C.wait + 30) * 1000});
			const st = r.error ? null : json(r);
			const s = st ? st.status : r.error || `HTTP ${r.status}`;
			if (st && (s === 'new' || s === 'pending') && Date.now() - tc < 120000)
				continue;
			check[s] = (check[s] || 0) + 1;
			if (s !== 'done')
				unfinished++;
			break;
		}
	}

	const out = {seconds: C.seconds, wall_s: +wall.toFixed(1), drain_s: +(drain / 1000).toFixed(1),
		max_polls_in_flight: maxPolls, poll_outcomes: pollOutcome,
		done_status: doneJobs[0], cooks_done: cooksDone, cooker_idle_waits: cookerIdle, cooks_failed: cooksFailed, cook_failures: cookFailures,
		downloads_bad: downloadsBad, cooks_asked: asked.size, final_check: check, cooks_not_done: unfinished,
		client_cpu_s: +((cpu.user + cpu.system) / 1e6).toFixed(2), kinds: {}, processes: mem};
	let total = 0, failed = 0;
	for (const [k, s] of Object.entries(kinds)) {
		out.kinds[k] = {n: s.n, failed: s.fail, p50_ms: pct(s.lat, 0.5), p99_ms: pct(s.lat, 0.99),
			max_ms: s.lat.length ? +s.lat.reduce((a, b) => (a > b ? a : b)).toFixed(1) : null, codes: s.codes, errors: s.errors};
		if (k !== 'cook_to_done') {
			total += s.n;
			failed += s.fail;
		}
	}
	out.requests = total;
	out.failed = failed;
	process.stdout.write(JSON.stringify(out) + '\n');
	agent.destroy();
}

main().catch((e) => {
	console.error('bench/load: ' + (e.stack || e));
	process.exit(1);
});
