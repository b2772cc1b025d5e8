/**
 * Platform selection as containerd's `platforms` package does it (normalisation and the
 * fallback vector, compared with containerd/platforms `compare_test.go` cases), and the filter
 * over nested indexes and buildx attestation manifests, on graphs held in memory.
 */
import test from 'ava';
import { sha256Digest } from '../lib/oci/digest.js';
import { parsePlatformString, type Descriptor, type Platform } from '../lib/oci/descriptor.js';
import { resolveGraph, postOrder, type GraphNode } from '../lib/oci/graph.js';
import { MemoryStore } from '../lib/oci/memory.js';
import { OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST } from '../lib/oci/media-types.js';
import { normalizePlatform, platformRank, platformVector } from '../lib/oci/platform.js';
import { formatPlatform } from '../lib/oci/descriptor.js';
import type { SeabagError } from '../lib/errors.js';

const p = (s: string): Platform => {
  const [os, architecture, variant] = s.split('/') as [string, string, string | undefined];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
};

test('normalisation follows containerd: arm64 is arm64/v8, aarch64, x86_64 and amd64/v1 fold, arm defaults to v7, case is ignored', (t) => {
  const norm = (s: string): string => formatPlatform(normalizePlatform(p(s)));
  t.is(norm('linux/arm64/v8'), 'linux/arm64');
  t.is(norm('linux/aarch64'), 'linux/arm64');
  t.is(norm('Linux/AArch64/8'), 'linux/arm64');
  t.is(norm('linux/x86_64'), 'linux/amd64');
  t.is(norm('linux/amd64/v1'), 'linux/amd64');
  t.is(norm('linux/amd64/v3'), 'linux/amd64/v3');
  t.is(norm('linux/arm'), 'linux/arm/v7');
  t.is(norm('linux/armhf'), 'linux/arm/v7');
  t.is(norm('linux/armel'), 'linux/arm/v6');
  t.is(norm('linux/arm/6'), 'linux/arm/v6');
  t.is(norm('linux/i386'), 'linux/386');
  t.is(norm('MacOS/amd64'), 'darwin/amd64');
  t.deepEqual(parsePlatformString('Linux/ARM64'), { os: 'linux', architecture: 'arm64' });
});

