import assert from 'node:assert/strict';
import { isEmblemError } from '../../src/common/errors.js';
import {
  DEFAULT_WORKLOAD_SOCKET,
  grpcTarget,
  parseEndpointAddress,
  resolveWorkloadEndpoint,
  resolveWorkloadSocket,
} from '../../src/common/endpoint-address.js';

const invalid = (fn: () => unknown, match: RegExp): void => {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEmblemError(err, 'invalid_argument'), String(err));
    assert.match(err.message, match);
    return true;
  });
};

describe('Workload API endpoint addresses (SPIFFE_Workload_Endpoint.md §4)', () => {
  describe('unix', () => {
    it('accepts an absolute path with no authority', () => {
      assert.deepEqual(parseEndpointAddress('unix:///run/spire/agent.sock'), { kind: 'unix', path: '/run/spire/agent.sock' });
      assert.deepEqual(parseEndpointAddress('unix:/run/agent.sock'), { kind: 'unix', path: '/run/agent.sock' });
      assert.deepEqual(parseEndpointAddress('UNIX:///a.sock'), { kind: 'unix', path: '/a.sock' });
      assert.deepEqual(parseEndpointAddress('unix:///tmp/my%20dir/api.sock'), { kind: 'unix', path: '/tmp/my dir/api.sock' });
    });
    it('rejects an authority, userinfo, relative or missing paths, query and fragment', () => {
      invalid(() => parseEndpointAddress('unix://foo'), /must not have an authority/);
      invalid(() => parseEndpointAddress('unix://host/run/a.sock'), /must not have an authority/);
      invalid(() => parseEndpointAddress('unix://user@/run/a.sock'), /must not have userinfo/);
      invalid(() => parseEndpointAddress('unix:foo'), /absolute socket path/);
      invalid(() => parseEndpointAddress('unix:'), /no socket path/);
      invalid(() => parseEndpointAddress('unix://'), /no socket path/);
      invalid(() => parseEndpointAddress('unix:///run/a.sock?x=1'), /must not have a query/);
      invalid(() => parseEndpointAddress('unix:///run/a.sock?'), /must not have a query/);
      invalid(() => parseEndpointAddress('unix:///run/a.sock#frag'), /must not have a fragment/);
      invalid(() => parseEndpointAddress('unix:///run/%ZZ.sock'), /percent-encoding/);
      invalid(() => parseEndpointAddress('unix:///run/%00.sock'), /NUL/);
    });
  });

  describe('tcp', () => {
    it('accepts an IP host and a port', () => {
      assert.deepEqual(parseEndpointAddress('tcp://127.0.0.1:8000'), { kind: 'tcp', host: '127.0.0.1', port: 8000 });
      assert.deepEqual(parseEndpointAddress('tcp://[::1]:8000'), { kind: 'tcp', host: '::1', port: 8000 });
      assert.deepEqual(parseEndpointAddress('tcp://169.254.1.1:65535'), { kind: 'tcp', host: '169.254.1.1', port: 65535 });
    });
    it('rejects a path, query, fragment, userinfo, a non-IP host, or a missing port', () => {
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:8000/foo'), /must not have a path/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:8000/'), /must not have a path/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:8000?x'), /must not have a query/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:8000#x'), /must not have a fragment/);
      invalid(() => parseEndpointAddress('tcp://user@127.0.0.1:8000'), /must not have userinfo/);
      invalid(() => parseEndpointAddress('tcp://localhost:8000'), /IP address/);
      invalid(() => parseEndpointAddress('tcp://example.org:8000'), /IP address/);
      invalid(() => parseEndpointAddress('tcp://[127.0.0.1]:8000'), /IP address/);
      invalid(() => parseEndpointAddress('tcp://::1:8000'), /tcp:\/\/<ip>:<port>/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1'), /no port/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:'), /no port/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:0'), /outside 1-65535/);
      invalid(() => parseEndpointAddress('tcp://127.0.0.1:65536'), /outside 1-65535/);
      invalid(() => parseEndpointAddress('tcp://:8000'), /no host/);
      invalid(() => parseEndpointAddress('tcp:127.0.0.1:8000'), /tcp:\/\/<ip>:<port>/);
    });
  });

  it('rejects other schemes, no scheme and the empty string', () => {
    invalid(() => parseEndpointAddress('http://127.0.0.1:80'), /tcp or unix scheme/);
    invalid(() => parseEndpointAddress('npipe:spire-agent\\public\\api'), /tcp or unix scheme/);
    invalid(() => parseEndpointAddress('/tmp/agent.sock'), /tcp or unix scheme/);
    invalid(() => parseEndpointAddress(''), /empty/);
  });

  it('grpcTarget builds targets grpc-js understands', () => {
    assert.equal(grpcTarget({ kind: 'unix', path: '/a/b.sock' }), 'unix:///a/b.sock');
    assert.equal(grpcTarget({ kind: 'tcp', host: '127.0.0.1', port: 80 }), '127.0.0.1:80');
    assert.equal(grpcTarget({ kind: 'tcp', host: '::1', port: 80 }), '[::1]:80');
  });

  describe('resolving the socket', () => {
    const env = { SPIFFE_ENDPOINT_SOCKET: 'unix:///from/env.sock' };
    it('prefers the flag (a bare path or a URI), then SPIFFE_ENDPOINT_SOCKET, then the default', () => {
      assert.equal(resolveWorkloadSocket('/flag/api.sock', env), '/flag/api.sock');
      assert.equal(resolveWorkloadSocket('/flag/my%20api.sock', env), '/flag/my%20api.sock');
      assert.equal(resolveWorkloadSocket('unix:///flag/uri.sock', env), '/flag/uri.sock');
      assert.equal(resolveWorkloadSocket('tcp://127.0.0.1:9000', env), '127.0.0.1:9000');
      assert.equal(resolveWorkloadSocket(undefined, env), '/from/env.sock');
      assert.equal(resolveWorkloadSocket('', env), '/from/env.sock');
      assert.equal(resolveWorkloadSocket(undefined, { SPIFFE_ENDPOINT_SOCKET: 'tcp://[::1]:7000' }), '[::1]:7000');
      assert.equal(resolveWorkloadSocket(undefined, {}), DEFAULT_WORKLOAD_SOCKET);
      assert.equal(resolveWorkloadSocket(undefined, { SPIFFE_ENDPOINT_SOCKET: '' }), '/tmp/emblem-agent/public/api.sock');
      assert.deepEqual(resolveWorkloadEndpoint(undefined, {}), { kind: 'unix', path: DEFAULT_WORKLOAD_SOCKET });
    });
    it('names the variable when SPIFFE_ENDPOINT_SOCKET is invalid, and wants a URI there', () => {
      invalid(() => resolveWorkloadSocket(undefined, { SPIFFE_ENDPOINT_SOCKET: '/bare/path.sock' }), /^SPIFFE_ENDPOINT_SOCKET: .*tcp or unix scheme/);
      invalid(() => resolveWorkloadSocket(undefined, { SPIFFE_ENDPOINT_SOCKET: 'unix://host/x' }), /^SPIFFE_ENDPOINT_SOCKET: .*authority/);
      invalid(() => resolveWorkloadSocket('relative.sock', env), /tcp or unix scheme/);
    });
  });
});
