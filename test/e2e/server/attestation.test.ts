// Node attestation against a real server (real TLS on 127.0.0.1, real level store): join tokens
// and x509pop under both trust models, every refusal, and the per-address rate limit.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { attestAgent, type NodeAttestor } from '../../../src/agent/attestation/node-attestation.js';
import { ServerClient } from '../../../src/agent/client/server-client.js';
import { isEmblemError, type ErrorCode } from '../../../src/common/errors.js';
import { readCertificate } from '../../../src/common/x509/cert-info.js';
import { createCsr } from '../../../src/common/x509/csr.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { verifyX509SvidChain } from '../../../src/common/x509/validate.js';
import { createPopCa, createPopIntermediate, createPopLeaf, createSelfSignedPopLeaf, sha1Hex, type PopCa, type PopLeaf } from '../../helpers/pki.js';
import {
  assertNoSecretsLogged,
  attestTestAgent,
  fetchBundle,
  newJoinToken,
  newServerDir,
  startTestServer,
  type ServerTarget,
  type TestServer,
} from '../../helpers/server-harness.js';

interface AgentMsg {
  id: string;
  attestation_type: string;
  selectors: { type: string; value: string }[];
  svid_serial: string;
  banned: boolean;
  can_reattest: boolean;
}

async function agentIds(server: ServerTarget): Promise<string[]> {
  const res = await server.admin.call<{ agents: AgentMsg[] }>('ListAgents', {});
  return res.agents.map((a) => a.id).sort();
}

