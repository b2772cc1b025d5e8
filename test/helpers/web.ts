/**
 * Web servers for fetch: Debian's nginx on loopback with a temp config (the real thing), a TCP
 * proxy in front of it that cuts connections mid-transfer, and a small server of our own that
 * drops connections at random offsets, goes down for a while, or serves a damaged part once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, openSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createConnection, createServer, Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './registry.js';
import { tempDir, type Teardown } from './tools.js';

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

async function waitListening(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = new Socket();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.connect(port, '127.0.0.1');
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await sleep(20);
  }
}

/** nginx serving `root` on a free loopback port. */
export async function startNginx(t: Teardown, root: string): Promise<WebServer> {
  const dir = await tempDir(t, 'seabag-nginx-');
  const port = await freePort();
  await mkdir(join(dir, 'tmp'));
  const config = join(dir, 'nginx.conf');
  await writeFile(
    config,
    [
      'daemon off;',
      'master_process off;',
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} warn;`,
      'events { worker_connections 64; }',
      'http {',
      '  access_log off;',
      '  default_type application/octet-stream;',
      `  client_body_temp_path ${join(dir, 'tmp')};`,
      `  proxy_temp_path ${join(dir, 'tmp')};`,
      `  fastcgi_temp_path ${join(dir, 'tmp')};`,
      `  uwsgi_temp_path ${join(dir, 'tmp')};`,
      `  scgi_temp_path ${join(dir, 'tmp')};`,
      `  server { listen 127.0.0.1:${port}; root ${root}; location / { } }`,
      '}',
      '',
    ].join('\n'),
  );
  const log = openSync(join(dir, 'stderr.log'), 'a');
  const child: ChildProcess = spawn('nginx', ['-c', config, '-p', dir], { stdio: ['ignore', log, log] });
  closeSync(log);
  await waitListening(port);
  const close = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  t.teardown(close);
  return { url: `http://127.0.0.1:${port}`, port, close };
}

/** A deterministic random source (mulberry32) for cut offsets. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export interface CuttingProxy extends WebServer {
  /** Connections cut so far. */
  cuts: number;
  /** Bytes sent from upstream to clients (shore → vessel: the link's expensive direction). */
  bytesDown: number;
  /** Bytes sent from clients to upstream. */
  bytesUp: number;
  /** After every chunk sent down: [ms since the proxy started, bytesDown so far]. */
  timeline: [number, number][];
  /** Cut whichever connection carries the downstream byte at each of these bytesDown totals. */
  cutAt(marks: number[]): void;
  /**
   * Stall the link once `mark` bytes have gone down: no connection forwards another byte until
   * `release()`. Resolves when the stall begins.
   */
  holdAt(mark: number): Promise<void>;
  /** Let a stalled link go on. */
  release(): void;
  /** Refuse connections and drop the open ones (the link or the shore goes down). */
  down(): Promise<void>;
  /** Listen again on the same port. */
  up(): Promise<void>;
}

/**
 * A TCP proxy to `upstreamPort` (TLS passes through untouched) that counts the bytes it carries
 * each way, cuts the first `cuts` connections after a random number of response bytes between
 * `min` and `max`, cuts connections at given byte totals (`cutAt`), stalls at one (`holdAt`), and
 * goes down and up on demand.
 */
