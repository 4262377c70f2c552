import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { SvidCache } from '../../../src/agent/cache/svid-cache.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { terminationFromError } from '../../../src/agent/client/termination.js';
import { serverCertificateMismatch } from '../../../src/agent/client/tls-credentials.js';
import { isEmblemError } from '../../../src/common/errors.js';
import { serverId } from '../../../src/common/spiffe-id.js';
import { AGENT_ID, createTestPki, NodeApiDouble, TD } from './node-api-double.js';

describe('server client', () => {
  const pki = createTestPki();
  const agent = pki.identity(AGENT_ID);
  let double: NodeApiDouble | undefined;
  let client: ServerClient | undefined;

  afterEach(async () => {
    client?.close();
    await double?.close();
    client = undefined;
    double = undefined;
  });

  async function connect(handlers: Record<string, grpc.UntypedHandleCall>, rpcTimeoutMs?: number): Promise<ServerClient> {
    double = await NodeApiDouble.start({ pki, handlers });
    client = new ServerClient({ serverAddress: double.address, trustDomain: TD, bootstrapAnchors: [pki.caDer], ...(rpcTimeoutMs ? { rpcTimeoutMs } : {}) });
    client.setAgentSvid({ chain: agent.chain, privateKey: agent.privateKey });
    return client;
  }

  it('accepts only the server SPIFFE ID of its trust domain', () => {
    assert.equal(serverCertificateMismatch(TD, pki.identity(serverId(TD)).chain[0]), undefined);
    assert.match(serverCertificateMismatch(TD, pki.identity(`spiffe://${TD}/emblem/server2`).chain[0])!, /expected spiffe:\/\/example.org\/emblem\/server/);
    assert.match(serverCertificateMismatch('other.org', pki.identity(serverId(TD)).chain[0])!, /expected spiffe:\/\/other.org/);
    assert.match(serverCertificateMismatch(TD, Buffer.from('junk'))!, /cannot be parsed/);
    assert.match(serverCertificateMismatch(TD, undefined)!, /no certificate/);
  });

  it('mints JWT-SVIDs through NewJWTSVID for the cache, reusing them', async () => {
    const requests: { entry_id: string; audience: string[] }[] = [];
    const c = await connect({
      NewJWTSVID: ((call: grpc.ServerUnaryCall<{ entry_id: string; audience: string[] }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        requests.push(call.request);
        cb(null, { token: `token-${requests.length}`, expires_at: Math.floor(Date.now() / 1000) + 300 });
      }) as grpc.UntypedHandleCall,
    });
    const cache = new SvidCache({ mintJwtSvid: (id, aud) => c.newJwtSvid(id, aud) });
    cache.applySync({
      full: true,
      deletedIds: [],
      upserted: [{ id: 'e1', spiffeId: `spiffe://${TD}/w`, parentId: AGENT_ID, selectors: [{ type: 'unix', value: 'uid:1' }], federatesWith: [], hint: '', jwtSvidTtl: 0, createdAt: 1, revision: 1 }],
    });
    const a = await cache.fetchJwtSvid('e1', ['b', 'a']);
    const b = await cache.fetchJwtSvid('e1', ['a', 'b']);
    assert.equal(a.token, 'token-1');
    assert.equal(b.token, 'token-1');
    assert.deepEqual(requests, [{ entry_id: 'e1', audience: ['a', 'b'] }]);
  });

  it('turns gRPC statuses into Emblem errors and recognises ban / eviction', async () => {
    const c = await connect({
      NewJWTSVID: ((_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.PERMISSION_DENIED, details: 'agent is banned' })) as grpc.UntypedHandleCall,
    });
    await assert.rejects(c.newJwtSvid('e1', ['a']), (err: unknown) => {
      assert.ok(isEmblemError(err, 'permission_denied'));
      assert.equal(terminationFromError(err), 'banned');
      return true;
    });
  });

  it('puts a deadline on unary calls', async () => {
    const c = await connect({ RenewAgent: (() => undefined) as grpc.UntypedHandleCall }, 200);
    const started = Date.now();
    await assert.rejects(c.renewAgent(Buffer.from('x')), (err: unknown) => isEmblemError(err, 'deadline_exceeded'));
    assert.ok(Date.now() - started < 5000);
  });

  it('refuses calls before it has an SVID, and replaces the channel only when credentials change', async () => {
    double = await NodeApiDouble.start({ pki });
    client = new ServerClient({ serverAddress: double.address, trustDomain: TD, bootstrapAnchors: [pki.caDer] });
    await assert.rejects(client.batchNewX509Svid([]), (err: unknown) => isEmblemError(err, 'unavailable'));
    let changes = 0;
    client.onChannelChange(() => changes++);
    client.setAgentSvid({ chain: agent.chain, privateKey: agent.privateKey });
    assert.equal(changes, 1);
    client.setBundle(pki.bundle);
    assert.equal(changes, 1, 'the first bundle holds the bootstrap anchors: same channel');
    client.setBundle({ ...pki.bundle, sequence: 2 });
    assert.equal(changes, 1, 'same X.509 authorities: same channel');
    client.setBundle({ ...pki.bundle, x509Authorities: [pki.caDer, createTestPki().caDer] });
    assert.equal(changes, 2);
    double.signable.set('e1', `spiffe://${TD}/w`);
    assert.deepEqual(await client.batchNewX509Svid([]), []);
  });
});
