// WebSocket bridge for the browser test: guacamole-lite in front of guacr, plus the
// static page and the guacamole-common-js ESM build, all on one loopback port (so the
// page opens its WebSocket to its own origin).
//
// Usage: node bridge.cjs <listen-port> <guacr-port>
// The 32-byte AES-256-CBC key for guacamole-lite's connection tokens comes from the
// GUACR_BRIDGE_KEY environment variable (never from the command line: `ps` shows that).
// Prints "bridge listening on <port>" once it accepts connections.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const GuacamoleLite = require('guacamole-lite');

const [listenPort, guacrPort] = process.argv.slice(2).map(Number);
const key = process.env.GUACR_BRIDGE_KEY || '';
if (!listenPort || !guacrPort || Buffer.byteLength(key) !== 32) {
    console.error('usage: GUACR_BRIDGE_KEY=<32 bytes> node bridge.cjs <listen-port> <guacr-port>');
    process.exit(2);
}

// The package's "exports" only lists ".", so derive the ESM file's path from the
// resolved CommonJS entry point instead of resolving the subpath.
const cjsEntry = require.resolve('guacamole-common-js');
const esmBuild = path.join(path.dirname(cjsEntry), '..', 'esm', 'guacamole-common.js');

const FILES = {
    '/': [path.join(__dirname, 'page.html'), 'text/html; charset=utf-8'],
    '/guacamole-common.js': [esmBuild, 'text/javascript; charset=utf-8'],
};

const httpServer = http.createServer((req, res) => {
    const entry = FILES[new URL(req.url, 'http://x').pathname];
    if (!entry) {
        res.writeHead(404).end();
        return;
    }
    res.writeHead(200, { 'Content-Type': entry[1], 'Cache-Control': 'no-store' });
    fs.createReadStream(entry[0]).pipe(res);
});

// Log level ERRORS: its verbose/debug levels would print decrypted settings (passwords)
// and every instruction.
new GuacamoleLite(
    { server: httpServer },
    { host: '127.0.0.1', port: guacrPort },
    { crypt: { cypher: 'AES-256-CBC', key }, log: { level: 'ERRORS' } },
);

// guacamole-lite's own SIGTERM handler only closes the WebSocket server; the HTTP
// server would keep the process alive.
for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => process.exit(0));
}

httpServer.listen(listenPort, '127.0.0.1', () => {
    console.log(`bridge listening on ${httpServer.address().port}`);
});
