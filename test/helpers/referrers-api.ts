/**
 * A stand-in for a registry that has the OCI 1.1 referrers API (distribution-spec v1.1.0
 * "Listing Referrers"), because none can run here: Distribution 2.8 (Debian's `docker-registry`)
 * has no such API, and no Distribution 3 or zot package is available. It is a loopback proxy in
 * front of the real Distribution: every request goes through to it unchanged, except that a
 * manifest PUT whose body has a `subject` is remembered (and answered with `OCI-Subject`, as such
 * a registry answers), and `GET /v2/<name>/referrers/<digest>` lists what was remembered.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { Descriptor } from '../../lib/oci/descriptor.js';
import type { RegistryHandle } from './registry.js';

export interface ReferrersApi {
  /** `127.0.0.1:PORT` of the proxy. */
  host: string;
  /** Referrers listed for `name@digest`. */
  listed(name: string, digest: string): Descriptor[];
  /** Requests the API answered, as `name@digest`. */
  asked: string[];
  stop(): Promise<void>;
}

const INDEX = 'application/vnd.oci.image.index.v1+json';

export async function startReferrersApi(upstream: RegistryHandle, teardown: (fn: () => Promise<void>) => void): Promise<ReferrersApi> {
  const lists = new Map<string, Descriptor[]>();
  const asked: string[] = [];
  const forward = (req: IncomingMessage, res: ServerResponse, body: Buffer, extra: Record<string, string> = {}): void => {
    const out = request({ host: '127.0.0.1', port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, { ...up.headers, ...extra });
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    out.end(body);
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = req.url ?? '';
      const api = /^\/v2\/(.+)\/referrers\/(sha256:[a-f0-9]{64})(?:\?.*)?$/.exec(url);
      if (api !== null && req.method === 'GET') {
        const key = `${api[1]}@${api[2]}`;
        asked.push(key);
        const doc = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: lists.get(key) ?? [] }));
        res.writeHead(200, { 'content-type': INDEX, 'content-length': String(doc.length) });
        res.end(doc);
        return;
      }
      const put = /^\/v2\/(.+)\/manifests\/([^/?]+)$/.exec(url);
      if (put !== null && req.method === 'PUT') {
        try {
          const doc = JSON.parse(body.toString('utf8')) as { subject?: Descriptor; artifactType?: string; config?: Descriptor; annotations?: Record<string, string> };
          if (doc.subject !== undefined) {
            const key = `${put[1]}@${doc.subject.digest}`;
            const digest = `sha256:${createHash('sha256').update(body).digest('hex')}` as const;
            const entry: Descriptor = {
              mediaType: (req.headers['content-type'] ?? '').split(';')[0] ?? '',
              digest,
              size: body.length,
              ...(doc.artifactType ?? doc.config?.mediaType ? { artifactType: (doc.artifactType ?? doc.config?.mediaType) as string } : {}),
              ...(doc.annotations ? { annotations: doc.annotations } : {}),
            };
            const list = lists.get(key) ?? [];
            if (!list.some((d) => d.digest === digest)) list.push(entry);
            lists.set(key, list);
            forward(req, res, body, { 'oci-subject': doc.subject.digest });
            return;
          }
        } catch {
          // not JSON: forward as is
        }
      }
      forward(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  const stop = (): Promise<void> =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  teardown(stop);
  return { host: `127.0.0.1:${port}`, listed: (name, digest) => lists.get(`${name}@${digest}`) ?? [], asked, stop };
}
