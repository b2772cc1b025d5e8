/**
 * The real CNCF Distribution registry (Debian `docker-registry`) on a free 127.0.0.1 port, with
 * temp storage and deletes enabled; optionally behind htpasswd basic auth and/or TLS with a CA
 * made for the test. Stopped when the test ends, pass or fail.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import bcrypt from 'bcryptjs';
import { execa } from 'execa';

export interface RegistryOptions {
  /** htpasswd basic auth with this user. */
  auth?: { username: string; password: string };
  /** Serve HTTPS with a certificate from a CA made for this registry. */
  tls?: boolean;
  /** Bearer-token auth through a token server (see token-server.ts). */
  token?: { realm: string; service: string; issuer: string; certFile: string };
  /** Reuse this storage folder (to start a second registry on the same data). */
  storageDir?: string;
  /** Log every request to `logFile` (Distribution's access log), for tests that count them. */
  accessLog?: boolean;
  /** More top-level config.yml lines, e.g. `validation:` settings. */
  extraConfig?: string[];
  /**
   * Distribution's own `redirect` storage middleware: blob GETs and HEADs answer 307 to this
   * base URL plus the storage path, as a registry on S3 or behind CloudFront does (see cdn.ts).
   */
  redirectTo?: string;
}

export interface RegistryHandle {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  storageDir: string;
  configPath: string;
  /** PEM file of the CA (with `tls`). */
  caFile?: string;
  /** Stop the registry (SIGTERM, waiting for exit). */
  stop(): Promise<void>;
  /** Kill it at once (SIGKILL). */
  kill(): Promise<void>;
  /** Start it again on the same port and storage. */
  start(): Promise<void>;
  /** The registry process's id while it runs (benchmarks read its CPU time from /proc). */
  pid(): number | undefined;
  /** `docker-registry garbage-collect` over the storage (with the registry stopped or read-only). */
  garbageCollect(options?: { deleteUntagged?: boolean }): Promise<string>;
  /** The registry's own log (stdout and stderr). */
  logFile: string;
}

/** A TCP port nobody is listening on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A CA and a server certificate for 127.0.0.1/localhost, made with openssl. */
export async function makeCertificates(dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const cert = join(dir, 'server.pem');
  const ext = join(dir, 'server.ext');
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', '/CN=seabag test CA']);
  await execa('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  await execa('openssl', ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { caFile: ca, certFile: cert, keyFile: key };
}

/**
 * Whether `pid` itself holds the listening socket on 127.0.0.1:`port`. A free port handed out by
 * `freePort` can be taken by another registry (another test, another worker) before ours binds:
 * then a connect succeeds to *that* one while ours exits, and the test talks to the wrong
 * registry. Reads /proc; where it cannot, it trusts the connect.
 */
async function listensOn(pid: number, port: number): Promise<boolean> {
  const inodes = new Set<string>();
  try {
    const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    for (const line of (await readFile('/proc/net/tcp', 'utf8')).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === want && f[3] === '0A' && f[9] !== undefined) inodes.add(f[9]);
    }
  } catch {
    return true;
  }
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return true;
  }
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m !== null && inodes.has(m[1] as string)) return true;
  }
  return false;
}

/** The port was taken by someone else before our registry could bind it. */
class PortTaken extends Error {}

async function waitReady(host: string, tls: boolean, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = await readFile(logFile, 'utf8').catch(() => '');
      if (/address already in use/.test(log)) throw new PortTaken(`${host} was taken before docker-registry could bind it`);
      throw new Error(`docker-registry exited with ${child.exitCode}; see ${logFile}`);
    }
    const up = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
      const [h, p] = host.split(':');
      socket.connect(Number(p), h as string);
    });
    const [, portText] = host.split(':');
    if (up && child.pid !== undefined && (await listensOn(child.pid, Number(portText)))) return;
    if (Date.now() > deadline) throw new Error(`docker-registry did not listen on ${host}${tls ? ' (tls)' : ''}; see ${logFile}`);
    await sleep(20);
  }
}

/**
 * Starts a registry; registers its stop with `teardown` (ava's `t.teardown`) when given.
 */
export async function startRegistry(options: RegistryOptions = {}, teardown?: (fn: () => Promise<void>) => void): Promise<RegistryHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'seabag-registry-'));
  const storageDir = options.storageDir ?? join(dir, 'storage');
  await mkdir(storageDir, { recursive: true });
  let port = await freePort();
  let host = `127.0.0.1:${port}`;
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    `    disabled: ${options.accessLog === true ? 'false' : 'true'}`,
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${host}`,
    '  secret: seabag-test-secret',
  ];
  let caFile: string | undefined;
  if (options.tls === true) {
    const certs = await makeCertificates(dir);
    caFile = certs.caFile;
    lines.push('  tls:', `    certificate: ${certs.certFile}`, `    key: ${certs.keyFile}`);
  }
  // After `http.tls`: a top-level section ends the `http:` block.
  if (options.redirectTo !== undefined) {
    lines.push('middleware:', '  storage:', '    - name: redirect', '      options:', `        baseurl: ${options.redirectTo}`);
  }
  if (options.auth !== undefined) {
    const htpasswd = join(dir, 'htpasswd');
    await writeFile(htpasswd, `${options.auth.username}:${bcrypt.hashSync(options.auth.password, 5)}\n`);
    lines.push('auth:', '  htpasswd:', '    realm: seabag-test', `    path: ${htpasswd}`);
  }
  if (options.token !== undefined) {
    const tk = options.token;
    lines.push('auth:', '  token:', `    realm: ${tk.realm}`, `    service: ${tk.service}`, `    issuer: ${tk.issuer}`, `    rootcertbundle: ${tk.certFile}`);
  }
  lines.push(...(options.extraConfig ?? []));
  const addrLine = lines.indexOf(`  addr: ${host}`);
  const configPath = join(dir, 'config.yml');
  await writeFile(configPath, `${lines.join('\n')}\n`);
  const logFile = join(dir, 'registry.log');

  let child: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    const fd = openSync(logFile, 'a');
    child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    await waitReady(host, options.tls === true, child, logFile);
  };
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill(signal);
    await exited;
  };
  for (let attempt = 1; ; attempt += 1) {
    try {
      await start();
      break;
    } catch (err) {
      // Another process took the free port first: pick another one, a few times.
      if (!(err instanceof PortTaken) || attempt >= 5) throw err;
      port = await freePort();
      host = `127.0.0.1:${port}`;
      lines[addrLine] = `  addr: ${host}`;
      await writeFile(configPath, `${lines.join('\n')}\n`);
    }
  }
  const handle: RegistryHandle = {
    host,
    port,
    storageDir,
    configPath,
    logFile,
    ...(caFile === undefined ? {} : { caFile }),
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    start,
    pid: () => child?.pid,
    async garbageCollect(gc = {}) {
      const args = ['garbage-collect', ...(gc.deleteUntagged === true ? ['--delete-untagged'] : []), configPath];
      const result = await execa('docker-registry', args, { all: true });
      return result.all ?? '';
    },
  };
  teardown?.(async () => {
    await halt('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  return handle;
}
