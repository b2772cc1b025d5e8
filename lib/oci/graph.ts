/**
 * Walking and copying a content graph (a manifest or index and everything it names) between any
 * two stores, after oras-go v2 `copy.go`: children before parents, so a destination never holds a
 * manifest whose blobs are missing; a subtree the destination already has is skipped; blob
 * transfers run a few at a time.
 */
import { setMaxListeners } from 'node:events';
import { Readable, Transform } from 'node:stream';
import { SeabagError, throwIfAborted } from '../errors.js';
import { Limiter } from '../util/limit.js';
import { sha256Digest } from './digest.js';
import {
  MAX_METADATA_SIZE,
  parseImageManifest,
  parseIndex,
  parseJSON,
  formatPlatform,
  type Descriptor,
  type Platform,
} from './descriptor.js';
import { isImageManifest, isManifestLike } from './media-types.js';
import { isAttestation, keepAttestations, selectEntries } from './platform.js';
import type { BlobWriter, OpOptions, ReadOnlyStorage, Storage } from './store.js';
import { readVerified } from './verify.js';

/** One node of a resolved graph. Manifests and indexes carry their (verified) bytes. */
export interface GraphNode {
  desc: Descriptor;
  /** Bytes of a manifest or index, verified against `desc`; absent for blobs. */
  bytes?: Buffer;
  children: GraphNode[];
}

export interface ResolveOptions extends OpOptions {
  /** Keep only these platforms of a multi-platform index, as containerd selects (see platform.ts). */
  platforms?: readonly Platform[];
  /** Keep buildx attestation manifests of what is kept (default true; false drops them all). */
  attestations?: boolean;
  /** Told when an index offers no exact match for a wanted platform and a compatible one is kept. */
  onPlatformFallback?: (info: { index: string; wanted: Platform; chosen: Platform }) => void;
  /** Don't descend into content for which this returns true (its children aren't fetched). */
  prune?: (desc: Descriptor) => boolean;
  /** Nodes already resolved, by digest: pass the same map to several walks to share them. */
  nodes?: Map<string, Promise<GraphNode>>;
  /** Reads a manifest's verified bytes (default: `fetchVerified` from the source). */
  read?: (desc: Descriptor) => Promise<Buffer>;
  /** Told of every reference walked (repeats included), to bound a walk. */
  visit?: (desc: Descriptor) => void;
}

const MAX_DEPTH = 16;

/**
 * Reads a small document (manifest, index, config) and verifies it.
 *
 * @throws E_LAYOUT_INVALID when it is larger than 4 MiB; E_SIZE_MISMATCH, E_DIGEST_MISMATCH
 */
export async function fetchVerified(src: ReadOnlyStorage, desc: Descriptor, options: OpOptions = {}): Promise<Buffer> {
  if (desc.size > MAX_METADATA_SIZE) {
    throw new SeabagError('E_LAYOUT_INVALID', `${desc.mediaType} ${desc.digest} is ${desc.size} bytes, over the ${MAX_METADATA_SIZE}-byte limit for metadata`, {
      details: { digest: desc.digest, size: desc.size, limit: MAX_METADATA_SIZE },
    });
  }
  return readVerified(await src.fetch(desc, options), desc, desc.mediaType.includes('index') ? 'index' : 'manifest');
}

/**
 * Fetches every manifest and index reachable from `root` (blobs are named, not read) and returns
 * the graph. With `platforms`, every index (nested ones too) keeps only what containerd would
 * select for them, with the attestation manifests of what it keeps: when one image manifest is
 * left at the root it becomes the root; otherwise a smaller index is made (same type, annotations
 * and entry fields), so the result's root digest may differ from the source's. Limits: 16 levels
 * of nesting, 4 MiB per manifest or index.
 *
 * @throws E_LAYOUT_INVALID (cycles, depth, malformed manifests), E_PLATFORM_UNAVAILABLE (nothing
 *   for the wanted platforms anywhere in the image), and whatever the source throws
 */