/** Attests with a fresh client and expects a refusal with `code`; returns the error message. */
async function expectRefused(server: ServerTarget, attestor: NodeAttestor, code: ErrorCode): Promise<string> {
  const before = await agentIds(server);
  const bundle = await fetchBundle(server);
  const client = new ServerClient({ serverAddress: server.address, trustDomain: server.trustDomain, bootstrapAnchors: bundle.x509Authorities });
  try {
    await attestAgent(client, attestor, createCsr(generateKeyPair()), { timeoutMs: 10_000 });
    assert.fail('attestation should have been refused');
  } catch (err) {
    assert.ok(isEmblemError(err), `expected an EmblemError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.deepEqual(await agentIds(server), before, 'a refused attestation stores no agent');
    return err.message;
  } finally {
    client.close();
  }
}

const pop = (leaf: PopLeaf, privateKey: KeyObject = leaf.privateKey): NodeAttestor => ({ x509pop: { certChain: leaf.chain, privateKey } });

describe('e2e: node attestation', function () {
  this.timeout(20_000);
  let server: TestServer;
  let ca: PopCa;
  let otherCa: PopCa;
  let pinned: PopLeaf;
  let dir: string;
  /** Every join token this file sends; none may appear in the server's log. */
  const tokens: string[] = [];
  const token = async (ttl = 0) => {
    const created = await newJoinToken(server, ttl);
    tokens.push(created.token);
    return created;
  };

  before(async () => {
    ca = await createPopCa('Node CA');
    otherCa = await createPopCa('Other CA');
    pinned = await createSelfSignedPopLeaf('pinned-node');
    dir = newServerDir();
    const caFile = join(dir, 'node-ca.pem');
    writeFileSync(caFile, ca.pem);
    server = await startTestServer({ x509popCaBundles: [caFile], x509popPinned: [pinned.sha256] }, { dir });
  });

  after(async () => {
    await server?.stop();
  });

  it('attests with a join token: agent ID from the token, SVID chains to the bundle, agent and ledger rows stored', async () => {
    const { token: value, agent_id } = await token();
    assert.match(value, /^[0-9a-f]{32}$/);
    const agent = await attestTestAgent(server, { joinToken: value });
    try {
      assert.equal(agent.id, `spiffe://${server.trustDomain}/emblem/agent/join_token/${value}`);
      assert.equal(agent.id, agent_id);
      const bundle = await fetchBundle(server);
      const verified = verifyX509SvidChain(agent.chain, (td) => (td === server.trustDomain ? bundle.x509Authorities : undefined));
      assert.equal(verified.spiffeId.uri, agent.id);

      const stored = await server.admin.call<AgentMsg>('GetAgent', { id: agent.id });
      assert.equal(stored.attestation_type, 'join_token');
      assert.equal(stored.banned, false);
      assert.equal(stored.can_reattest, false);
      assert.equal(stored.svid_serial.replace(/^0+/, ''), readCertificate(agent.chain[0]!).serial.toLowerCase().replace(/^0+/, ''));

      const ledger = await server.admin.call<{ svids: { kind: string; spiffe_id: string; serial: string }[] }>('ListSVIDs', { agent_id: agent.id });
      assert.deepEqual(
        ledger.svids.map((s) => [s.kind, s.spiffe_id, s.serial]),
        [['agent', agent.id, stored.svid_serial]],
      );
      // The agent can make authenticated calls with its new SVID.
      assert.deepEqual(await agent.client.batchNewX509Svid([]), []);
    } finally {
      agent.close();
    }
  });

  it('refuses a reused join token', async () => {
    const { token: value } = await token();
    const agent = await attestTestAgent(server, { joinToken: value });
    agent.close();
    assert.match(await expectRefused(server, { joinToken: value }, 'permission_denied'), /join token/);
  });

  it('refuses an expired join token', async () => {
    const { token: value, expires_at } = await token(1);
    await new Promise((r) => setTimeout(r, Math.max(0, (expires_at + 1) * 1000 - Date.now()) + 20));
    assert.match(await expectRefused(server, { joinToken: value }, 'permission_denied'), /join token/);
  });

  it('refuses unknown and malformed join tokens', async () => {
    tokens.push('0123456789abcdef0123456789abcdef', 'not-a-token');
    await expectRefused(server, { joinToken: '0123456789abcdef0123456789abcdef' }, 'permission_denied');
    await expectRefused(server, { joinToken: 'not-a-token' }, 'permission_denied');
  });

  it('attests a CA-signed x509pop node: ID from the leaf SHA-1, selectors from the certificate', async () => {
    const leaf = await createPopLeaf(ca, 'node-1.example');
    const agent = await attestTestAgent(server, pop(leaf));
    try {
      assert.equal(agent.id, `spiffe://${server.trustDomain}/emblem/agent/x509pop/${leaf.sha1}`);
      const stored = await server.admin.call<AgentMsg>('GetAgent', { id: agent.id });
      assert.equal(stored.attestation_type, 'x509pop');
      assert.equal(stored.can_reattest, true);
      assert.deepEqual(
        stored.selectors.map((s) => `${s.type}:${s.value}`).sort(),
        [
          `x509pop:ca:fingerprint:${sha1Hex(ca.der)}`,
          `x509pop:serialnumber:${leaf.serial}`,
          'x509pop:subject:cn:node-1.example',
        ].sort(),
      );
      // x509pop agents may attest again with the same certificate (same ID, new SVID).
      const again = await attestTestAgent(server, pop(leaf));
      again.close();
      assert.equal(again.id, agent.id);
      assert.notEqual(readCertificate(again.chain[0]!).serial, readCertificate(agent.chain[0]!).serial);
    } finally {
      agent.close();
    }
  });

  it('attests an x509pop node whose certificate comes with an intermediate CA', async () => {
    const intermediate = await createPopIntermediate(ca, 'Node Issuing CA');
    const leaf = await createPopLeaf(intermediate, 'node-2.example', {}, [intermediate.der]);
    const agent = await attestTestAgent(server, pop(leaf));
    agent.close();
    assert.equal(agent.id, `spiffe://${server.trustDomain}/emblem/agent/x509pop/${leaf.sha1}`);
    const stored = await server.admin.call<AgentMsg>('GetAgent', { id: agent.id });
    assert.deepEqual(
      stored.selectors.map((s) => `${s.type}:${s.value}`).sort(),
      [
        `x509pop:ca:fingerprint:${sha1Hex(intermediate.der)}`,
        `x509pop:ca:fingerprint:${sha1Hex(ca.der)}`,
        `x509pop:serialnumber:${leaf.serial}`,
        'x509pop:subject:cn:node-2.example',
      ].sort(),
    );
    // Without its intermediate the certificate does not chain to the configured CA.
    const bare = { ...leaf, chain: [leaf.der] };
    assert.match(await expectRefused(server, pop(bare), 'permission_denied'), /does not chain/);
  });

  it('attests a pinned self-signed x509pop node', async () => {
    const agent = await attestTestAgent(server, pop(pinned));
    agent.close();
    assert.equal(agent.id, `spiffe://${server.trustDomain}/emblem/agent/x509pop/${pinned.sha1}`);
    const stored = await server.admin.call<AgentMsg>('GetAgent', { id: agent.id });
    assert.deepEqual(
      stored.selectors.map((s) => `${s.type}:${s.value}`).sort(),
      [`x509pop:serialnumber:${pinned.serial}`, 'x509pop:subject:cn:pinned-node'],
    );
  });

  it('refuses x509pop when the challenge is signed with another key', async () => {
    const leaf = await createPopLeaf(ca, 'node-wrong-key');
    const message = await expectRefused(server, pop(leaf, generateKeyPair().privateKey), 'permission_denied');
    assert.match(message, /challenge response/);
  });

  it('refuses a certificate of another CA, a self-signed unpinned one and an expired one', async () => {
    const foreign = await createPopLeaf(otherCa, 'node-foreign');
    assert.match(await expectRefused(server, pop(foreign), 'permission_denied'), /does not chain/);
    const unpinned = await createSelfSignedPopLeaf('node-unpinned');
    assert.match(await expectRefused(server, pop(unpinned), 'permission_denied'), /does not chain/);
    const day = 86_400_000;
    const expired = await createPopLeaf(ca, 'node-expired', { notBefore: new Date(Date.now() - 3 * day), notAfter: new Date(Date.now() - day) });
    assert.match(await expectRefused(server, pop(expired), 'permission_denied'), /expired/);
  });

  it('rate-limits attestation attempts per source address', async () => {
    const limited = await startTestServer({ attestationRateLimit: 3 });
    try {
      for (let i = 0; i < 3; i++) await expectRefused(limited, { joinToken: '0123456789abcdef0123456789abcdef' }, 'permission_denied');
      await expectRefused(limited, { joinToken: '0123456789abcdef0123456789abcdef' }, 'resource_exhausted');
      // Even a valid token is refused until the bucket refills.
      const { token } = await newJoinToken(limited);
      await expectRefused(limited, { joinToken: token }, 'resource_exhausted');
    } finally {
      await limited.stop();
    }
  });

  it('logged no join token, private key or JWT', () => {
    assertNoSecretsLogged(server.logs.text(), tokens);
  });
});
