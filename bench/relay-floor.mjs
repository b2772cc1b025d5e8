/**
 * The floor of the satellite pulls (the single full pull, and each vessel's pull of a fleet): the
 * plainest Node program that does what `bundle import oci://` must do with each layer, and nothing
 * else. For each image, every blob the vessel does not hold already (HEAD) streams from the shore's GET into a
 * chunked upload on the vessel (POST, one PATCH, PUT ?digest=), four at a time, each chunk hashed
 * and appended to a spool file the way seabag's spool appends it (lib/satellite/appender.ts, from
 * dist/), the upload committed only after the digest matched; then the manifest is put. No
 * admission, no staging, no release artifacts, no retries, no state: what is left of seabag's time
 * beyond this program's is seabag's own; this program's beyond skopeo's is Node's and the spool's.
 *
 *   node bench/relay-floor.mjs SHORE REPO VESSEL SPOOL_DIR REPOSITORY:TAG@DIGEST...
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { openAppender } from '../dist/lib/satellite/appender.js';

const [shore, repo, vessel, spoolDir, ...images] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, resolve);
    req.on('error', reject);
    if (body === undefined) req.end();
    else body(req);
  });
}

async function text(res) {
  const chunks = [];
  for await (const c of res) chunks.push(c);
  return Buffer.concat(chunks);
}

async function expect(res, status, what) {
  const body = await text(res);
  if (res.statusCode !== status) throw new Error(`${what}: ${res.statusCode} ${body}`);
  return body;
}

async function relay(repository, desc) {
  // What the vessel holds already is not fetched (a delta: the fleet's pull).
  const held = await request('HEAD', `http://${vessel}/v2/${repository}/blobs/${desc.digest}`);
  held.resume();
  if (held.statusCode === 200) return;
  const started = request('POST', `http://${vessel}/v2/${repository}/blobs/uploads/`);
  const got = await request('GET', `http://${shore}/v2/${repo}/blobs/${desc.digest}`);
  if (got.statusCode !== 200) throw new Error(`GET ${desc.digest}: ${got.statusCode}`);
  const post = await started;
  await expect(post, 202, 'POST');
  const partial = join(spoolDir, `${desc.digest.slice(7)}.partial`);
  const handle = await open(partial, 'w+');
  const appender = await openAppender(handle, partial, 0, { direct: true });
  const hash = createHash('sha256');
  const patch = http.request(new URL(post.headers.location, `http://${vessel}`), { method: 'PATCH', headers: { 'content-type': 'application/octet-stream' }, agent });
  const response = new Promise((resolve, reject) => {
    patch.once('response', resolve);
    patch.once('error', reject);
  });
  for await (const chunk of got) {
    await appender.append(chunk);
    if (!patch.write(chunk)) await new Promise((r) => patch.once('drain', r));
    hash.update(chunk);
  }
  patch.end();
  await appender.close();
  await handle.close();
  const res = await response;
  await expect(res, 202, 'PATCH');
  if (`sha256:${hash.digest('hex')}` !== desc.digest) throw new Error(`${desc.digest} does not match`);
  const put = new URL(res.headers.location, `http://${vessel}`);
  put.searchParams.set('digest', desc.digest);
  await expect(await request('PUT', put.href), 201, 'PUT');
  await rm(partial, { force: true });
}

await mkdir(spoolDir, { recursive: true });
for (const image of images) {
  const [name, digest] = image.split('@');
  const [repository, tag] = name.split(':');
  const accept = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = await expect(await request('GET', `http://${shore}/v2/${repo}/manifests/${digest}`, { headers: { accept } }), 200, 'GET manifest');
  const m = JSON.parse(manifest.toString());
  const blobs = [m.config, ...m.layers];
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < blobs.length) await relay(repository, blobs[next++]);
    }),
  );
  await expect(await request('PUT', `http://${vessel}/v2/${repository}/manifests/${tag}`, { headers: { 'content-type': m.mediaType ?? accept }, body: (req) => req.end(manifest) }), 201, 'PUT manifest');
}
agent.destroy();
