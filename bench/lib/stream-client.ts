// Child program of workload-fleet.ts: many simulated workloads in one process. It inherits one
// connected Workload API socket per workload (fds in EMBLEM_BENCH_FDS; each was connected by a
// separate process running under its own uid, which stays alive as the workload the agent
// attests), speaks gRPC over HTTP/2 on each (the real protocol, with the workload.spiffe.io
// header), keeps one FetchX509SVID stream open per workload and reports every response on stdout
// as a JSON line. Commands arrive as JSON lines on stdin.
//   out: {t:"ready"} | {t:"m", i, at, ids, fps} | {t:"end", i, at, status, message} | {t:"fetched", ms}
//   in:  {cmd:"fetch", indices:[...]}  (time-to-first-response of a new stream on each, in turn)
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { workloadApiService } from '../../src/common/grpc/proto.js';

interface X509SvidResponse {
  svids: { spiffe_id: string; x509_svid: Buffer }[];
}

const method = workloadApiService().service['FetchX509SVID']!;
const decode = (buf: Buffer): X509SvidResponse => method.responseDeserialize(buf) as X509SvidResponse;
const now = (): number => performance.timeOrigin + performance.now();
const emit = (event: object): void => {
  process.stdout.write(JSON.stringify(event) + '\n');
};

const fds = (process.env['EMBLEM_BENCH_FDS'] ?? '').split(',').filter(Boolean).map(Number);
const sessions = fds.map((fd) => {
  const socket = new Socket({ fd, readable: true, writable: true });
  const session = http2.connect('http://localhost', { createConnection: () => socket });
  session.on('error', (err) => process.stderr.write(`session on fd ${fd}: ${err.message}\n`));
  return session;
});

/** Opens FetchX509SVID on `session`; calls onMessage for every response and onEnd once. */
function fetchX509(
  session: http2.ClientHttp2Session,
  onMessage: (res: X509SvidResponse, at: number) => void,
  onEnd: (status: string, message: string, at: number) => void,
): http2.ClientHttp2Stream {
  const req = session.request({
    ':method': 'POST',
    ':path': '/SpiffeWorkloadAPI/FetchX509SVID',
    'content-type': 'application/grpc',
    te: 'trailers',
    'workload.spiffe.io': 'true',
  });
  let status = '';
  let message = '';
  // The stream is over for the workload when its status arrives (trailers, or headers of a call
  // that failed at once); Node emits 'close' later, after its own teardown of the stream.
  let statusAt: number | undefined;
  const takeStatus = (headers: http2.IncomingHttpHeaders): void => {
    if (headers['grpc-status'] !== undefined) {
      status = String(headers['grpc-status']);
      statusAt ??= now();
    }
    if (headers['grpc-message'] !== undefined) message = decodeURIComponent(String(headers['grpc-message']));
  };
  req.on('response', takeStatus);
  req.on('trailers', takeStatus);
  let pending: Buffer = Buffer.alloc(0);
  req.on('data', (chunk: Buffer) => {
    const at = now();
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const length = pending.readUInt32BE(1);
      if (pending.length < 5 + length) break;
      onMessage(decode(pending.subarray(5, 5 + length)), at);
      pending = pending.subarray(5 + length);
    }
  });
  req.on('error', (err) => {
    if (!message) message = err.message;
  });
  req.on('close', () => onEnd(status || 'closed', message, statusAt ?? now()));
  // One empty X509SVIDRequest: uncompressed flag, zero length.
  req.end(Buffer.alloc(5));
  return req;
}

const fingerprint = (der: Buffer): string => createHash('sha256').update(der).digest('hex').slice(0, 16);

sessions.forEach((session, i) => {
  fetchX509(
    session,
    (res, at) => emit({ t: 'm', i, at, ids: res.svids.map((s) => s.spiffe_id), fps: res.svids.map((s) => fingerprint(s.x509_svid)) }),
    (status, message, at) => emit({ t: 'end', i, at, status, message }),
  );
});
emit({ t: 'ready' });

/** Time to the first response of a fresh FetchX509SVID stream on the session of workload `i`. */
function timeFirstResponse(i: number): Promise<number> {
  return new Promise((resolve) => {
    const start = performance.now();
    let done = false;
    const req = fetchX509(
      sessions[i]!,
      () => {
        if (done) return;
        done = true;
        resolve(performance.now() - start);
        req.close(http2.constants.NGHTTP2_CANCEL);
      },
      () => {
        if (!done) resolve(NaN);
        done = true;
      },
    );
  });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as { cmd: string; indices?: number[] };
  if (cmd.cmd === 'fetch') {
    void (async () => {
      const ms: number[] = [];
      for (const i of cmd.indices ?? []) ms.push(await timeFirstResponse(i));
      emit({ t: 'fetched', ms });
    })();
  }
});
process.stdin.on('end', () => process.exit(0));
