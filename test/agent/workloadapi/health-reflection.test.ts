import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { loadDefinition } from '../../../src/common/grpc/proto.js';
import { summarizeFileDescriptor } from '../../../src/agent/workloadapi/file-descriptors.js';
import type { ReflectionResponse } from '../../../src/agent/workloadapi/reflection.js';
import { FakeSource, TD, eventually, identifyByHeader, makeEntry, makePki, md, type Harness, startHarness } from './fixtures.js';

type Ctor = grpc.ServiceClientConstructor;

function serviceCtor(file: string, name: string): Ctor {
  let node: unknown = grpc.loadPackageDefinition(loadDefinition(file));
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  return node as Ctor;
}

/** Sends reflection requests one at a time on one stream and returns the answers. */
async function reflect(client: grpc.Client, requests: object[]): Promise<ReflectionResponse[]> {
  const call = (client as unknown as Record<string, () => grpc.ClientDuplexStream<object, ReflectionResponse>>).ServerReflectionInfo.call(client);
  const answers: ReflectionResponse[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (r: ReflectionResponse) => answers.push(r));
    call.on('end', () => resolve());
    call.on('error', reject);
  });
  for (const r of requests) call.write(r);
  call.end();
  await done;
  return answers;
}

/** A FileDescriptorSet (field 1: repeated FileDescriptorProto) from serialized files. */
function descriptorSet(files: Buffer[]): Buffer {
  return Buffer.concat(files.map((f) => Buffer.concat([Buffer.from([0x0a]), varint(f.length), f])));
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

describe('Workload endpoint health and reflection services', () => {
  let source: FakeSource;
  let h: Harness;
  const clients: grpc.Client[] = [];
  const client = (file: string, name: string): grpc.Client => {
    const Ctor = serviceCtor(file, name);
    const c = new Ctor(h.address, grpc.credentials.createInsecure());
    clients.push(c);
    return c;
  };

  beforeEach(async () => {
    source = new FakeSource(await makePki(TD));
    source.add(makeEntry('/web', ['unix:uid:1000']));
    h = await startHarness({ source, identify: identifyByHeader(new Map([['web', ['unix:uid:1000']]])) });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await h.close();
  });

  const check = (c: grpc.Client, service: string): Promise<{ status: string }> =>
    new Promise((resolve, reject) =>
      (c as unknown as Record<string, (...a: unknown[]) => void>).Check.call(c, { service }, (err: Error | null, res: { status: string }) =>
        err ? reject(err) : resolve(res),
      ),
    );

  it('health Check: SERVING when ready, NOT_SERVING when not, NOT_FOUND for unknown services; no security header needed', async () => {
    const health = client('grpc/health/v1/health.proto', 'grpc.health.v1.Health');
    assert.deepEqual(await check(health, ''), { status: 'SERVING' });
    assert.deepEqual(await check(health, 'SpiffeWorkloadAPI'), { status: 'SERVING' });
    source.isReady = false;
    assert.deepEqual(await check(health, ''), { status: 'NOT_SERVING' });
    await assert.rejects(check(health, 'nope.Service'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
  });

  it('health Watch pushes status changes and releases its subscription on cancel', async () => {
    const health = client('grpc/health/v1/health.proto', 'grpc.health.v1.Health');
    const call = (health as unknown as Record<string, (r: object) => grpc.ClientReadableStream<{ status: string }>>).Watch.call(health, {
      service: 'SpiffeWorkloadAPI',
    });
    const seen: string[] = [];
    call.on('data', (m: { status: string }) => seen.push(m.status));
    call.on('error', () => {});
    await eventually(() => seen.length === 1, 3000, 'first status');
    source.notify();
    source.isReady = false;
    source.notify();
    await eventually(() => seen.length === 2, 3000, 'status change');
    assert.deepEqual(seen, ['SERVING', 'NOT_SERVING']);
    call.cancel();
    await eventually(() => source.liveSubscriptions === 0, 3000, 'unsubscribed');
  });

  for (const version of ['v1', 'v1alpha']) {
    it(`reflection ${version} lists SpiffeWorkloadAPI by its real name and describes it`, async () => {
      const name = `grpc.reflection.${version}.ServerReflection`;
      const refl = client(`grpc/reflection/${version}/reflection.proto`, name);
      const [list, bySymbol, byMethod, byDot, missing, byFile] = await reflect(refl, [
        { host: 'x', list_services: '*' },
        { file_containing_symbol: 'SpiffeWorkloadAPI' },
        { file_containing_symbol: 'SpiffeWorkloadAPI.FetchX509SVID' },
        { file_containing_symbol: '.X509SVIDResponse' },
        { file_containing_symbol: 'NoSuchThing' },
        { file_by_filename: 'grpc_health_v1.proto' },
      ]);
      assert.equal(list.valid_host, 'x');
      assert.deepEqual(
        list.list_services_response?.service.map((s) => s.name),
        ['SpiffeWorkloadAPI', 'grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'],
      );
      const files = bySymbol.file_descriptor_response!.file_descriptor_proto.map((b) => summarizeFileDescriptor(b));
      assert.ok(files[0].services.includes('SpiffeWorkloadAPI'), 'the defining file comes first');
      assert.deepEqual(files[0].dependencies, [files[1].name]);
      assert.ok(files[1].symbols.includes('google.protobuf.Struct'));
      assert.ok(files[0].symbols.includes('X509SVIDResponse.FederatedBundlesEntry'), 'protoc-style map entry name');
      assert.equal(summarizeFileDescriptor(byMethod.file_descriptor_response!.file_descriptor_proto[0]).name, files[0].name);
      assert.equal(summarizeFileDescriptor(byDot.file_descriptor_response!.file_descriptor_proto[0]).name, files[0].name);
      assert.equal(missing.error_response?.error_code, grpc.status.NOT_FOUND);
      assert.ok(summarizeFileDescriptor(byFile.file_descriptor_response!.file_descriptor_proto[0]).services.includes('grpc.health.v1.Health'));
    });
  }

  it('a client built only from reflection descriptors can call the Workload API', async () => {
    const refl = client('grpc/reflection/v1/reflection.proto', 'grpc.reflection.v1.ServerReflection');
    const [answer] = await reflect(refl, [{ file_containing_symbol: 'SpiffeWorkloadAPI' }]);
    const def = loadFileDescriptorSetFromBuffer(descriptorSet(answer.file_descriptor_response!.file_descriptor_proto), {
      keepCase: true,
    });
    const Ctor = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI as Ctor;
    const c = new Ctor(h.address, grpc.credentials.createInsecure());
    clients.push(c);
    const call = (c as unknown as Record<string, (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<unknown>>).FetchJWTBundles.call(
      c,
      {},
      md('web'),
    );
    const first = await new Promise<unknown>((resolve, reject) => {
      call.once('data', resolve);
      call.once('error', reject);
    });
    call.on('error', () => {});
    call.cancel();
    // protobufjs reads map fields from descriptors as repeated entries.
    const bundles = (first as { bundles: Array<{ key: string; value: Buffer }> }).bundles;
    assert.deepEqual(
      bundles.map((b) => b.key),
      ['spiffe://example.org'],
    );
    assert.ok(JSON.parse(Buffer.from(bundles[0].value).toString('utf8')).keys.length === 1);
  });
});
