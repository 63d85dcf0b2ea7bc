// The benchmark's reference: the `oidc-provider` npm package serving the same
// `client_credentials` and JWKS scenarios as DGE Identity, on 127.0.0.1 only.
//
// Usage: node oidc-provider-ref.mjs PORT CLIENT_ID CLIENT_SECRET
//
// Set up like ours for a fair comparison: one ES256 signing key, a confidential
// client authenticating with client_secret_basic, access tokens signed as JWTs
// (ours are JWTs too) for one resource server. Prints "ready <issuer>" once listening.
// The package's in-memory adapter keeps what it issues; nothing here touches disk.

import { generateKeyPairSync } from 'node:crypto';

import Provider from 'oidc-provider';

const [port, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:dge:bench';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const key = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', kid: 'bench', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [key] },
  scopes: ['authz:check'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      getResourceServerInfo: () => ({
        scope: 'authz:check',
        audience: resource,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
      useGrantedResource: () => true,
    },
  },
});
// Silence the per-request error events the package emits for bad requests.
provider.on('server_error', (_ctx, err) => console.error(err));

provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
