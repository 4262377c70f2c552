// A worker thread of the CSR verify pool (csr-verify-pool.ts): checks each chunk of CSRs it is sent
// and answers with one message per chunk. It logs nothing; CSRs carry only public keys anyway.
import { parentPort } from 'node:worker_threads';
import { checkChunk, WORKER_READY, type ChunkRequest } from './csr-verify-pool.js';

const port = parentPort;
if (!port) throw new Error('csr-verify-worker runs only as a worker thread');
port.on('message', (request: ChunkRequest) => {
  const reply = checkChunk(request);
  port.postMessage(reply, [reply.bytes]);
});
port.postMessage(WORKER_READY);
