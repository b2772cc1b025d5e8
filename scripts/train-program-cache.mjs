// Trains the V8 code caches of dist/program.cjs (cli/program-loader.ts reads it) and dist/yaml.cjs
// (lib/util/lazy.ts): runs commands as a user would, in this process, on a tiny release made here
// (a one-layer OCI layout written by hand), then keeps what V8 compiled. Nothing leaves the
// temporary folder; no network.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';

const { runProgramScript, writeProgramCache } = await import('../dist/cli/program-loader.js');
const { writeScriptCache } = await import('../dist/lib/util/cached-script.js');

class Sink extends Writable {
  text = '';
  isTTY = false;
  _write(chunk, _enc, cb) {
    this.text += chunk.toString();
    cb();
  }
}

/** Runs one command line through a program's `main`; returns its exit status and output. */
async function run(program, argv, env) {
  const stdout = new Sink();
  const stderr = new Sink();
  const code = await program.main(argv, { stdout, stderr, env: { PATH: process.env.PATH ?? '', HOME: env.HOME, ...env } });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

async function blob(layout, data) {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(layout, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/** A one-image OCI layout: an empty tar layer, its config, the manifest, tagged `tiny`. */
async function tinyLayout(layout) {
  await mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  const tar = Buffer.alloc(1024);
  const layer = await blob(layout, gzipSync(tar));
  const config = await blob(layout, Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(tar).digest('hex')}`] }, config: {} })));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
  }));
  const m = await blob(layout, manifest);
  await writeFile(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': 'tiny' } }] }));
}

/**
 * Trains the program script `file`: writes its code cache to `cacheFile`. Only the commands whose
 * start-up is measured and felt (status, inspect, verify, help, and import up to its first
 * request) are trained: V8 reads the whole cache on every start, so code only build or keygen run
 * would slow every other command. The example release is made by child processes, so their code
 * stays out of the cache. Import is trained against a loopback server that refuses every request
 * (403): it runs admission, the lock, the state and the registry client, then stops with E_AUTH
 * before anything is pinned. A command that does not exit as it must fails the build: the cache
 * would be trained on the wrong path, and the program is broken anyway.
 */
export async function trainProgramCaches(file, cacheFile, entry = 'dist/seabag.mjs') {
  const work = await mkdtemp(join(tmpdir(), 'seabag-train-'));
  try {
    const empty = join(work, 'empty-state');
    await mkdir(empty);
    const env = { HOME: work, SEABAG_STATE_DIR: join(work, 'state') };
    const k = (name) => join(work, name);
    await tinyLayout(k('layout'));
    await writeFile(k('release.yaml'), `apiVersion: seabag.dev/v1\nkind: Release\nname: tiny\nversion: 1.0.0\nimages:\n  - ref: shore.example.com/train/tiny:1.0.0\n    from: oci:${k('layout')}:tiny\n`);
    const setup = [
      ['keygen', k('root.key')],
      ['keygen', k('release.key')],
      ['trust', 'init', '--root-key', k('root.key.pub'), '--release-key', k('release.key.pub'), '--sign', k('root.key'), '-o', k('trust.json')],
      ['build', k('release.yaml'), '-o', k('tiny.bundle'), '--sign', k('release.key')],
    ];
    for (const argv of setup) {
      const r = spawnSync(process.execPath, [entry, ...argv], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } });
      if (r.status !== 0) throw new Error(`training the program's code cache: bundle ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
    }
    const refusing = createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"DENIED","message":"seabag build: training the code cache"}]}');
    });
    await new Promise((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    try {
      const registry = `127.0.0.1:${refusing.address().port}`;
      const loaded = runProgramScript(file);
      const lines = [
        [['--help'], 0],
        [['status', '--state-dir', empty], 0],
        [['status', '--state-dir', empty, '--json'], 0],
        [['inspect', k('tiny.bundle')], 0],
        [['inspect', k('tiny.bundle'), '--json'], 0],
        [['verify', k('tiny.bundle'), '--trust', k('trust.json')], 0],
        [['verify', k('tiny.bundle'), '--trust', k('trust.json'), '--json'], 0],
        [['import', k('tiny.bundle'), '--trust', k('trust.json'), '--registry', registry, '--state-dir', k('vessel')], 3, /E_AUTH/],
      ];
      for (const [argv, expected, says] of lines) {
        const r = await run(loaded.exports, argv, env);
        if (r.code !== expected || (says !== undefined && !says.test(r.stderr))) throw new Error(`training the program's code cache: bundle ${argv.join(' ')} exited ${r.code}, not ${expected}: ${r.stderr}`);
      }
      writeProgramCache(loaded, cacheFile);
    } finally {
      refusing.close();
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Trains the code cache of the yaml script (`cacheFile`, beside dist/yaml.cjs): builds, with the
 * library's modules (dist/lib), a tiny release whose spec, Kubernetes manifest and device profile
 * take every path seabag reads and writes YAML by (parse a document, parse a multi-document file
 * as YAML 1.1, visit, edit, stringify), then keeps what V8 compiled of yaml. The old cache is
 * removed first, so the training compiles from the source.
 */
export async function trainYamlCache(cacheFile) {
  await rm(cacheFile, { force: true });
  const work = await mkdtemp(join(tmpdir(), 'seabag-train-yaml-'));
  try {
    const k = (name) => join(work, name);
    await tinyLayout(k('layout'));
    await mkdir(k('k8s'));
    await mkdir(k('devices'));
    const image = 'shore.example.com/train/tiny:1.0.0';
    await writeFile(k('release.yaml'), `# trained\napiVersion: seabag.dev/v1\nkind: Release\nname: tiny\nversion: 1.0.0\ntargets: [class-a]\nplatforms: [linux/amd64]\nimages:\n  - ref: ${image}\n    from: oci:${k('layout')}:tiny\nmanifests: [k8s/]\ndeviceProfiles: [devices/]\n`);
    await writeFile(k('k8s/app.yaml'), `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: tiny\n  labels: &labels {app: tiny}\nspec:\n  selector:\n    matchLabels: *labels\n  template:\n    metadata:\n      labels: {app: tiny}\n    spec:\n      containers:\n        - name: tiny # the image is pinned\n          image: "${image}"\n          args: ['--port', "8080", yes]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: tiny}\ndata:\n  text: |\n    a block\n    scalar\n`);
    await writeFile(k('devices/camera.yaml'), `apiVersion: seabag.dev/v1\nkind: DeviceProfile\nname: camera\nnode: sensor-unit\ndiscovery:\n  udev:\n    rules: ['SUBSYSTEM=="video4linux", ATTR{index}=="0"']\ncapacity: 1\nbroker:\n  image: ${image}\n`);
    await writeFile(k('devices/ip-camera.yaml'), `apiVersion: seabag.dev/v1\nkind: DeviceProfile\nname: ip-camera\ndiscovery:\n  onvif:\n    ipAddresses: {action: Include, items: [10.0.0.20]}\n    discoveryTimeoutSeconds: 2\ncapacity: 2\nbroker:\n  image: ${image}\n`);
    const { buildBundle } = await import('../dist/lib/index.js');
    const { yamlScript } = await import('../dist/lib/util/lazy.js');
    await buildBundle(k('release.yaml'), { output: k('tiny.bundle'), sync: false });
    const loaded = yamlScript();
    if (loaded === undefined) throw new Error('training the yaml code cache: dist/yaml.cjs was not loaded');
    writeScriptCache(loaded, cacheFile);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
