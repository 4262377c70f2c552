import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAgentSvid, newAgentKeyRequest } from '../../../src/agent/attestation/agent-svid.js';
import { AgentSvidExpiredError, bootstrapAgent } from '../../../src/agent/attestation/bootstrap.js';
import { attestAgent } from '../../../src/agent/attestation/node-attestation.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { openAgentStore } from '../../../src/agent/storage/agent-store.js';
import { encodeSpiffeBundle } from '../../../src/common/bundle-json.js';
import { isEmblemError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/logger.js';
import { concatDer } from '../../../src/common/x509/chain.js';
import { parseCsr } from '../../../src/common/x509/csr.js';
import { exportPkcs8Der } from '../../../src/common/x509/keys.js';
import { CHALLENGE_BYTES, signChallenge, verifyChallengeResponse } from '../../../src/common/x509pop-challenge.js';
import { AGENT_ID, createTestPki, NodeApiDouble, TD, type TestPki } from '../client/node-api-double.js';

const X509POP_AGENT_ID = `spiffe://${TD}/emblem/agent/x509pop/abc`;
const JOIN_TOKEN = '0123456789abcdef0123456789abcdef';

describe('x509pop challenge', () => {
  const keys: [string, { privateKey: KeyObject; publicKey: KeyObject }][] = [
    ['EC P-256', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['EC P-384', generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ['RSA 2048', generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['Ed25519', generateKeyPairSync('ed25519')],
  ];
  for (const [name, pair] of keys) {
    it(`signs and verifies with ${name}`, () => {
      const challenge = randomBytes(CHALLENGE_BYTES);
      const response = signChallenge(pair.privateKey, challenge);
      assert.ok(verifyChallengeResponse(pair.publicKey, challenge, response));
      const other = Buffer.from(challenge);
      other[0]! ^= 1;
      assert.equal(verifyChallengeResponse(pair.publicKey, other, response), false, 'another challenge');
      const wrongKey = keys.find(([n]) => n !== name)![1].publicKey;
      assert.equal(verifyChallengeResponse(wrongKey, challenge, response), false, 'another key');
      assert.equal(verifyChallengeResponse(pair.publicKey, challenge, Buffer.alloc(0)), false);
    });
  }

  it('signs exactly SHA-256 over the challenge (ECDSA DER, RSA PKCS#1 v1.5)', async () => {
    const { verify, constants } = await import('node:crypto');
    const challenge = randomBytes(32);
    const [, ec] = keys[0]!;
    assert.ok(verify('sha256', challenge, { key: ec.publicKey, dsaEncoding: 'der' }, signChallenge(ec.privateKey, challenge)));
    const [, rsa] = keys[2]!;
    const sig = signChallenge(rsa.privateKey, challenge);
    assert.ok(verify('sha256', challenge, { key: rsa.publicKey, padding: constants.RSA_PKCS1_PADDING }, sig));
  });

  it('refuses short challenges and unsupported keys', () => {
    const [, ec] = keys[0]!;
    assert.throws(() => signChallenge(ec.privateKey, randomBytes(8)), /challenge must be/);
    assert.equal(verifyChallengeResponse(ec.publicKey, randomBytes(8), Buffer.alloc(64)), false);
    const x = generateKeyPairSync('x25519');
    assert.throws(() => signChallenge(x.privateKey, randomBytes(32)), /not supported/);
    assert.throws(() => signChallenge(ec.publicKey, randomBytes(32)), /needs a private key/);
  });
});

/** An AttestAgent handler like the server's: join token or x509pop with a challenge. */
type Wire = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- proto-loader objects

function attestHandler(pki: TestPki, seen: { params: unknown[] }, opts: { resultId?: string } = {}): grpc.UntypedHandleCall {
  return ((call: grpc.ServerDuplexStream<Wire, unknown>) => {
    const fail = (code: grpc.status, details: string) => call.emit('error', { code, details });
    const finish = (agentId: string, csr: Buffer) => {
      const chain = pki.mint(opts.resultId ?? agentId, parseCsr(csr).publicKey, 3600);
      call.write({ result: { agent_id: agentId, svid_chain: concatDer(chain), bundle: Buffer.from(encodeSpiffeBundle(pki.bundle)) } });
      call.end();
    };
    call.once('data', (first: Wire) => {
      seen.params.push(first.params);
      const p = first.params;
      if (p.attestor === 'join_token') {
        if (p.join_token !== JOIN_TOKEN) return fail(grpc.status.PERMISSION_DENIED, 'join token is not valid');
        return finish(AGENT_ID, p.csr);
      }
      const leaf = new X509Certificate(p.x509pop.cert_chain[0]);
      const challenge = randomBytes(32);
      call.write({ challenge });
      call.once('data', (answer: Wire) => {
        if (verifyChallengeResponse(leaf.publicKey, challenge, answer.challenge_response)) finish(X509POP_AGENT_ID, p.csr);
        else fail(grpc.status.PERMISSION_DENIED, 'x509pop: challenge response does not verify');
      });
    });
  }) as grpc.UntypedHandleCall;
}

describe('node attestation over AttestAgent (real TLS)', () => {
  const pki = createTestPki();
  const seen = { params: [] as unknown[] };
  const doubles: NodeApiDouble[] = [];
  const clients: ServerClient[] = [];
  let dir: string;

  async function double(options: { serverSpiffeId?: string; resultId?: string } = {}): Promise<NodeApiDouble> {
    const d = await NodeApiDouble.start({
      pki,
      requireClientCert: false,
      ...(options.serverSpiffeId ? { serverSpiffeId: options.serverSpiffeId } : {}),
      handlers: { AttestAgent: attestHandler(pki, seen, options) },
    });
    doubles.push(d);
    return d;
  }
  function client(d: NodeApiDouble, trust: { anchors?: Buffer[]; insecure?: boolean } = { anchors: [pki.caDer] }): ServerClient {
    const c = new ServerClient({
      serverAddress: d.address,
      trustDomain: TD,
      ...(trust.anchors ? { bootstrapAnchors: trust.anchors } : {}),
      insecureBootstrap: trust.insecure ?? false,
    });
    clients.push(c);
    return c;
  }

  beforeEach(() => {
    seen.params.length = 0;
    dir = mkdtempSync(join(tmpdir(), 'emblem-attest-'));
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const d of doubles.splice(0)) await d.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('attests with a join token and gets a verified SVID for the new key', async () => {
    const d = await double();
    const { keyPair, csr } = newAgentKeyRequest();
    const result = await attestAgent(client(d), { joinToken: JOIN_TOKEN }, csr);
    assert.equal(result.agentId, AGENT_ID);
    assert.ok(result.bundle.x509Authorities[0]!.equals(pki.caDer));
    checkAgentSvid(result.svidChain, keyPair.publicKey, AGENT_ID);
    assert.equal((seen.params[0] as { join_token: string }).join_token, JOIN_TOKEN);
  });

  it('attests with x509pop, answering the challenge with the node key', async () => {
    const d = await double();
    const node = pki.identity(`spiffe://${TD}/node/n1`);
    const { csr } = newAgentKeyRequest();
    const result = await attestAgent(client(d), { x509pop: { certChain: node.chain, privateKey: node.privateKey } }, csr);
    assert.equal(result.agentId, X509POP_AGENT_ID);
  });

  it('fails x509pop with a key that does not match the certificate', async () => {
    const d = await double();
    const node = pki.identity(`spiffe://${TD}/node/n1`);
    const other = pki.identity(`spiffe://${TD}/node/n2`);
    const { csr } = newAgentKeyRequest();
    await assert.rejects(attestAgent(client(d), { x509pop: { certChain: node.chain, privateKey: other.privateKey } }, csr), (err: unknown) =>
      isEmblemError(err, 'permission_denied'),
    );
  });

  it('reports a refused join token as permission_denied', async () => {
    const d = await double();
    await assert.rejects(attestAgent(client(d), { joinToken: 'ffffffffffffffffffffffffffffffff' }, newAgentKeyRequest().csr), (err: unknown) => {
      assert.ok(isEmblemError(err, 'permission_denied'));
      assert.match(err.message, /join token is not valid/);
      return true;
    });
  });

  it('rejects a result whose SVID does not name the agent ID', async () => {
    const d = await double({ resultId: `spiffe://${TD}/emblem/agent/someone-else` });
    await assert.rejects(attestAgent(client(d), { joinToken: JOIN_TOKEN }, newAgentKeyRequest().csr), /unusable attestation result/);
  });

  it('does not talk to a server whose chain is not trusted', async () => {
    const d = await double();
    const stranger = createTestPki();
    await assert.rejects(attestAgent(client(d, { anchors: [stranger.caDer] }), { joinToken: JOIN_TOKEN }, newAgentKeyRequest().csr), (err: unknown) =>
      isEmblemError(err, 'unavailable'),
    );
    assert.equal(seen.params.length, 0);
  });

  it('does not talk to a trusted server that is not spiffe://<td>/emblem/server', async () => {
    const d = await double({ serverSpiffeId: `spiffe://${TD}/not-the-server` });
    await assert.rejects(attestAgent(client(d), { joinToken: JOIN_TOKEN }, newAgentKeyRequest().csr));
    assert.equal(seen.params.length, 0);
  });

  it('insecure bootstrap skips chain verification but still checks the server ID first', async () => {
    const good = await double();
    const result = await attestAgent(client(good, { insecure: true }), { joinToken: JOIN_TOKEN }, newAgentKeyRequest().csr);
    assert.equal(result.agentId, AGENT_ID);

    const wrong = await double({ serverSpiffeId: `spiffe://${TD}/imposter` });
    seen.params.length = 0;
    await assert.rejects(attestAgent(client(wrong, { insecure: true }), { joinToken: JOIN_TOKEN }, newAgentKeyRequest().csr), (err: unknown) => {
      assert.ok(isEmblemError(err, 'permission_denied'));
      assert.match(err.message, /imposter/);
      return true;
    });
    assert.equal(seen.params.length, 0, 'the join token was never sent');
  });

  it('refuses to attest without any trust source', async () => {
    const d = await double();
    await assert.rejects(attestAgent(client(d, {}), { joinToken: JOIN_TOKEN }, newAgentKeyRequest().csr), /--trust-bundle/);
  });

  describe('bootstrapAgent', () => {
    it('attests once, persists, then reuses the stored SVID', async () => {
      const d = await double();
      const store = await openAgentStore({ dataDir: dir, trustDomain: TD });
      try {
        const first = await bootstrapAgent({ transport: client(d), store, attestor: { joinToken: JOIN_TOKEN }, logger: silentLogger() });
        assert.equal(first.attested, true);
        const snapshot = await store.load();
        assert.equal(snapshot.agentSvid?.agentId, AGENT_ID);
        assert.equal(snapshot.agentSvid?.attestationType, 'join_token');
        assert.ok(snapshot.bundle);
        const second = await bootstrapAgent({ transport: client(d), store, stored: snapshot.agentSvid!, attestor: { joinToken: JOIN_TOKEN }, logger: silentLogger() });
        assert.equal(second.attested, false);
        assert.equal(seen.params.length, 1, 'the join token is used once');
      } finally {
        await store.close();
      }
    });

    it('stops a join-token agent whose SVID expired, with a distinct error', async () => {
      const d = await double();
      const store = await openAgentStore({ dataDir: dir, trustDomain: TD });
      try {
        const old = pki.identity(AGENT_ID, 60, Date.now() - 3600_000);
        const stored = { agentId: AGENT_ID, attestationType: 'join_token' as const, chain: old.chain, privateKeyPkcs8: exportPkcs8Der(old.privateKey) };
        await assert.rejects(bootstrapAgent({ transport: client(d), store, stored, logger: silentLogger() }), (err: unknown) => {
          assert.ok(err instanceof AgentSvidExpiredError);
          assert.match(err.message, /cannot re-attest.*new join token/);
          assert.doesNotMatch(err.message, new RegExp(JOIN_TOKEN), 'the token part of the ID is not shown');
          return true;
        });
      } finally {
        await store.close();
      }
    });

    it('requires an attestor on first start', async () => {
      const d = await double();
      const store = await openAgentStore({ dataDir: dir, trustDomain: TD });
      try {
        await assert.rejects(bootstrapAgent({ transport: client(d), store, logger: silentLogger() }), /--join-token, or --x509pop-cert/);
      } finally {
        await store.close();
      }
    });
  });
});
