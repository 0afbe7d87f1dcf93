// Playwright driver for the browser test: a thin remote control for headless Chromium.
//
// Usage: node driver.mjs <page-url> <profile-dir>
// Reads one JSON command per line on stdin, answers one JSON line on stdout each
// ({"ok": true, ...} or {"ok": false, "error": "..."}), so all test logic (tokens,
// timing, pixel comparison) stays in the Python test. Commands:
//   {"cmd": "reload"}                                    a fresh page (for the next test)
//   {"cmd": "connect", "query": "token=...&width=..."}  open the page's Guacamole client
//                                      (optional "tunnel": a WebSocket URL, else the page's ?tunnel=)
//   {"cmd": "wait_connected", "timeout": ms}             until the client state is CONNECTED
//   {"cmd": "type", "text": "..."} / {"cmd": "press", "key": "Enter"}   real DOM key events
//   {"cmd": "snapshot", "path": "..."}  write the flattened display as PNG ({"empty": true}
//                                      while nothing is drawn yet)
//   {"cmd": "status"}                                    states, errors, console messages
//   {"cmd": "disconnect"} / {"cmd": "quit"}
//
// Uses Debian's /usr/bin/chromium (playwright-core never downloads a browser).
import fs from 'node:fs/promises';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const [url, profileDir] = process.argv.slice(2);
if (!url || !profileDir) {
    console.error('usage: node driver.mjs <page-url> <profile-dir>');
    process.exit(2);
}

const CLIENT_CONNECTED = 3;
const console_ = [];

function reply(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

// Playwright refuses --user-data-dir in args: a persistent context takes the profile.
const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: process.env.GUACR_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-dev-shm-usage', '--disable-component-update', '--disable-sync',
        '--no-first-run',
    ],
    viewport: { width: 1100, height: 700 },
    ignoreHTTPSErrors: true, // wss tests: guacr's throw-away self-signed certificate
});
const page = context.pages()[0] ?? (await context.newPage());
page.on('console', (msg) => {
    console_.push({ type: msg.type(), text: msg.text() });
});
page.on('pageerror', (err) => {
    console_.push({ type: 'pageerror', text: String(err && err.stack ? err.stack : err) });
});
async function load() {
    console_.length = 0;
    await page.goto(url);
    await page.waitForFunction(() => window.guacrTest !== undefined, null, { timeout: 10000 });
}
await load();

const commands = {
    async reload() {
        await load();
        return {};
    },
    async connect({ query, tunnel }) {
        await page.evaluate(([q, t]) => window.guacrTest.connect(q, t), [query, tunnel ?? null]);
        return {};
    },
    async wait_connected({ timeout }) {
        await page.waitForFunction(
            (state) => window.guacrTest.clientStates.includes(state)
                || window.guacrTest.errors.length > 0,
            CLIENT_CONNECTED,
            { timeout: timeout ?? 10000, polling: 20 },
        );
        return {};
    },
    async type({ text }) {
        await page.keyboard.type(text);
        return {};
    },
    async press({ key }) {
        await page.keyboard.press(key);
        return {};
    },
    async snapshot({ path }) {
        // Until the first frame is flushed the display is 0x0 and this is "data:,".
        const dataUrl = await page.evaluate(() => window.guacrTest.snapshot());
        const png = Buffer.from(dataUrl.split(',', 2)[1] ?? '', 'base64');
        if (png.length) await fs.writeFile(path, png);
        return { empty: png.length === 0 };
    },
    async status() {
        const status = await page.evaluate(() => window.guacrTest.status());
        return { ...status, console: console_ };
    },
    async disconnect() {
        await page.evaluate(() => window.guacrTest.disconnect());
        return {};
    },
};

reply({ ok: true, ready: true });
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
    if (!line.trim()) continue;
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (err) {
        reply({ ok: false, error: `bad command: ${err}` });
        continue;
    }
    if (cmd.cmd === 'quit') break;
    const handler = commands[cmd.cmd];
    if (!handler) {
        reply({ ok: false, error: `unknown command ${cmd.cmd}` });
        continue;
    }
    try {
        reply({ ok: true, ...(await handler(cmd)) });
    } catch (err) {
        reply({ ok: false, error: String(err && err.message ? err.message : err) });
    }
}
await context.close();
reply({ ok: true, closed: true });
process.exit(0);
