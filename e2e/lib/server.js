// Starts a real Palaver server for a test: the built binary, a temporary
// data folder (SQLite), port 0 (the server's "listening" log line says
// which port it got), cheap password hashing and generous rate limits.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, mkdirSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));

/** The palaver binary: $PALAVER_BIN, else the debug build of this checkout. */
export function binaryPath() {
  if (process.env.PALAVER_BIN) return process.env.PALAVER_BIN;
  const target = process.env.CARGO_TARGET_DIR || resolve(here, '../../target');
  return join(target, 'debug', 'palaver');
}

/**
 * Starts the server and resolves once it listens:
 * {url, port, dataDir, logs(), cli(args), stop()}.
 */
export async function startServer(env = {}) {
  const bin = binaryPath();
  if (!existsSync(bin)) throw new Error(`no palaver binary at ${bin} (build it, or set PALAVER_BIN)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'palaver-e2e-'));
  const serverEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PALAVER_DATA_DIR: dataDir,
    PALAVER_LISTEN: '127.0.0.1:0',
    PALAVER_LOG_FORMAT: 'json',
    PALAVER_LOG: 'info',
    PALAVER_ARGON2_MEMORY_KIB: '256',
    PALAVER_ARGON2_ITERATIONS: '1',
    PALAVER_RATE_REGISTER: '1000/1m',
    PALAVER_RATE_LOGIN: '1000/1m',
    PALAVER_RATE_REFRESH: '1000/1m',
    PALAVER_RATE_MOMENTS: '1000/1m',
    PALAVER_RATE_COMMENTS: '1000/1m',
    PALAVER_RATE_LIKES: '1000/1m',
    PALAVER_RATE_FOLLOWS: '1000/1m',
    PALAVER_RATE_REPORTS: '1000/1m',
    ...env,
  };
  const child = spawn(bin, ['serve'], { env: serverEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  // The server's log is kept with the test artifacts, to read after a failure.
  const artifacts = process.env.E2E_ARTIFACTS || resolve(here, '../artifacts');
  mkdirSync(artifacts, { recursive: true });
  const logFile = createWriteStream(join(artifacts, `server-${Date.now()}-${process.pid}.log`));
  const exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const port = await new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`palaver did not listen within 30 s:\n${lines.join('\n')}`)), 30_000);
    createInterface({ input: child.stderr }).on('line', (line) => {
      lines.push(line);
      logFile.write(`${line}\n`);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      const addr = entry.fields?.message === 'listening' ? entry.fields.addr : null;
      if (addr) {
        clearTimeout(timer);
        resolvePort(Number(addr.split(':').pop()));
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`palaver exited (${code ?? signal}) during start-up:\n${lines.join('\n')}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    dataDir,
    logs: () => lines.join('\n'),
    /** Runs `palaver <args>` on this server's data (an operator's command). */
    cli(args) {
      return new Promise((res, rej) => {
        execFile(bin, args, { env: serverEnv, timeout: 60_000 }, (err, stdout, stderr) => {
          if (err) rej(new Error(`palaver ${args.join(' ')}: ${err.message}\n${stderr}`));
          else res(stdout);
        });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
      logFile.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A JSON request straight to the API (test set-up that is not under test). */
export async function apiCall(server, method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${server.url}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return data;
}
