// lsmods.js: what an npm install put in node_modules, one "path name@version" a line,
// sorted, so two installs can be compared (tests/itest_requests.c).
const fs = require('fs'), path = require('path');
const out = [];
function walk(dir) {
	if (!fs.existsSync(dir))
		return;
	for (const n of fs.readdirSync(dir).sort()) {
		if (n.startsWith('.'))
			continue;
		const f = path.join(dir, n);
		if (n.startsWith('@')) {
			walk(f);
			continue;
		}
		const j = JSON.parse(fs.readFileSync(path.join(f, 'package.json'), 'utf8'));
		out.push(f + ' ' + j.name + '@' + j.version);
		walk(path.join(f, 'node_modules'));
	}
}
walk('node_modules');
console.log(out.sort().join('\n'));