export async function resolveGraph(src: ReadOnlyStorage, root: Descriptor, options: ResolveOptions = {}): Promise<GraphNode> {
  // Shared walks keep no platform-filtered nodes: a rewritten index is the walk's own.
  const filters = (options.platforms !== undefined && options.platforms.length > 0) || options.attestations === false;
  const cache = filters ? new Map<string, Promise<GraphNode>>() : (options.nodes ?? new Map<string, Promise<GraphNode>>());
  const resolveNode = async (desc: Descriptor, stack: readonly string[]): Promise<GraphNode> => {
    throwIfAborted(options.signal);
    options.visit?.(desc);
    if (stack.includes(desc.digest)) {
      throw new SeabagError('E_LAYOUT_INVALID', `content graph has a cycle through ${desc.digest}`, { details: { path: [...stack, desc.digest] } });
    }
    if (stack.length >= MAX_DEPTH) throw new SeabagError('E_LAYOUT_INVALID', `content graph nested deeper than ${MAX_DEPTH} levels at ${desc.digest}`);
    if (!isManifestLike(desc.mediaType) || options.prune?.(desc) === true) return { desc, children: [] };
    let pending = cache.get(desc.digest);
    if (pending === undefined) {
      pending = (async () => {
        const bytes = options.read === undefined ? await fetchVerified(src, desc, options) : await options.read(desc);
        const next = [...stack, desc.digest];
        if (isImageManifest(desc.mediaType)) {
          const m = parseImageManifest(bytes, desc);
          const kids = [...(m.subject === undefined ? [] : [m.subject]), m.config, ...m.layers];
          return { desc, bytes, children: await Promise.all(kids.map((k) => resolveNode(k, next))) };
        }
        return (await resolveIndex(desc, bytes, next)) ?? { desc: EMPTY_MARK, children: [] };
      })();
      cache.set(desc.digest, pending);
    }
    return pending;
  };

  /**
   * An index, filtered: the platforms wanted (best match per index, containerd's way), child
   * indexes filtered in turn and dropped when nothing is left in them, attestation manifests kept
   * with what they describe. Unchanged, it keeps its bytes; changed, it is rewritten with the
   * entries it keeps exactly as the source wrote them (only a rewritten child's digest and size
   * change). Undefined when nothing is left.
   */
  const resolveIndex = async (desc: Descriptor, bytes: Buffer, stack: readonly string[]): Promise<GraphNode | undefined> => {
    const index = parseIndex(bytes, desc);
    const entries = index.manifests;
    if (!filters) return { desc, bytes, children: await Promise.all(entries.map((m) => resolveChild(m, stack))) as GraphNode[] };
    const wanted = options.platforms ?? [];
    const selection = wanted.length > 0 ? selectEntries(entries, wanted) : { keep: new Set(entries.map((_, i) => i).filter((i) => !isAttestation(entries[i] as Descriptor))), fallbacks: [] };
    for (const f of selection.fallbacks) options.onPlatformFallback?.({ index: desc.digest, ...f });
    const picked = [...selection.keep].sort((a, b) => a - b);
    const resolved = await Promise.all(picked.map((i) => resolveChild(entries[i] as Descriptor, stack)));
    const kept = new Map<number, GraphNode>();
    picked.forEach((i, k) => {
      const node = resolved[k];
      if (node !== undefined) kept.set(i, node);
    });
    if (![...kept.values()].some((n) => !isAttestation(n.desc))) return undefined;
    const keptDigests = new Set([...kept.keys()].map((i) => (entries[i] as Descriptor).digest));
    const attestations = keepAttestations(entries, keptDigests, options.attestations !== false);
    for (const i of attestations) {
      const node = await resolveChild(entries[i] as Descriptor, stack);
      if (node !== undefined) kept.set(i, node);
    }
    const order = [...kept.keys()].sort((a, b) => a - b);
    const children = order.map((i) => kept.get(i) as GraphNode);
    const unchanged = order.length === entries.length && children.every((c, k) => c.desc.digest === entries[k]?.digest);
    if (unchanged) return { desc, bytes, children };
    const only = children[0];
    if (stack.length === 1 && children.length === 1 && only !== undefined && isImageManifest(only.desc.mediaType)) {
      // One image left at the root: carry that manifest itself, as `skopeo copy --override-arch` would.
      return { ...only, desc: { ...only.desc, ...(desc.annotations ? { annotations: desc.annotations } : {}) } };
    }
    const doc = parseJSON(bytes, desc.digest) as Record<string, unknown> & { manifests: Record<string, unknown>[] };
    const manifests = order.map((i, k) => {
      const raw = doc.manifests[i] as Record<string, unknown>;
      const child = children[k] as GraphNode;
      return child.desc.digest === entries[i]?.digest ? raw : { ...raw, digest: child.desc.digest, size: child.desc.size };
    });
    const rebuilt = Buffer.from(JSON.stringify({ ...doc, manifests }));
    const rebuiltDesc: Descriptor = { ...desc, digest: sha256Digest(rebuilt), size: rebuilt.length };
    return { desc: rebuiltDesc, bytes: rebuilt, children };
  };

  /** A child of an index: an index that filters to nothing is undefined. */
  const resolveChild = async (desc: Descriptor, stack: readonly string[]): Promise<GraphNode | undefined> => {
    const node = await resolveNode(desc, stack);
    return node.desc === EMPTY_MARK ? undefined : node;
  };

  const top = await resolveNode(root, []);
  if (top.desc === EMPTY_MARK) {
    const wanted = (options.platforms ?? []).map(formatPlatform);
    throw new SeabagError('E_PLATFORM_UNAVAILABLE', `${root.digest} has no manifest for ${wanted.join(', ')}`, { details: { digest: root.digest, wanted } });
  }
  return top;
}

