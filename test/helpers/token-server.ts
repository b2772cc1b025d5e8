/**
 * A token server for Distribution's `auth: token` (distribution docs/spec/auth/token.md): it
 * checks basic credentials, then signs an ES256 JWT granting what was asked, with its certificate
 * in `x5c`; the registry trusts that certificate through `rootcertbundle`. The registry is real;
 * only the token issuer, which a registry deployment brings from elsewhere, is written here.
 */
import { createPrivateKey, sign, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { execa } from 'execa';

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  /** Every scope asked for, in order. */
  scopes: string[];
  /** Users that asked, `anonymous` when none. */
  users: string[];
  /** Every `Authorization` header received, as sent (undefined when none). */
  authorizations: (string | undefined)[];
  close(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * Starts the token issuer on `host` (default 127.0.0.1; the plain-HTTP realm test runs it on a
 * test host inside a network namespace, through token-realm-host.ts). `answerAfter` holds the
 * answer to a request for these scopes until it resolves (a slow identity provider).
 */
export async function startTokenServer(dir: string, user: { username: string; password: string }, host = '127.0.0.1', options: { answerAfter?: (scopes: string[]) => Promise<void> } = {}): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.pem');
  await execa('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=seabag token issuer']);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const service = 'seabag-test-registry';
  const issuer = 'seabag-test-issuer';
  const scopes: string[] = [];
  const users: string[] = [];
  const authorizations: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    authorizations.push(req.headers.authorization);
    const url = new URL(req.url ?? '/', 'http://x');
    const header = req.headers.authorization ?? '';
    let who = 'anonymous';
    if (header.startsWith('Basic ')) {
      const [u, p] = Buffer.from(header.slice(6), 'base64').toString().split(':');
      if (u !== user.username || p !== user.password) {
        res.writeHead(401).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
      who = u;
    }
    users.push(who);
    const access = url.searchParams.getAll('scope').flatMap((s) => {
      scopes.push(s);
      const [type, name, actions] = s.split(':');
      // Anonymous callers get nothing; the registry will then refuse them.
      return who === 'anonymous' ? [] : [{ type, name, actions: (actions ?? '').split(',') }];
    });
    const now = Math.floor(Date.now() / 1000);
    const head = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: who, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: String(Math.random()), access };
    const signingInput = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
    const answer = (): void => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${signingInput}.${b64url(signature)}`, expires_in: 300 }));
    // A slow identity provider, for the scopes the test says.
    if (options.answerAfter === undefined) answer();
    else void options.answerAfter(url.searchParams.getAll('scope')).then(answer);
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    realm: `http://${host.includes(':') ? `[${host}]` : host}:${port}/token`,
    service,
    issuer,
    certFile,
    scopes,
    users,
    authorizations,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
