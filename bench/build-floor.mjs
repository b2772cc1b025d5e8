/**
 * The plainest durable build a Node program can run: the floor beside `bundle build` (bench/run.ts,
 * row `build`). Plain JavaScript, node's own modules only, none of a build's own work beyond the
 * bytes:
 *
 *   1. a hashing thread per core (at most one per blob) is started at once;
 *   2. the layout's blobs are listed (readdir and stat, no manifest read);
 *   3. one tar is written: `oci-layout`, `index.json`, then every blob, each at its place (known
 *      from the sizes) by the lane of the thread that hashes it, from buffers the thread shares;
 *      flushed every 32 MiB as it grows (fdatasync), as seabag does;
 *   4. every blob's sha256 is checked against its name, the file is fsynced, renamed into place,
 *      and its folder fsynced.
 *
 * It skips what `bundle build` does besides: argument parsing, the release spec and its schema,
 * resolving the images (manifests, configs, platforms, referrers), pinning, the release document,
 * the signature, progress and output. So no build can take less than this program: its time ÷ the
 * peer's (tar cf + openssl dgst) is the row's floor.
 *
 *   node bench/build-floor.mjs LAYOUT OUT
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';

const [layout, out] = process.argv.slice(2);
const CHUNK = 2 * 1024 * 1024;
const BUFFERS = 6;
const FLUSH_EVERY = 32 * 1024 * 1024;
const IN_FLIGHT = 4;

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const memory = Buffer.from(workerData.memory);
let hash;
parentPort.on('message', (m) => {
  hash ??= createHash('sha256');
  hash.update(memory.subarray(m.slot * workerData.size, m.slot * workerData.size + m.n));
  if (m.last) { parentPort.postMessage({ hex: hash.digest('hex') }); hash = undefined; } else parentPort.postMessage({});
});`;

function startLane() {
  const memory = new SharedArrayBuffer(CHUNK * BUFFERS);
  const worker = new Worker(WORKER, { eval: true, workerData: { memory, size: CHUNK } });
  const buffers = Array.from({ length: BUFFERS }, (_, i) => Buffer.from(memory, i * CHUNK, CHUNK));
  const free = buffers.map((_, i) => i);
  const waiting = [];
  const replies = [];
  worker.on('message', (m) => replies.shift()(m.hex));
  return {
    worker,
    buffers,
    take: () => (free.length > 0 ? Promise.resolve(free.pop()) : new Promise((r) => waiting.push(r))),
    give: (slot) => (waiting.length > 0 ? waiting.shift()(slot) : free.push(slot)),
    hash: (slot, n, last) => new Promise((r) => { replies.push(r); worker.postMessage({ slot, n, last }); }),
  };
}

const blobsDir = join(layout, 'blobs', 'sha256');
const names = readdirSync(blobsDir).sort();
const lanes = Array.from({ length: Math.max(1, Math.min(availableParallelism(), 4, names.length)) }, startLane);

/** A ustar header: name, mode, sizes, checksum; nothing else. */
function header(name, size, type = '0') {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write(type === '5' ? '0000755\0' : '0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}
const pad = (n) => (512 - (n % 512)) % 512;

// The tar: small entries first, then each blob at its place.
const small = [];
let position = 0;
const add = (buf) => { small.push({ position, buf }); position += buf.length; };
for (const name of ['oci-layout', 'index.json']) {
  const data = readFileSync(join(layout, name));
  add(Buffer.concat([header(name, data.length), data, Buffer.alloc(pad(data.length))]));
}
add(Buffer.concat([header('blobs/', 0, '5'), header('blobs/sha256/', 0, '5')]));
const jobs = names.map((name) => {
  const size = statSync(join(blobsDir, name)).size;
  add(header(`blobs/sha256/${name}`, size));
  const job = { name, size, position };
  position += size;
  if (pad(size) > 0) add(Buffer.alloc(pad(size)));
  return job;
});
add(Buffer.alloc(1024));

const temp = join(dirname(out), `.${basename(out)}.floor.tmp`);
const file = await open(temp, 'w');
const inflight = new Set();
let unflushed = 0;
let flushing = Promise.resolve();
async function write(buf, n, at, done) {
  const w = file.write(buf, 0, n, at).then(() => { inflight.delete(w); done?.(); });
  inflight.add(w);
  unflushed += n;
  if (unflushed >= FLUSH_EVERY) {
    unflushed = 0;
    const pending = [...inflight];
    flushing = flushing.then(() => Promise.all(pending)).then(() => file.datasync());
  }
  while (inflight.size >= IN_FLIGHT) await Promise.race(inflight);
}
for (const s of small) await write(s.buf, s.buf.length, s.position);

// Each blob to the lane with the fewest bytes so far; each lane reads ahead, hashes and writes.
const load = lanes.map(() => 0);
const own = lanes.map(() => []);
for (const job of jobs) {
  const l = load.indexOf(Math.min(...load));
  own[l].push(job);
  load[l] += job.size;
}
const digests = await Promise.all(lanes.map(async (lane, l) => {
  const found = [];
  for (const job of own[l]) {
    const source = await open(join(blobsDir, job.name), 'r');
    let digest;
    const read = async (at) => {
      const slot = await lane.take();
      const { bytesRead } = await source.read(lane.buffers[slot], 0, Math.min(CHUNK, job.size - at), at);
      return { slot, n: bytesRead };
    };
    let at = 0;
    let next = job.size > 0 ? read(0) : undefined;
    while (next !== undefined) {
      const { slot, n } = await next;
      const here = at;
      at += n;
      next = at < job.size ? read(at) : undefined;
      let users = 2;
      const release = () => { users -= 1; if (users === 0) lane.give(slot); };
      const hashed = lane.hash(slot, n, at >= job.size);
      hashed.then(release);
      if (at >= job.size) digest = hashed;
      await write(lane.buffers[slot], n, job.position + here, release);
    }
    await source.close();
    found.push({ name: job.name, hex: await digest });
  }
  return found;
}));
for (const { name, hex } of digests.flat()) if (hex !== undefined && hex !== name) throw new Error(`blob ${name}: found ${hex}`);
await Promise.all(inflight);
await flushing;
await file.sync();
await file.close();
renameSync(temp, out);
const dir = openSync(dirname(out), 'r');
fsyncSync(dir);
closeSync(dir);
for (const lane of lanes) await lane.worker.terminate();