test('the fallback vector is containerd Only(): amd64/v3 → v2, v1, 386; arm64 → arm v8..v5; arm64/v9.2 → v9.1, v9, v8.7…', (t) => {
  const vec = (s: string): string[] => platformVector(normalizePlatform(p(s))).map((x) => formatPlatform(normalizePlatform(x)));
  t.deepEqual(vec('linux/amd64/v3'), ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']);
  t.deepEqual(vec('linux/amd64'), ['linux/amd64', 'linux/386']);
  t.deepEqual(vec('linux/arm/v7'), ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
  t.deepEqual(vec('linux/arm64'), ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
  t.deepEqual(vec('linux/arm64/v8.2').slice(0, 3), ['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64']);
  t.deepEqual(vec('linux/arm64/v9.2').slice(0, 4), ['linux/arm64/v9.2', 'linux/arm64/v9.1', 'linux/arm64/v9', 'linux/arm64/v8.7']);
});

test('ranks: an exact match is 0 whatever the spelling, a fallback ranks lower, a foreign platform is -1', (t) => {
  t.is(platformRank(p('linux/arm64'), p('linux/arm64/v8')), 0, 'linux/arm64/v8 selects a variant-less arm64 entry');
  t.is(platformRank(p('linux/arm64/v8'), p('linux/arm64')), 0, 'and linux/arm64 selects an arm64/v8 entry');
  t.is(platformRank(p('linux/arm/v7'), p('linux/arm')), 0);
  t.is(platformRank(p('linux/amd64'), p('linux/amd64/v2')), 1);
  t.is(platformRank(p('linux/amd64/v3'), p('linux/amd64')), -1, 'a plain amd64 host does not take a v3 image');
  t.is(platformRank(p('linux/386'), p('linux/amd64')), 1);
  t.is(platformRank(p('windows/amd64'), p('linux/amd64')), -1);
  t.is(platformRank(undefined, p('linux/amd64')), -1);
});

/** A tiny content graph in memory: images by platform, indexes over them, attestations. */
class Graph {
  store = new MemoryStore();
  put(doc: unknown, mediaType: string): Descriptor {
    const bytes = Buffer.from(JSON.stringify(doc));
    const desc: Descriptor = { mediaType, digest: sha256Digest(bytes), size: bytes.length };
    this.store.add(desc, bytes);
    return desc;
  }
  image(name: string): Descriptor {
    const config = this.put({ name }, OCI_CONFIG);
    const layer = { mediaType: OCI_LAYER_GZIP, digest: sha256Digest(`layer ${name}`), size: 10 };
    return this.put({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [layer] }, OCI_MANIFEST);
  }
  index(entries: Descriptor[], extra: Record<string, unknown> = {}): Descriptor {
    return this.put({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries, ...extra }, OCI_INDEX);
  }
  attestation(forDigest: string): Descriptor {
    const m = this.image(`att ${forDigest}`);
    return {
      ...m,
      platform: { os: 'unknown', architecture: 'unknown' },
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': forDigest },
    };
  }
}

const at = (d: Descriptor, platform: string): Descriptor => ({ ...d, platform: p(platform) });
const digests = (node: GraphNode): string[] => node.children.map((c) => c.desc.digest);

test('a nested index is filtered at every level and keeps its structure; unchanged when the filter keeps everything', async (t) => {
  const g = new Graph();
  const amd = g.image('amd');
  const arm = g.image('arm');
  const ppc = g.image('ppc');
  const inner = g.index([at(amd, 'linux/amd64'), at(arm, 'linux/arm64'), at(ppc, 'linux/ppc64le')]);
  const root = g.index([inner], { annotations: { 'org.example': 'kept' } });

  const all = await resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/amd64'), parsePlatformString('linux/arm64'), parsePlatformString('linux/ppc64le')] });
  t.is(all.desc.digest, root.digest, 'a filter that keeps everything keeps the bytes');

  const two = await resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/amd64'), parsePlatformString('linux/arm64')] });
  t.not(two.desc.digest, root.digest);
  t.is(two.children.length, 1, 'the root still holds one index');
  const rebuiltInner = two.children[0] as GraphNode;
  t.deepEqual(digests(rebuiltInner), [amd.digest, arm.digest]);
  const doc = JSON.parse((two.bytes as Buffer).toString()) as { annotations: unknown; manifests: Descriptor[] };
  t.deepEqual(doc.annotations, { 'org.example': 'kept' });
  t.is(doc.manifests[0]?.digest, rebuiltInner.desc.digest, 'the root names the rewritten inner index');

  const one = await resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/arm64')] });
  t.is(one.desc.mediaType, OCI_INDEX, 'an index of indexes stays an index of indexes');
  t.deepEqual(digests(one.children[0] as GraphNode), [arm.digest]);
});

test('an index with none of the platforms anywhere says E_PLATFORM_UNAVAILABLE; an inner index left empty is dropped', async (t) => {
  const g = new Graph();
  const amd = g.image('amd');
  const s390 = g.image('s390');
  const root = g.index([g.index([at(amd, 'linux/amd64')]), g.index([at(s390, 'linux/s390x')])]);
  const kept = await resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/amd64')] });
  t.is(kept.children.length, 1);
  t.deepEqual(digests(kept.children[0] as GraphNode), [amd.digest]);
  const err = await t.throwsAsync(resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/riscv64')] }));
  t.is((err as SeabagError).code, 'E_PLATFORM_UNAVAILABLE');
});

test('per index and wanted platform only the best match is kept, as containerd pulls: amd64 over 386, v3 only when asked', async (t) => {
  const g = new Graph();
  const [a1, a3, i386, armv6, armv7] = ['a1', 'a3', '386', 'v6', 'v7'].map((n) => g.image(n)) as [Descriptor, Descriptor, Descriptor, Descriptor, Descriptor];
  const root = g.index([at(i386, 'linux/386'), at(a1, 'linux/amd64'), at(a3, 'linux/amd64/v3'), at(armv6, 'linux/arm/v6'), at(armv7, 'linux/arm/v7')]);
  const pick = async (...wanted: string[]): Promise<string[]> => {
    const node = await resolveGraph(g.store, root, { platforms: wanted.map(parsePlatformString) });
    return node.desc.mediaType === OCI_INDEX ? digests(node) : [node.desc.digest];
  };
  t.deepEqual(await pick('linux/amd64'), [a1.digest]);
  t.deepEqual(await pick('linux/amd64/v3'), [a3.digest]);
  t.deepEqual(await pick('linux/amd64/v2'), [a1.digest], 'v2 falls back to v1');
  t.deepEqual(await pick('linux/arm'), [armv7.digest], 'arm means arm/v7');
  t.deepEqual(await pick('linux/arm64'), [armv7.digest], 'arm64 falls back to arm/v7 as containerd does');
  t.deepEqual(await pick('linux/386', 'linux/amd64'), [i386.digest, a1.digest], 'order of the source index is kept');
});

test('buildx attestation manifests stay with the platform they describe and go with --no-referrers', async (t) => {
  const g = new Graph();
  const amd = g.image('amd');
  const arm = g.image('arm');
  const attAmd = g.attestation(amd.digest);
  const attArm = g.attestation(arm.digest);
  const root = g.index([at(amd, 'linux/amd64'), at(arm, 'linux/arm64'), attAmd, attArm]);
  const arm64 = await resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/arm64')] });
  t.deepEqual(digests(arm64), [arm.digest, attArm.digest], 'the index is kept (two entries), digests of both preserved');
  const raw = JSON.parse((arm64.bytes as Buffer).toString()) as { manifests: Descriptor[] };
  t.deepEqual(raw.manifests[1]?.annotations, attArm.annotations, 'the attestation entry is carried as written');
  t.true(postOrder(arm64).some((n) => n.desc.digest === attArm.digest));

  const bare = await resolveGraph(g.store, root, { platforms: [parsePlatformString('linux/arm64')], attestations: false });
  t.is(bare.desc.digest, arm.digest, 'without referrers one manifest is left, and it becomes the root');
  const noRefs = await resolveGraph(g.store, root, { attestations: false });
  t.deepEqual(digests(noRefs), [amd.digest, arm.digest], 'with no platform filter --no-referrers still drops them');
  const untouched = await resolveGraph(g.store, root, {});
  t.is(untouched.desc.digest, root.digest);
});
