/**
 * Deployers: `registry` does nothing beyond the tags (a GitOps controller such as Flux reads the
 * local registry); `kubectl` applies the pinned manifests with image hosts rewritten to the local
 * registry and waits for each Deployment, StatefulSet and DaemonSet to roll out.
 */
import { execa, yaml } from '../util/lazy.js';
import { SeabagError } from '../errors.js';
import type { ManifestFile } from './flux.js';

export type DeployerName = 'registry' | 'kubectl';

export interface DeployOptions {
  deployer: DeployerName;
  /** The kubectl program (default `kubectl`, or env SEABAG_KUBECTL). */
  kubectl?: string;
  /** Arguments put before every kubectl command (e.g. `--kubeconfig FILE`, `--context X`). */
  kubectlArgs?: string[];
  /** How long to wait for each rollout (default 300 s). */
  timeoutSeconds?: number;
  env?: NodeJS.ProcessEnv;
}

const ROLLOUT_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);

/** The workloads whose rollouts to wait for: `kind/name` and namespace. */
export function rollouts(files: readonly ManifestFile[]): { resource: string; namespace: string | undefined }[] {
  const out: { resource: string; namespace: string | undefined }[] = [];
  for (const f of files) {
    for (const doc of yaml().parseAllDocuments(f.text)) {
      const data = doc.toJS() as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } } | null;
      if (data === null || typeof data !== 'object' || typeof data.kind !== 'string' || !ROLLOUT_KINDS.has(data.kind)) continue;
      if (typeof data.metadata?.name !== 'string') continue;
      out.push({ resource: `${data.kind.toLowerCase()}/${data.metadata.name}`, namespace: typeof data.metadata.namespace === 'string' ? data.metadata.namespace : undefined });
    }
  }
  return out;
}

async function kubectl(options: DeployOptions, args: string[], input: string | undefined, signal: AbortSignal | undefined): Promise<string> {
  const program = options.kubectl ?? options.env?.['SEABAG_KUBECTL'] ?? 'kubectl';
  const full = [...(options.kubectlArgs ?? []), ...args];
  try {
    const result = await (await execa())(program, full, {
      ...(input === undefined ? {} : { input }),
      ...(options.env === undefined ? {} : { env: options.env }),
      ...(signal === undefined ? {} : { cancelSignal: signal }),
      timeout: ((options.timeoutSeconds ?? 300) + 30) * 1000,
    });
    return result.stdout;
  } catch (err) {
    const e = err as { code?: string; stderr?: string; shortMessage?: string; message: string };
    if (e.code === 'ENOENT') {
      throw new SeabagError('E_TOOL', `${program} is not installed (needed by --deploy kubectl)`, { hint: 'install kubectl, set SEABAG_KUBECTL, or use --deploy registry' });
    }
    throw new SeabagError('E_ROLLOUT_FAILED', `${program} ${full.join(' ')} failed: ${(e.stderr ?? '').trim() || e.shortMessage || e.message}`, {
      details: { command: [program, ...full], stderr: e.stderr },
    });
  }
}

/**
 * Applies the files and waits for their rollouts.
 *
 * @throws E_ROLLOUT_FAILED (kubectl failed, or a rollout did not finish in time), E_TOOL
 */
export async function kubectlDeploy(files: readonly ManifestFile[], options: DeployOptions, signal?: AbortSignal): Promise<{ applied: string[]; rolledOut: string[] }> {
  const applied: string[] = [];
  for (const f of files) {
    await kubectl(options, ['apply', '-f', '-'], f.text, signal);
    applied.push(f.path);
  }
  const rolledOut: string[] = [];
  for (const r of rollouts(files)) {
    await kubectl(options, ['rollout', 'status', r.resource, ...(r.namespace ? ['-n', r.namespace] : []), `--timeout=${options.timeoutSeconds ?? 300}s`], undefined, signal);
    rolledOut.push(r.resource);
  }
  return { applied, rolledOut };
}
