// node-oidc-provider (v8), configured like idp's token endpoint, for bench/token_bench.py.
//
//   node bench/node/server.js CONFIG.json
//
// CONFIG.json (written by token_bench.py) holds: issuer, host, port, workers
// (0 = one process, N = node's cluster module with N worker processes), resource,
// scope, ttl, clock_tolerance, signing_jwk (private, ES256), clients (node-oidc-provider
// client metadata: the same client_ids, keys and secret as idp's clients), and, for the
// cluster, redis_url + redis_prefix.
//
// Equivalent to idp where the benchmark looks:
// - POST /oidc/token: client_credentials only; client_secret_basic and private_key_jwt
//   (ES256, RS256); scope user:read; a JWT access token (RFC 9068, typ at+jwt, ES256)
//   through resource indicators with a default resource, lifetime `ttl`;
// - private_key_jwt replay detection (jti used once): node-oidc-provider's
//   ReplayDetection model, stored by the adapter below. One process keeps it in memory
//   (a Map with expiry; the library's own memory adapter is a 1000-entry LRU that
//   forgets older jtis). Cluster workers do not share memory, so the cluster keeps
//   ReplayDetection in Redis (as idp does in its production profile);
// - GET /oidc/jwks: the public signing key.
// Nothing else is enabled (no interactions, introspection or revocation).
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// -- storage ------------------------------------------------------------------------

const memory = new Map(); // key -> { payload, expiresAt (ms) }

function sweep() {
  const now = Date.now();
  for (const [key, entry] of memory) {
    if (entry.expiresAt <= now) memory.delete(key);
  }
}
setInterval(sweep, 10_000).unref();

class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    memory.set(this.key(id), { payload, expiresAt });
    if (payload.uid) memory.set(`uid:${payload.uid}`, { payload: id, expiresAt });
    if (payload.userCode) memory.set(`userCode:${payload.userCode}`, { payload: id, expiresAt });
  }

  static get(key) {
    const entry = memory.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      memory.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async find(id) {
    return MemoryAdapter.get(this.key(id));
  }

  async findByUid(uid) {
    const id = MemoryAdapter.get(`uid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = MemoryAdapter.get(`userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    const payload = MemoryAdapter.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    memory.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of memory) {
      if (entry.payload && entry.payload.grantId === grantId) memory.delete(key);
    }
  }
}

let redis = null;

class RedisReplayAdapter extends MemoryAdapter {
  key(id) {
    return `${config.redis_prefix}${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    await redis.set(this.key(id), JSON.stringify(payload), 'EX', Math.max(1, Math.ceil(expiresIn)));
  }

  async find(id) {
    const value = await redis.get(this.key(id));
    return value ? JSON.parse(value) : undefined;
  }

  async destroy(id) {
    await redis.del(this.key(id));
  }
}

function adapterFor(model) {
  if (redis && model === 'ReplayDetection') return new RedisReplayAdapter(model);
  return new MemoryAdapter(model);
}

// -- the provider -------------------------------------------------------------------

function resourceServer(resource) {
  if (resource !== config.resource) throw new errors.InvalidTarget();
  return {
    scope: config.scope,
    audience: config.resource,
    accessTokenTTL: config.ttl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'ES256' } },
  };
}

async function serve() {
  if (config.workers > 0) {
    const { default: Redis } = await import('ioredis');
    redis = new Redis(config.redis_url, { enableAutoPipelining: true });
  }
  const provider = new Provider(config.issuer, {
    adapter: adapterFor,
    clients: config.clients,
    jwks: { keys: [config.signing_jwk] },
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt'],
    clientDefaults: {
      grant_types: ['client_credentials'],
      id_token_signed_response_alg: 'ES256',
      response_types: [],
    },
    enabledJWA: { clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'] },
    clockTolerance: config.clock_tolerance,
    scopes: ['openid', ...config.scope.split(' ')],
    ttl: { ClientCredentials: config.ttl },
    routes: { token: '/oidc/token', jwks: '/oidc/jwks' },
    cookies: { keys: [config.cookie_key] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => resourceServer(resource),
      },
    },
  });
  provider.on('server_error', (ctx, error) => {
    console.error(`server_error: ${error.stack || error}`);
  });
  provider.listen(config.port, config.host, () => {
    console.log(`pid ${process.pid} listening on http://${config.host}:${config.port}`);
  });
}

if (config.workers > 0 && cluster.isPrimary) {
  for (let i = 0; i < config.workers; i += 1) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} exited (${signal || code})`);
  });
  const stop = () => {
    for (const worker of Object.values(cluster.workers)) worker.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  await serve();
}