/** Stands for an index that a filter left empty (cached like any other node). */
const EMPTY_MARK: Descriptor = { mediaType: 'application/x-seabag-empty', digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000', size: 0 };

/** Every distinct node of a graph, children before parents. */
export function postOrder(root: GraphNode): GraphNode[] {
  const seen = new Set<string>();
  const out: GraphNode[] = [];
  const visit = (node: GraphNode): void => {
    if (seen.has(node.desc.digest)) return;
    seen.add(node.desc.digest);
    for (const child of node.children) visit(child);
    out.push(node);
  };
  visit(root);
  return out;
}

/** Sum of the sizes of every distinct piece of content in a graph. */
export function graphSize(root: GraphNode): number {
  return postOrder(root).reduce((sum, n) => sum + n.desc.size, 0);
}

export interface CopyOptions extends ResolveOptions {
  /** Blob transfers at once (default 3: Distribution ingests fastest from about three streams). */
  concurrency?: number;
  /** A limiter shared with other copies running at the same time (overrides `concurrency`). */
  limiter?: Limiter;
  /** Content to leave alone, known to be on the destination already (a delta bundle's omitted blobs). */
  skip?: (desc: Descriptor) => boolean;
  /** Told about each node: pushed, already there, or skipped on request. */
  onNode?: (desc: Descriptor, outcome: 'pushed' | 'exists' | 'skipped') => void;
  /**
   * Push manifests (default true). With false only blobs move: a first pass over several graphs,
   * so that no manifest reaches the destination until every blob of every graph has.
   */
  manifests?: boolean;
  /**
   * Look at every child even under a manifest the destination already has (default false: such a
   * subtree is skipped, as oras-go does). For repair: a registry can lose a blob a manifest names.
   */
  checkChildren?: boolean;
}

export interface CopyResult {
  /** The root as copied (differs from the source's when a platform filter rewrote an index). */
  root: Descriptor;
  /** Bytes that actually moved. */
  bytesCopied: number;
  pushed: number;
  existed: number;
  skipped: number;
}

/** Counts bytes as they pass, for progress. */
function counter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

/**
 * Copies the graph under `root` from `src` to `dst`, children before parents; content the
 * destination already has is not sent again, and a manifest it has ends the walk there. Every byte
 * is verified as it moves (by the destination's `push`). On the first failure the other transfers
 * are stopped and awaited before the error is thrown.
 *
 * @throws E_DIGEST_MISMATCH, E_SIZE_MISMATCH, E_LAYOUT_INVALID, E_ABORTED and the stores' errors
 */
export async function copyGraph(src: ReadOnlyStorage, dst: Storage, root: Descriptor | GraphNode, options: CopyOptions = {}): Promise<CopyResult> {
  const graph = 'children' in root ? root : await resolveGraph(src, root, options);
  const run = new CopyRun(src, dst, graph, options);
  const onOuterAbort = (): void => run.controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  try {
    await walk(run, graph).catch(() => undefined);
    // Wait for everything still running before reporting, so nothing moves after we return.
    await Promise.allSettled([...run.tasks.values()]);
    if (run.failures.length > 0) {
      const real = run.failures.find((f) => !(f instanceof SeabagError && f.code === 'E_ABORTED')) ?? run.failures[0];
      throw real;
    }
    return run.result;
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** One `copyGraph` under way: where content goes, what is done, and the counts. */
class CopyRun {
  readonly controller = new AbortController();
  readonly limiter: Limiter;
  readonly result: CopyResult;
  readonly total: number;
  done = 0;
  /** One task per digest: a node reached twice is copied once. */
  readonly tasks = new Map<string, Promise<void>>();
  readonly failures: unknown[] = [];

  constructor(
    readonly src: ReadOnlyStorage,
    readonly dst: Storage,
    graph: GraphNode,
    readonly options: CopyOptions,
  ) {
    this.limiter = options.limiter ?? new Limiter(options.concurrency ?? 3);
    this.total = graphSize(graph);
    this.result = { root: graph.desc, bytesCopied: 0, pushed: 0, existed: 0, skipped: 0 };
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  report(item: string): void {
    this.options.onProgress?.({ phase: 'copy', done: this.done, total: this.total, item });
  }

  /** Counts a node's outcome; `counted` bytes of it were already reported while they moved. */
  settle(node: GraphNode, outcome: 'pushed' | 'exists' | 'skipped', counted = 0): void {
    if (outcome === 'pushed') this.result.pushed += 1;
    else if (outcome === 'exists') this.result.existed += 1;
    else this.result.skipped += 1;
    this.done += node.desc.size - counted;
    this.options.onNode?.(node.desc, outcome);
    this.report(node.desc.digest);
  }

  /**
   * A subtree the destination has: every node of it counts as existing. The node itself is
   * settled too: its own task is already in `tasks` (it is the one running).
   */
  markExisting(node: GraphNode): void {
    for (const n of postOrder(node)) {
      if (n === node || !this.tasks.has(n.desc.digest)) {
        this.tasks.set(n.desc.digest, this.tasks.get(n.desc.digest) ?? Promise.resolve());
        this.settle(n, 'exists');
      }
    }
  }
}

/**
 * The walk (after oras-go `copyGraph`): decides what to copy and in which order. Children before
 * parents; a manifest the destination has ends the walk there (unless `checkChildren`); blobs go
 * a few at a time. Each node is moved by `moveManifest` or `moveBlob`, which decide nothing.
 */
function walk(run: CopyRun, node: GraphNode): Promise<void> {
  let task = run.tasks.get(node.desc.digest);
  if (task !== undefined) return task;
  task = (async () => {
    throwIfAborted(run.signal);
    if (run.options.skip?.(node.desc) === true) return run.settle(node, 'skipped');
    if (node.bytes !== undefined) {
      const present = await run.dst.exists(node.desc, { signal: run.signal });
      if (present && run.options.checkChildren !== true) return run.markExisting(node);
      await Promise.all(node.children.map((child) => walk(run, child)));
      throwIfAborted(run.signal);
      if (run.options.manifests === false) return;
      if (present) return run.settle(node, 'exists');
      return moveManifest(run, node, node.bytes);
    }
    await run.limiter.run(async () => {
      throwIfAborted(run.signal);
      if (await run.dst.exists(node.desc, { signal: run.signal })) return run.settle(node, 'exists');
      return moveBlob(run, node);
    });
  })();
  task.catch((err: unknown) => {
    run.failures.push(err);
    run.controller.abort(err);
  });
  run.tasks.set(node.desc.digest, task);
  return task;
}

/** Moves one manifest or index (its verified bytes are at hand). */
async function moveManifest(run: CopyRun, node: GraphNode, bytes: Buffer): Promise<void> {
  await run.dst.push(node.desc, async () => Readable.from([bytes]), { signal: run.signal });
  run.result.bytesCopied += bytes.length;
  run.settle(node, 'pushed');
}

/**
 * Moves one blob: streamed (or read ahead from a file source), counted as it goes; the
 * destination verifies what it stores (`Storage.push`), so bytes are hashed once. A restarted
 * transfer counts from zero again.
 */
async function moveBlob(run: CopyRun, node: GraphNode): Promise<void> {
  const { src, signal } = run;
  let attemptBytes = 0;
  const count = (n: number): void => {
    attemptBytes += n;
    run.done += n;
    run.report(node.desc.digest);
  };
  const restart = (): void => {
    run.done -= attemptBytes;
    attemptBytes = 0;
  };
  const reader = src.reader?.bind(src);
  const prepare = src.prepare?.bind(src);
  const relay = src.relay?.bind(src);
  await run.dst.push(
    node.desc,
    async () => {
      restart();
      const stream = await src.fetch(node.desc, { signal });
      const counting = counter(count);
      stream.once('error', (err) => counting.destroy(err));
      return stream.pipe(counting);
    },
    {
      signal,
      ...(prepare === undefined ? {} : { prepare: () => prepare(node.desc, { signal }) }),
      ...(relay === undefined
        ? {}
        : {
            relay: async (start: () => Promise<BlobWriter>) => {
              restart();
              return relay(node.desc, start, { signal, onBytes: count });
            },
          }),
      ...(reader === undefined
        ? {}
        : {
            reader: async () => {
              restart();
              return reader(node.desc);
            },
            onBytes: count,
          }),
    },
  );
  run.result.bytesCopied += node.desc.size;
  run.settle(node, 'pushed', attemptBytes);
}

/** One graph of several copied together, and where it goes. */
export interface CopyUnit {
  /** Names the destination (a repository): progress items, and which nodes it already got. */
  key: string;
  dst: Storage;
  graph: GraphNode;
}

export interface CopyAllOptions extends Omit<CopyOptions, 'manifests' | 'onNode' | 'platforms' | 'prune'> {
  /** Told when every blob of every graph is in place, before the first manifest moves. */
  onBlobsDone?: () => void;
}

/**
 * Copies several graphs (the images of a release, their referrers) so that no manifest reaches
 * any destination until every blob of every graph has: one pass of blobs, then one of manifests
 * (children before parents within each). A bad blob anywhere leaves no manifest anywhere. The
 * first failure stops every other transfer; all are awaited before it is thrown. Returns how many
 * nodes the destinations already held.
 *
 * @throws what `copyGraph` throws (the first real failure, not the aborts it caused)
 */
export async function copyGraphs(src: ReadOnlyStorage, units: readonly CopyUnit[], options: CopyAllOptions = {}): Promise<{ existed: number }> {
  const limiter = options.limiter ?? new Limiter(options.concurrency ?? 3);
  const present = new Set<string>();
  let existed = 0;
  const totals = new Map<number, { done: number; total: number }>();
  // Named for the unit that last moved bytes: what is being worked on now.
  const progress = (i: number, item: string) => (p: { done: number; total?: number }): void => {
    totals.set(i, { done: p.done, total: p.total ?? 0 });
    let done = 0;
    let total = 0;
    for (const v of totals.values()) {
      done += v.done;
      total += v.total;
    }
    options.onProgress?.({ phase: 'push', done, total, item });
  };
  const stop = new AbortController();
  // One listener per unit copied at once: not a leak.
  setMaxListeners(Math.max(10, units.length + 10), stop.signal);
  const onAbort = (): void => stop.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const pass = async (manifests: boolean): Promise<void> => {
    const results = await Promise.allSettled(
      units.map(({ key, dst, graph }, i) =>
        copyGraph(src, dst, graph, {
          limiter,
          manifests,
          ...(options.checkChildren === undefined ? {} : { checkChildren: options.checkChildren }),
          skip: (d) => options.skip?.(d) === true || (manifests && present.has(`${key} ${d.digest}`)),
          onNode: (d, outcome) => {
            if (!manifests && outcome !== 'skipped') present.add(`${key} ${d.digest}`);
            if (outcome === 'exists') existed += 1;
          },
          ...(manifests ? {} : { onProgress: progress(i, key) }),
          signal: stop.signal,
        }).catch((err: unknown) => {
          stop.abort(err);
          throw err;
        }),
      ),
    );
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as unknown);
    const real = failed.find((e) => !(e instanceof SeabagError && e.code === 'E_ABORTED')) ?? failed[0];
    if (real !== undefined) throw real;
  };
  try {
    await pass(false);
    options.onBlobsDone?.();
    await pass(true);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  return { existed };
}
