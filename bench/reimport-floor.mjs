/**
 * The plainest re-import a Node program can run: the floor beside `bundle import` of a release the
 * vessel already holds (bench/run.ts, row `reimport`). Plain JavaScript, node's own modules only,
 * no checks beyond the ones no re-import may skip:
 *
 *   1. read the vessel's state.json;
 *   2. read the bundle's metadata: walk the tar headers from the start, hashing every small entry
 *      (index, signature, roots, release, manifests, configs), up to the first layer;
 *   3. two Ed25519 checks (the root's and the release's signature), over a payload of the
 *      envelope's size, with a key made by the bench beforehand (same cost as the real ones);
 *   4. one HEAD per digest the state records for the held release, where it lives (manifest or
 *      blob), over keep-alive connections, all at once;
 *   5. exit.
 *
 * It skips what seabag does besides: argument parsing, the lock and journal, schema validation,
 * the trust root's rules (threshold, expiry, downgrade, target), the tags, the output. So no
 * re-import can take less than this program: its time ÷ the import's is the row's floor.
 *
 *   node bench/reimport-floor.mjs STATE_DIR BUNDLE REGISTRY_HOST KEYS.json
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { openSync, readSync, readFileSync, closeSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';

const [stateDir, bundle, host, keysFile] = process.argv.slice(2);
const marks = [['ready', performance.now()]];

const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8'));
const release = state.releases.find((r) => r.state === 'active' || r.state === 'staged') ?? state.releases[0];

// 2. The metadata, up to the first entry of 64 KiB or more (the layers).
const fd = openSync(bundle, 'r');
const header = Buffer.alloc(512);
let at = 0;
let metadata = 0;
for (;;) {
  if (readSync(fd, header, 0, 512, at) !== 512 || header[0] === 0) break;
  const size = parseInt(header.toString('latin1', 124, 136).replace(/\0.*$/, '').trim() || '0', 8);
  if (size >= 64 * 1024) break;
  const body = Buffer.alloc(size);
  readSync(fd, body, 0, size, at + 512);
  createHash('sha256').update(body).digest('hex');
  metadata += size;
  at += 512 + Math.ceil(size / 512) * 512;
}
closeSync(fd);
marks.push(['metadata', performance.now()]);

// 3. Two signature checks.
const keys = JSON.parse(readFileSync(keysFile, 'utf8'));
const key = createPublicKey(keys.publicKey);
const payload = Buffer.from(keys.payload, 'base64');
for (let i = 0; i < 2; i += 1) {
  if (!verify(null, payload, key, Buffer.from(keys.signature, 'base64'))) throw new Error('floor: the signature does not verify');
}

marks.push(['signatures', performance.now()]);

// 4. A HEAD per recorded digest.
const manifests = new Set(release.manifests ?? []);
const agent = new Agent({ keepAlive: true, maxSockets: 8 });
const head = (path) =>
  new Promise((resolve, reject) => {
    const req = request({ host: host.split(':')[0], port: Number(host.split(':')[1]), method: 'HEAD', path, agent, headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`floor: HEAD ${path}: ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
const heads = [];
for (const [repository, digests] of Object.entries(release.content)) {
  for (const d of digests) heads.push(head(`/v2/${repository}/${manifests.has(d) ? 'manifests' : 'blobs'}/${d}`));
}
await Promise.all(heads);
agent.destroy();
if (process.env.FLOOR_VERBOSE) console.error(`floor: ${metadata} bytes of metadata, ${heads.length} HEADs; ms since start: ${marks.map(([n, t]) => `${n} ${t.toFixed(1)}`).join(', ')}, end ${performance.now().toFixed(1)}`);
