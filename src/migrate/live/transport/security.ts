// Optional protection of the migration stream (node:tls), for tcp: and unix:
// addresses:
//
//   certificates  receive --tls-cert CERT --tls-key KEY [--tls-ca CA]
//                 migrate --tls-ca CA [--tls-cert CERT --tls-key KEY]
//     TLS 1.2 or 1.3.  The source verifies the destination's certificate
//     against CA (and, over tcp:, that it names HOST as given in --to, as a
//     DNS or IP subjectAltName); with --tls-ca on the destination, the source
//     must present a certificate signed by that CA (mutual authentication).
//   pre-shared key  --psk-file FILE on both sides
//     TLS 1.2 with ECDHE-PSK-CHACHA20-POLY1305 (forward secrecy, AEAD): Node's
//     pskCallback does not do TLS 1.3 PSK, and OpenSSL has no ECDHE-PSK GCM
//     suite.  FILE holds the key in hex (at least 16 bytes; `openssl rand
//     -hex 32`); a wrong key fails the handshake.
//
// Without either the stream is plain: unauthenticated and unencrypted.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions, TlsOptions } from 'node:tls';
import { UsageError } from '../../../errors.js';
import { describeIoError } from '../../stream/byte-sink.js';

export type StreamSecurity =
  | { readonly kind: 'none' }
  | { readonly kind: 'tls'; readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer }
  | { readonly kind: 'psk'; readonly key: Buffer };

/** File paths as given on the command line or in the QMP `migrate` arguments. */
export interface SecurityFiles {
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
  pskFile?: string | undefined;
}

export const PSK_IDENTITY = 'xenkvm-migration';
export const PSK_CIPHERS = 'ECDHE-PSK-CHACHA20-POLY1305';

function readOption(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`${what} ${path}: ${describeIoError(e)}`, { cause: e });
  }
}

/** Reads a PSK file: hex, at least 16 bytes, whitespace ignored. */
export function readPskFile(path: string, what = '--psk-file'): Buffer {
  const text = readOption(path, what).toString('latin1').replace(/\s+/g, '');
  if (!/^([0-9a-fA-F]{2})+$/.test(text))
    throw new UsageError(`${what} ${path}: the key must be written in hex (e.g. openssl rand -hex 32 > ${path})`);
  const key = Buffer.from(text, 'hex');
  if (key.length < 16) throw new UsageError(`${what} ${path}: the key is ${key.length} bytes; at least 16 are needed`);
  return key;
}

/**
 * The security a side asks for, with its files read.  `role` 'server' is
 * `receive` (needs --tls-cert and --tls-key), 'client' is `migrate` (needs
 * --tls-ca).  `names` maps the options to how the caller spells them.
 */
export function loadSecurity(
  f: SecurityFiles,
  role: 'client' | 'server',
  names: Record<keyof SecurityFiles, string> = {
    tlsCert: '--tls-cert',
    tlsKey: '--tls-key',
    tlsCa: '--tls-ca',
    pskFile: '--psk-file',
  },
): StreamSecurity {
  const tlsGiven = f.tlsCert !== undefined || f.tlsKey !== undefined || f.tlsCa !== undefined;
  if (f.pskFile !== undefined) {
    if (tlsGiven)
      throw new UsageError(
        `${names.pskFile} excludes ${names.tlsCert}/${names.tlsKey}/${names.tlsCa}: use a pre-shared key or certificates`,
      );
    return { kind: 'psk', key: readPskFile(f.pskFile, names.pskFile) };
  }
  if (!tlsGiven) return { kind: 'none' };
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined))
    throw new UsageError(`${names.tlsCert} and ${names.tlsKey} go together`);
  if (role === 'server' && f.tlsCert === undefined)
    throw new UsageError(
      `TLS on the destination needs ${names.tlsCert} and ${names.tlsKey} (${names.tlsCa} then requires a client certificate signed by it)`,
    );
  if (role === 'client' && f.tlsCa === undefined)
    throw new UsageError(`TLS on the source needs ${names.tlsCa}, the CA that signed the destination's certificate`);
  return {
    kind: 'tls',
    ...(f.tlsCa !== undefined ? { ca: readOption(f.tlsCa, names.tlsCa) } : {}),
    ...(f.tlsCert !== undefined ? { cert: readOption(f.tlsCert, names.tlsCert) } : {}),
    ...(f.tlsKey !== undefined ? { key: readOption(f.tlsKey, names.tlsKey) } : {}),
  };
}

export function describeSecurity(s: StreamSecurity): string {
  return s.kind === 'none'
    ? 'plain (unauthenticated, unencrypted)'
    : s.kind === 'psk'
      ? `TLS 1.2 with a pre-shared key (${PSK_CIPHERS})`
      : 'TLS with certificates';
}

/** node:tls options for the source's connection (security not 'none'). */
export function clientTlsOptions(s: Exclude<StreamSecurity, { kind: 'none' }>, checkName: boolean): ConnectionOptions {
  if (s.kind === 'psk') {
    return {
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      ciphers: PSK_CIPHERS,
      pskCallback: () => ({ psk: s.key, identity: PSK_IDENTITY }),
      // No certificate in a PSK suite; the key is the authentication.
      checkServerIdentity: () => undefined,
    };
  }
  return {
    minVersion: 'TLSv1.2',
    rejectUnauthorized: true,
    ...(s.ca ? { ca: s.ca } : {}),
    ...(s.cert ? { cert: s.cert } : {}),
    ...(s.key ? { key: s.key } : {}),
    ...(checkName ? {} : { checkServerIdentity: () => undefined }),
  };
}

/** node:tls options for `receive`'s server (security not 'none'). */
export function serverTlsOptions(s: Exclude<StreamSecurity, { kind: 'none' }>): TlsOptions {
  if (s.kind === 'psk') {
    return {
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      ciphers: PSK_CIPHERS,
      pskIdentityHint: PSK_IDENTITY,
      pskCallback: (_sock, identity) => (identity === PSK_IDENTITY ? s.key : null),
    };
  }
  return {
    minVersion: 'TLSv1.2',
    ...(s.cert ? { cert: s.cert } : {}),
    ...(s.key ? { key: s.key } : {}),
    ...(s.ca ? { ca: s.ca, requestCert: true, rejectUnauthorized: true } : { requestCert: false }),
  };
}
