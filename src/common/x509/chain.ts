// Certificate chains as the Workload API carries them: DER certificates concatenated with no
// padding (workloadapi.proto x509_svid and bundle fields).
import { EmblemError } from '../errors.js';
import { readTlv, TAG } from './der.js';

/** Splits concatenated DER certificates (views into `concat`); each must be one well-formed SEQUENCE TLV. */
export function splitDerCertificates(concat: Buffer): Buffer[] {
  if (!Buffer.isBuffer(concat)) throw new EmblemError('invalid_argument', 'certificate chain must be a byte buffer');
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < concat.length) {
    const t = readTlv(concat, pos, concat.length, `certificate ${out.length} in chain`);
    if (t.tag !== TAG.SEQUENCE) throw new EmblemError('invalid_argument', `certificate ${out.length} in chain is not a DER SEQUENCE`);
    out.push(concat.subarray(t.start, t.end));
    pos = t.end;
  }
  return out;
}

export function concatDer(certs: readonly Buffer[]): Buffer {
  return Buffer.concat(certs);
}
