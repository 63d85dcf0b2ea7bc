// A portal module written with openid-client (panva), a certified relying-party
// library that is not ours. The pytest suite starts it, reads its JSON lines on
// stdout and answers on stdin:
//
//   -> {"authorization_url": ...}            the person must be sent there
//   <- the callback URL the provider redirected to
//   -> {"results": {...}}                    what the library saw, step by step
//   -> {"end_session_url": ...}              RP-initiated logout
//
// Every check the library makes (ID token signature against the JWKS, iss, aud,
// exp, iat, nonce, state, PKCE, the `iss` authorization response parameter) is its
// own; this script only records what it answered.
'use strict';

const readline = require('node:readline');
const { Issuer, generators, errors, custom } = require('openid-client');

const config = JSON.parse(process.argv[2]);
const lines = readline.createInterface({ input: process.stdin });
const pending = [];
lines.on('line', (line) => pending.shift()?.(line));

function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function nextLine() {
  return new Promise((resolve) => pending.push(resolve));
}

// The error the provider answered, or "no error" when the call succeeded.
async function oauthError(call) {
  try {
    await call();
    return 'no error';
  } catch (e) {
    if (e instanceof errors.OPError) {
      return e.error;
    }
    throw e;
  }
}

async function main() {
  custom.setHttpOptionsDefaults({ timeout: 10000 });
  const issuer = await Issuer.discover(config.issuer);
  const client = new issuer.Client({
    client_id: config.client_id,
    client_secret: config.client_secret,
    redirect_uris: [config.redirect_uri],
    post_logout_redirect_uris: [config.post_logout_redirect_uri],
    response_types: ['code'],
    id_token_signed_response_alg: config.id_token_alg || 'ES256',
    token_endpoint_auth_method: config.auth_method || 'client_secret_basic',
  });
  const codeVerifier = generators.codeVerifier();
  const state = generators.state();
  const nonce = generators.nonce();
  say({
    authorization_url: client.authorizationUrl({
      scope: 'openid profile email',
      code_challenge: generators.codeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    }),
  });

  const callbackUrl = await nextLine();
  const params = client.callbackParams(callbackUrl);
  const first = await client.callback(config.redirect_uri, params, {
    code_verifier: codeVerifier,
    state,
    nonce,
    response_type: 'code',
  });
  const results = {
    issuer: issuer.issuer,
    id_token_claims: first.claims(),
    id_token_alg: JSON.parse(Buffer.from(first.id_token.split('.')[0], 'base64url')).alg,
  };
  results.userinfo = await client.userinfo(first.access_token);
  results.introspected_access = await client.introspect(first.access_token, 'access_token');
  results.introspected_refresh = await client.introspect(first.refresh_token, 'refresh_token');

  const second = await client.refresh(first.refresh_token);
  results.rotated = second.refresh_token !== first.refresh_token;
  results.refreshed_claims = second.claims();
  results.second_access_active = (await client.introspect(second.access_token)).active;
  await client.revoke(second.access_token, 'access_token');
  results.revoked_access_active = (await client.introspect(second.access_token)).active;
  results.userinfo_after_revocation = await oauthError(() => client.userinfo(second.access_token));

  // Presenting the first refresh token again is a reuse: the whole family goes.
  results.reuse_error = await oauthError(() => client.refresh(first.refresh_token));
  results.family_refresh_active = (await client.introspect(second.refresh_token)).active;
  results.refresh_after_reuse_error = await oauthError(() => client.refresh(second.refresh_token));
  say({ results });

  say({
    end_session_url: client.endSessionUrl({
      id_token_hint: first.id_token,
      post_logout_redirect_uri: config.post_logout_redirect_uri,
      state: 'bye-' + state,
    }),
    logout_state: 'bye-' + state,
  });
}

main()
  .then(() => process.exit(0))
  .catch((e) => {
    say({ failure: `${e.name}: ${e.message}` });
    process.exit(1);
  });
