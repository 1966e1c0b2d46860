// A real OpenID provider for the API tests (panva/oidc-provider, an OpenID-certified
// implementation), so that QuickZTNA's relying party is tested against someone else's idea of
// OIDC rather than against a mock of our own.
//
// Usage: node provider.mjs [--port N] [--issuer URL]
//   --port 0 (the default) binds a free port on 127.0.0.1; the issuer defaults to
//   http://127.0.0.1:<port>. Configuration comes from the environment:
//   OIDC_CLIENTS   JSON list of {client_id, client_secret, redirect_uris: [..]}
//   OIDC_ACCOUNTS  JSON object {login: {email, email_verified, name, preferred_username, groups}}
//                  (a login that is not listed signs in as <login>@example.com, verified, no groups)
//   OIDC_FRESH_KEYS=1  sign with a new RSA key (random kid) instead of the library's fixed
//                  development key: restarting on the same port then looks like a key rotation
// Prints one line `READY <issuer>` on stdout once it accepts connections.
//
// Sign-in uses the provider's development interactions: any password is accepted, first a login
// form, then a consent form. Tests drive both with plain HTTP.
//
// Test-only control endpoint: `PUT /__test/accounts/<login>` with a JSON body replaces that
// account's claims (so a test can change someone's groups between two sign-ins).

import http from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { Provider } from 'oidc-provider';

const { values: args } = parseArgs({
  options: { port: { type: 'string', default: '0' }, issuer: { type: 'string' } },
});

const clients = JSON.parse(process.env.OIDC_CLIENTS ?? '[]');
const accounts = new Map(Object.entries(JSON.parse(process.env.OIDC_ACCOUNTS ?? '{}')));

function claimsOf(login) {
  const claims = accounts.get(login) ?? { email: `${login}@example.com`, email_verified: true };
  return { ...claims, sub: login };
}

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(args.port), '127.0.0.1', resolve));
const { port } = server.address();
const issuer = args.issuer ?? `http://127.0.0.1:${port}`;

const jwks = process.env.OIDC_FRESH_KEYS === '1'
  ? {
    keys: [{
      ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
      kid: randomUUID(),
      use: 'sig',
      alg: 'RS256',
    }],
  }
  : undefined;

const provider = new Provider(issuer, {
  ...(jwks ? { jwks } : {}),
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
  })),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the ID token itself (the relying party reads no userinfo).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => claimsOf(sub),
  }),
  features: { devInteractions: { enabled: true } },
});
// Quiet: the tests read only the READY line, and errors the relying party provokes on purpose
// (a replayed code, a foreign client) would otherwise fill the test output.
provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));

const callback = provider.callback();
server.on('request', (req, res) => {
  const control = req.url.match(/^\/__test\/accounts\/([^/?]+)$/);
  if (control && req.method === 'PUT') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      try {
        accounts.set(decodeURIComponent(control[1]), JSON.parse(body));
        res.writeHead(204).end();
      } catch (err) {
        res.writeHead(400).end(String(err));
      }
    });
    return;
  }
  callback(req, res);
});

process.on('SIGTERM', () => process.exit(0));
console.log(`READY ${issuer}`);
