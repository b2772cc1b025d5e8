/**
 * Object storage behind a registry, as S3 or a CDN serves it: the real Distribution registry is
 * started with its `redirect` storage middleware (registry.ts `redirectTo`), so it answers blob
 * reads with a 307 to this server, which serves the blob file from the registry's own storage.
 * Like an S3 presigned URL, it refuses (400 InvalidArgument) any request that carries an
 * `Authorization` header. It records every request it saw, headers included, so a test can show
 * that no credential reached it. Only this file server is written here; the registry is real.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join, normalize } from 'node:path';

export interface CdnRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface CdnServer {
  /** `http://127.0.0.1:PORT/` */
  baseUrl: string;
  seen: CdnRequest[];
  /** Answer every request with 401 and this challenge (a hostile or misconfigured CDN). */
  challenge: string | undefined;
  close(): Promise<void>;
}

const S3_TWO_AUTH = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>';

/** Serves `storageDir` (a registry's `rootdirectory`) at the paths the redirect middleware names. */
export async function startCdn(storageDir: () => string): Promise<CdnServer> {
  const seen: CdnRequest[] = [];
  const cdn: CdnServer = { baseUrl: '', seen, challenge: undefined, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    seen.push({ method: req.method ?? '', path, headers: { ...req.headers } });
    if (cdn.challenge !== undefined) {
      res.writeHead(401, { 'www-authenticate': cdn.challenge }).end();
      return;
    }
    if (req.headers.authorization !== undefined) {
      res.writeHead(400, { 'content-type': 'application/xml' }).end(S3_TWO_AUTH);
      return;
    }
    const file = join(storageDir(), normalize(path).replace(/^(\.\.[/\\])+/, ''));
    stat(file).then(
      (st) => {
        if (!st.isFile()) throw new Error('not a file');
        res.writeHead(200, { 'content-length': String(st.size), 'content-type': 'application/octet-stream' });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  cdn.baseUrl = `http://127.0.0.1:${port}/`;
  cdn.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return cdn;
}