export async function startCuttingProxy(t: Teardown, upstreamPort: number, o: { cuts?: number; min?: number; max?: number; seed?: number } = {}): Promise<CuttingProxy> {
  const random = seeded(o.seed ?? 1);
  const started = Date.now();
  let marks: number[] = [];
  const proxy: CuttingProxy = {
    url: '',
    port: 0,
    cuts: 0,
    bytesDown: 0,
    bytesUp: 0,
    timeline: [],
    cutAt: (m) => {
      marks = [...marks, ...m].sort((a, b) => a - b);
    },
    close: async () => undefined,
    down: async () => undefined,
    up: async () => undefined,
    holdAt: (mark) =>
      new Promise<void>((resolve) => {
        hold = { mark, held: false, resolve, waiting: [] };
      }),
    release: () => {
      const h = hold;
      hold = undefined;
      for (const go of h?.waiting ?? []) go();
    },
  };
  let hold: { mark: number; held: boolean; resolve: () => void; waiting: (() => void)[] } | undefined;
  const open = new Set<Socket>();
  const handler = (client: Socket): void => {
    const upstream = createConnection(upstreamPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('close', () => open.delete(s));
    }
    const randomCuts = o.cuts ?? 0;
    const cutHere = proxy.cuts < randomCuts ? Math.floor((o.min ?? 0) + random() * ((o.max ?? 0) - (o.min ?? 0))) : Number.POSITIVE_INFINITY;
    let sent = 0;
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('data', (chunk: Buffer) => {
      proxy.bytesUp += chunk.length;
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    client.on('end', () => upstream.end());
    const forward = (chunk: Buffer): void => {
      const h = hold;
      if (h !== undefined && (h.held || proxy.bytesDown + chunk.length > h.mark)) {
        // Up to the mark, then nothing until release: the rest waits here, upstream paused.
        const part = h.held ? 0 : Math.max(0, h.mark - proxy.bytesDown);
        if (part > 0) send(chunk.subarray(0, part));
        if (!h.held) {
          h.held = true;
          h.resolve();
        }
        upstream.pause();
        h.waiting.push(() => {
          forward(chunk.subarray(part));
          upstream.resume();
        });
        return;
      }
      send(chunk);
    };
    upstream.on('data', forward);
    const send = (chunk: Buffer): void => {
      if (chunk.length === 0 || client.destroyed) return;
      const mark = marks[0];
      let limit = cutHere - sent;
      if (mark !== undefined) limit = Math.min(limit, mark - proxy.bytesDown);
      if (chunk.length >= limit) {
        const part = chunk.subarray(0, Math.max(0, limit));
        client.write(part);
        proxy.bytesDown += part.length;
        if (mark !== undefined && proxy.bytesDown >= mark) marks.shift();
        proxy.cuts += 1;
        client.destroy();
        upstream.destroy();
        return;
      }
      sent += chunk.length;
      proxy.bytesDown += chunk.length;
      proxy.timeline.push([Date.now() - started, proxy.bytesDown]);
      if (!client.write(chunk)) upstream.pause();
    };
    client.on('drain', () => {
      if (hold?.held !== true) upstream.resume();
    });
    upstream.on('end', () => {
      if (hold?.held === true) hold.waiting.push(() => client.end());
      else client.end();
    });
  };
  let server: ReturnType<typeof createServer> | undefined;
  const port = await freePort();
  const listen = (): Promise<void> =>
    new Promise<void>((resolve) => {
      server = createServer(handler);
      server.listen(port, '127.0.0.1', () => resolve());
    });
  await listen();
  proxy.port = port;
  proxy.url = `http://127.0.0.1:${port}`;
  proxy.close = () => new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  proxy.down = async () => {
    const closed = proxy.close();
    for (const s of open) s.destroy();
    await closed;
  };
  proxy.up = listen;
  t.teardown(async () => {
    for (const s of open) s.destroy();
    await proxy.close().catch(() => undefined);
  });
  return proxy;
}

export interface FlakyServer extends WebServer {
  /** Connections dropped mid-body. */
  drops: number;
  /** Serve a damaged copy of this file name once. */
  corruptOnce(name: string): void;
  /** Refuse connections for `ms`. */
  outage(ms: number): Promise<void>;
  requests: number;
}

/**
 * Serves files from `root` with Range support, dropping a fraction `dropRate` of responses at a
 * random offset (seeded).
 */
export async function startFlakyServer(t: Teardown, root: string, o: { dropRate: number; seed: number }): Promise<FlakyServer> {
  const random = seeded(o.seed);
  const corrupt = new Set<string>();
  const sockets = new Set<Socket>();
  const port = await freePort();
  let server: Server;
  const flaky: FlakyServer = {
    url: `http://127.0.0.1:${port}`,
    port,
    drops: 0,
    requests: 0,
    corruptOnce: (name) => corrupt.add(name),
    outage: async (ms) => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await sleep(ms);
      await listen();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const handler = async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): Promise<void> => {
    flaky.requests += 1;
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    const path = join(root, name);
    const st = await stat(path).catch(() => undefined);
    if (st === undefined || !st.isFile() || name.includes('..')) {
      res.writeHead(404).end();
      return;
    }
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range !== null) {
      start = Number(range[1]);
      if (start >= st.size) {
        res.writeHead(416, { 'content-range': `bytes */${st.size}` }).end();
        return;
      }
      res.writeHead(206, { 'content-length': st.size - start, 'content-range': `bytes ${start}-${st.size - 1}/${st.size}`, 'accept-ranges': 'bytes' });
    } else {
      res.writeHead(200, { 'content-length': st.size, 'accept-ranges': 'bytes' });
    }
    const damage = corrupt.has(name);
    if (damage) corrupt.delete(name);
    const dropAt = random() < o.dropRate ? Math.floor(random() * (st.size - start)) : Number.POSITIVE_INFINITY;
    let sent = 0;
    const stream = createReadStream(path, { start, highWaterMark: 64 * 1024 });
    stream.on('data', (chunk) => {
      const buf = Buffer.from(chunk as Buffer);
      if (damage && sent === 0 && buf.length > 10) buf[10] = (buf[10] ?? 0) ^ 0xff;
      if (sent + buf.length > dropAt) {
        res.write(buf.subarray(0, dropAt - sent));
        flaky.drops += 1;
        stream.destroy();
        req.socket.destroy();
        return;
      }
      sent += buf.length;
      if (!res.write(buf)) {
        stream.pause();
        res.once('drain', () => stream.resume());
      }
    });
    stream.on('end', () => res.end());
  };
  const listen = (): Promise<void> =>
    new Promise((resolve) => {
      server = createHttpServer((req, res) => void handler(req, res));
      server.on('connection', (s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      server.listen(port, '127.0.0.1', () => resolve());
    });
  await listen();
  t.teardown(() => flaky.close().catch(() => undefined));
  return flaky;
}
