// registry.js: the fixture npm registry of tests/itest_requests.c: packuments at /<name>
// (www/<name>/index.json, scoped names as /@scope%2fname too) and tarballs as plain files
// under www/. Every GET path is appended to the log, for the tests to count downloads.
// usage: node registry.js WWW PORT LOG   (writes LOG.ready once listening)
const http = require('http'), fs = require('fs'), path = require('path');
const [root, port, log] = process.argv.slice(2);
const R = path.resolve(root);
http.createServer((req, res) => {
	const p = decodeURIComponent(req.url.split('?')[0]);
	fs.appendFileSync(log, p + '\n');
	let f = path.join(R, p);
	if (!f.startsWith(R)) {
		res.writeHead(403);
		return res.end();
	}
	if (fs.existsSync(f) && fs.statSync(f).isDirectory())
		f = path.join(f, 'index.json');
	fs.readFile(f, (err, data) => {
		if (err) {
			res.writeHead(404, {'Content-Type': 'application/json'});
			return res.end('{"error":"not found"}');
		}
		res.writeHead(200, {'Content-Type': f.endsWith('.json') ? 'application/json' : 'application/octet-stream'});
		res.end(data);
	});
}).listen(+port, '127.0.0.1', () => fs.writeFileSync(log + '.ready', ''));
