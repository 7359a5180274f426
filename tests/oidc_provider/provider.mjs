// A real OpenID provider (panva's certified oidc-provider) for the single sign-on browser
// test (tests/accounts/test_browser_oidc.py), on http://127.0.0.1:$PORT.
//
// One confidential client ($CLIENT_ID / $CLIENT_SECRET, redirect URI $REDIRECT_URI), an
// RS256 key made at start, and the provider's own development log-in and consent pages
// (any login name, any password). An account's claims are read from the JSON file
// $CLAIMS_FILE at every use, {"<login>": {"email": ..., "groups": [...]}, ...}, so that a
// test can change them between two log-ins; the login name is the account's `sub`.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

import Provider from "oidc-provider";

const { PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CLAIMS_FILE } = process.env;
const GROUPS_CLAIM = process.env.GROUPS_CLAIM || "groups";
for (const [name, value] of Object.entries({ PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, CLAIMS_FILE })) {
  if (!value) {
    console.error(`provider.mjs: set ${name}`);
    process.exit(2);
  }
}

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "test-rs256", alg: "RS256", use: "sig" };

function claimsOf(login) {
  const accounts = JSON.parse(readFileSync(CLAIMS_FILE, "utf8"));
  return Object.hasOwn(accounts, login) ? accounts[login] : undefined;
}

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  // Claims by scope; "groups" is a scope of its own, as at most company providers.
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username", "name", "given_name", "family_name"],
    groups: [GROUPS_CLAIM],
  },
  scopes: ["openid", "email", "profile", "groups"],
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, login) {
    if (!claimsOf(login)) {
      return undefined;
    }
    return {
      accountId: login,
      async claims() {
        return { ...claimsOf(login), sub: login };
      },
    };
  },
});

const server = provider.listen(Number(PORT), "127.0.0.1", () => {
  console.log(`oidc-provider listening at ${provider.issuer}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
