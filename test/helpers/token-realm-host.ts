/**
 * Runs the token server (token-server.ts) on a test host (netns.ts): started inside the
 * namespace as `node --import tsx token-realm-host.ts DIR USER PASSWORD ADDRESS`. Prints one JSON
 * line `{realm, service, issuer, certFile}` when listening; on SIGTERM prints one JSON line
 * `{authorizations}` (every Authorization header it received, null when none) and exits.
 */
import { startTokenServer } from './token-server.js';

const [dir, username, password, host] = process.argv.slice(2);
if (dir === undefined || username === undefined || password === undefined || host === undefined) {
  process.stderr.write('usage: token-realm-host.ts DIR USER PASSWORD ADDRESS\n');
  process.exit(2);
}
const tokens = await startTokenServer(dir, { username, password }, host);
process.on('SIGTERM', () => {
  process.stdout.write(`${JSON.stringify({ authorizations: tokens.authorizations.map((a) => a ?? null) })}\n`, () => process.exit(0));
});
process.stdout.write(`${JSON.stringify({ realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, certFile: tokens.certFile })}\n`);
