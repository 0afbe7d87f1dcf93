// The browser test's bridge (tests/browser/bridge.cjs), unchanged, with guacamole-lite
// told which unencrypted query settings the database protocols accept: guacamole-lite
// only knows rdp/vnc/ssh/telnet and fails on any other protocol's connection.
//
// Usage: GUACR_BRIDGE_KEY=<32 bytes> node bridge_db.cjs <listen-port> <guacr-port>
'use strict';

const path = require('path');
const { createRequire } = require('module');

const bridge = path.join(__dirname, '..', 'browser', 'bridge.cjs');
const requireThere = createRequire(bridge);
const resolved = requireThere.resolve('guacamole-lite');
const GuacamoleLite = requireThere('guacamole-lite');

const SETTINGS = [
    'width', 'height', 'dpi', 'audio', 'video', 'image', 'timezone',
    'font-name', 'font-size', 'color-scheme',
];

class DatabaseAwareLite extends GuacamoleLite {
    constructor(wsOptions, guacdOptions, clientOptions, callbacks) {
        const options = Object.assign({}, clientOptions);
        options.allowedUnencryptedConnectionSettings = Object.assign(
            { mysql: SETTINGS, postgresql: SETTINGS },
            options.allowedUnencryptedConnectionSettings || {},
        );
        super(wsOptions, guacdOptions, options, callbacks);
    }
}

require.cache[resolved].exports = DatabaseAwareLite;
require(bridge);
