// A real OpenID provider for berth's tests: panva's oidc-provider (OpenID certified), on a
// loopback port, with its development login and consent pages (any password; the login
// is the account). Settings come from the environment:
//   PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ACCOUNTS (JSON: account → its claims),
//   TAMPER: '' (none), 'wrong-nonce' or 'other-key' — fault injection beside the real
//   provider: the token endpoint's ID token is signed again with another nonce (by the
//   provider's own key) or by a key the provider does not publish.
import Provider from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const tamper = process.env.TAMPER || '';

const real = await jose.generateKeyPair('RS256', { extractable: true });
const other = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(real.privateKey)), kid: 'real', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['berth-test-provider-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    if (!accounts[id]) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...accounts[id] }; } };
  },
});

if (tamper) {
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.body && ctx.body.id_token) {
      const payload = jose.decodeJwt(ctx.body.id_token);
      let key = real.privateKey;
      if (tamper === 'wrong-nonce') payload.nonce = 'a-nonce-berth-never-sent';
      if (tamper === 'other-key') key = other.privateKey;
      ctx.body.id_token = await new jose.SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: 'real' }).sign(key);
    }
  });
}

provider.listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
