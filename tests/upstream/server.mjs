// An upstream OpenID Connect provider for the end-to-end tests, built on the real
// `oidc-provider` package and listening on 127.0.0.1 only.
//
// Usage: node server.mjs CONFIG.json
//
// CONFIG.json (written by tests/e2e/upstreams.py):
//   port          loopback port to listen on
//   base_path     issuer path, "/api/v2" for ProConnect, "" for the Région
//   profile       "proconnect" (its scopes and claims, ES256, signed userinfo,
//                 client_secret_post, acr values) or "region" (generic OIDC, RS256,
//                 plain JSON userinfo, client_secret_basic)
//   client        { client_id, client_secret, redirect_uris, post_logout_redirect_uris }
//   id_token_alg  optional: overrides the profile's ID token algorithm (ES256 / RS256)
//   userinfo_alg  optional: overrides the userinfo signing algorithm; "none" for plain JSON
//   accounts_file JSON file { login: { acr, claims } }, read again on every lookup so
//                 a test can change a person's claims between two logins
//
// The login page is a plain form (field `login`, buttons `login` and `cancel`):
// the tests pick the person by login; there are no passwords. Prints "ready <issuer>"
// on stdout once listening.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = `http://127.0.0.1:${config.port}`;
const issuer = `${origin}${config.base_path}`;
const proconnect = config.profile === 'proconnect';

function signingKey(type, options, alg, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), alg, kid, use: 'sig' };
}

function accounts() {
  return JSON.parse(readFileSync(config.accounts_file, 'utf8'));
}

const PROCONNECT_CLAIMS = {
  given_name: ['given_name'],
  usual_name: ['usual_name'],
  email: ['email'],
  uid: ['uid'],
  siret: ['siret'],
  siren: ['siren'],
  idp_id: ['idp_id'],
  organization_label: ['organization_label'],
  organizational_unit: ['organizational_unit'],
  belonging_population: ['belonging_population'],
  roles: ['roles'],
  phone: ['phone_number'],
  custom: ['custom'],
};

const REGION_CLAIMS = {
  email: ['email', 'email_verified'],
  profile: ['given_name', 'family_name', 'name'],
};

const claimsByScope = proconnect ? PROCONNECT_CLAIMS : REGION_CLAIMS;

const client = {
  ...config.client,
  response_types: ['code'],
  grant_types: ['authorization_code'],
  token_endpoint_auth_method: proconnect ? 'client_secret_post' : 'client_secret_basic',
  id_token_signed_response_alg: config.id_token_alg || (proconnect ? 'ES256' : 'RS256'),
};
const userinfoAlg = config.userinfo_alg || (proconnect ? 'ES256' : 'none');
if (userinfoAlg !== 'none') client.userinfo_signed_response_alg = userinfoAlg;

// The real ProConnect reports the level the person reached, which can be lower than the
// essential values asked for; oidc-provider would instead loop on its login prompt. Its
// essential-acr checks are removed so the ID token carries the person's level and the
// relying party has to check it again, as ProConnect's documentation requires.
const policy = interactionPolicy.base();
policy.get('login').checks.remove('essential_acrs');
policy.get('login').checks.remove('essential_acr');

const configuration = {
  clients: [client],
  // ProConnect's authorization parameters beyond the standard ones.
  extraParams: ['siret_hint', 'idp_hint'],
  jwks: {
    keys: [
      signingKey('ec', { namedCurve: 'P-256' }, 'ES256', 'es256-1'),
      signingKey('rsa', { modulusLength: 2048 }, 'RS256', 'rs256-1'),
    ],
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', ...Object.keys(claimsByScope)],
  claims: { openid: ['sub'], acr: null, ...claimsByScope },
  acrValues: proconnect ? ['eidas0', 'eidas1', 'eidas1-mfa', 'eidas2', 'eidas3'] : [],
  routes: {
    authorization: '/authorize',
    token: '/token',
    userinfo: '/userinfo',
    jwks: '/jwks',
    end_session: '/session/end',
  },
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
    userinfo: { enabled: true },
    jwtUserinfo: { enabled: userinfoAlg !== 'none' },
    // ProConnect ends its session at once; oidc-provider asks for a confirmation first.
    // The tests post it (field `logout=yes` in form `op.logoutForm`). This page keeps
    // the default's form and leaves out its external stylesheet.
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><html lang="fr"><body><h1>Se déconnecter ?</h1>${form}
<button type="submit" form="op.logoutForm" value="yes" name="logout">Oui</button></body></html>`;
      },
    },
  },
  // PKCE is optional at ProConnect; required here so a login proves our client sends it.
  pkce: { required: () => true },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 43200, Grant: 43200 },
  interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => {
    const person = accounts()[id];
    if (!person) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...person.claims }) };
  },
  // Consent is out of scope for these tests: every login grants what was asked.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;
const oidc = provider.callback();

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function loginPage(res, uid, params) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="fr"><body>
<h1>Fournisseur d'identité de test</h1>
<p>login_hint=<span id="login_hint">${encodeURIComponent(params.login_hint || '')}</span>
siret_hint=<span id="siret_hint">${encodeURIComponent(params.siret_hint || '')}</span>
idp_hint=<span id="idp_hint">${encodeURIComponent(params.idp_hint || '')}</span></p>
<form method="post" action="/interaction/${uid}">
<input name="login" value="">
<button type="submit" name="action" value="login">Se connecter</button>
<button type="submit" name="action" value="cancel">Annuler</button>
</form></body></html>`);
}

async function interaction(req, res, uid) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET') {
    loginPage(res, uid, details.params);
    return;
  }
  const form = await readForm(req);
  let result;
  if (form.get('action') === 'cancel') {
    result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
  } else {
    const person = accounts()[form.get('login')];
    if (!person) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('unknown login');
      return;
    }
    result = { login: { accountId: form.get('login'), acr: person.acr, amr: ['pwd'] } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// oidc-provider takes client_secret_basic and client_secret_post interchangeably;
// ProConnect does not take HTTP Basic. Each token request's method is printed, and
// Basic is refused when the client is registered for client_secret_post.
function tokenAuthAccepted(req) {
  const basic = /^basic /i.test(req.headers.authorization || '');
  process.stdout.write(`token-auth ${basic ? 'client_secret_basic' : 'client_secret_post'}\n`);
  return !(basic && client.token_endpoint_auth_method === 'client_secret_post');
}

const server = http.createServer(async (req, res) => {
  try {
    const match = req.url.match(/^\/interaction\/([\w-]+)$/);
    if (match) {
      await interaction(req, res, match[1]);
    } else if (req.method === 'POST' && req.url === `${config.base_path}/token`
      && !tokenAuthAccepted(req)) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'invalid_client', error_description: 'client_secret_post expected' }));
    } else if (req.url === config.base_path || req.url.startsWith(`${config.base_path}/`)) {
      // Mounted under the issuer's path, as ProConnect is under /api/v2.
      req.originalUrl = req.url;
      req.url = req.url.slice(config.base_path.length) || '/';
      oidc(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  } catch (error) {
    process.stderr.write(`upstream error: ${error.stack}\n`);
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('internal error');
  }
});

server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
