// The wire constants and the ring page layout, against Xen's installed
// public header <xen/io/xs_wire.h> through a compiled probe (skipped with
// the reason when gcc or the header is missing), and the payload helpers.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  ABS_PATH_MAX,
  HEADER_SIZE,
  PAYLOAD_MAX,
  REL_PATH_MAX,
  RING_INTERFACE_SIZE,
  RING_SIZE,
  RingConnection,
  RingError,
  RingOffset,
  ServerFeature,
  XSD_ERRORS,
  XS_INVALID,
  XS_TYPE_COUNT,
  XsType,
  bytesToString,
  decodeHeader,
  encodeMessage,
  nulJoin,
  oneArg,
  splitStrings,
  stringToBytes,
  typeName,
} from '../../../src/xen/xenstore/wire.js';
import { gccMissing, runC } from '../../helpers/gcc-probe.js';

const missing = gccMissing(['stdint.h', 'xen/io/xs_wire.h']);
if (missing) console.log(`  skip xs_wire.h probe: ${missing} (apt-get install libxen-dev)`);
const probeTest = missing ? test.skip : test;

const TYPE_C_NAMES: Record<string, string> = { CONTROL: 'XS_CONTROL' };

function probe(): Map<string, string> {
  const src = [
    '#include <errno.h>',
    '#include <stddef.h>',
    '#include <stdint.h>',
    '#include <stdio.h>',
    '#include <xen/io/xs_wire.h>',
    'int main(void) {',
    ...Object.keys(RingOffset).map(
      (f) => `printf("off_${f} %zu\\n", offsetof(struct xenstore_domain_interface, ${f}));`,
    ),
    'printf("sizeof_intf %zu\\n", sizeof(struct xenstore_domain_interface));',
    'printf("sizeof_msg %zu\\n", sizeof(struct xsd_sockmsg));',
    ...['type', 'req_id', 'tx_id', 'len'].map((f) => `printf("msg_${f} %zu\\n", offsetof(struct xsd_sockmsg, ${f}));`),
    ...Object.keys(XsType).map((k) => `printf("type_${k} %d\\n", ${TYPE_C_NAMES[k] ?? `XS_${k}`});`),
    'printf("type_COUNT %d\\n", XS_TYPE_COUNT);',
    'printf("type_INVALID %d\\n", XS_INVALID);',
    'printf("nerrors %zu\\n", sizeof xsd_errors / sizeof xsd_errors[0]);',
    'for (size_t i = 0; i < sizeof xsd_errors / sizeof xsd_errors[0]; i++) printf("error_%zu %s\\n", i, xsd_errors[i].errstring);',
    'printf("RING_SIZE %d\\n", XENSTORE_RING_SIZE);',
    'printf("PAYLOAD_MAX %d\\n", XENSTORE_PAYLOAD_MAX);',
    'printf("ABS_PATH_MAX %d\\n", XENSTORE_ABS_PATH_MAX);',
    'printf("REL_PATH_MAX %d\\n", XENSTORE_REL_PATH_MAX);',
    'printf("FEATURE_RECONNECTION %d\\n", XENSTORE_SERVER_FEATURE_RECONNECTION);',
    'printf("FEATURE_ERROR %d\\n", XENSTORE_SERVER_FEATURE_ERROR);',
    'printf("CONNECTED %d\\n", XENSTORE_CONNECTED);',
    'printf("RECONNECT %d\\n", XENSTORE_RECONNECT);',
    'printf("ERROR_NONE %d\\n", XENSTORE_ERROR_NONE);',
    'printf("ERROR_COMM %d\\n", XENSTORE_ERROR_COMM);',
    'printf("ERROR_RINGIDX %d\\n", XENSTORE_ERROR_RINGIDX);',
    'printf("ERROR_PROTO %d\\n", XENSTORE_ERROR_PROTO);',
    'return 0; }',
  ];
  const m = new Map<string, string>();
  for (const line of runC(src.join('\n')).trim().split('\n')) {
    const sp = line.indexOf(' ');
    m.set(line.slice(0, sp), line.slice(sp + 1));
  }
  return m;
}

probeTest('struct xenstore_domain_interface: every offset and the size match the compiled header', () => {
  const got = probe();
  for (const [f, off] of Object.entries(RingOffset)) assert.is(off, Number(got.get(`off_${f}`)), f);
  assert.is(RING_INTERFACE_SIZE, Number(got.get('sizeof_intf')));
  assert.is(HEADER_SIZE, Number(got.get('sizeof_msg')));
  assert.equal(
    ['type', 'req_id', 'tx_id', 'len'].map((f) => Number(got.get(`msg_${f}`))),
    [0, 4, 8, 12],
  );
});

probeTest('message types, the error table (names and order) and the limits match the header', () => {
  const got = probe();
  for (const [k, v] of Object.entries(XsType)) assert.is(v, Number(got.get(`type_${k}`)), k);
  assert.is(XS_TYPE_COUNT, Number(got.get('type_COUNT')));
  assert.is(XS_INVALID, Number(got.get('type_INVALID')));
  assert.is(XSD_ERRORS.length, Number(got.get('nerrors')));
  XSD_ERRORS.forEach((e, i) => assert.is(e, got.get(`error_${i}`), `xsd_errors[${i}]`));
  assert.is(RING_SIZE, Number(got.get('RING_SIZE')));
  assert.is(PAYLOAD_MAX, Number(got.get('PAYLOAD_MAX')));
  assert.is(ABS_PATH_MAX, Number(got.get('ABS_PATH_MAX')));
  assert.is(REL_PATH_MAX, Number(got.get('REL_PATH_MAX')));
  assert.is(ServerFeature.RECONNECTION, Number(got.get('FEATURE_RECONNECTION')));
  assert.is(ServerFeature.ERROR, Number(got.get('FEATURE_ERROR')));
  assert.is(RingConnection.CONNECTED, Number(got.get('CONNECTED')));
  assert.is(RingConnection.RECONNECT, Number(got.get('RECONNECT')));
  for (const k of ['NONE', 'COMM', 'RINGIDX', 'PROTO'] as const)
    assert.is(RingError[k], Number(got.get(`ERROR_${k}`)), k);
});

test('a message encodes as a little-endian header and its payload, and the header decodes back', () => {
  const payload = stringToBytes('a/b\0');
  const b = encodeMessage({ type: XsType.READ, reqId: 0xdeadbeef, txId: 7, payload });
  assert.is(b.length, 20);
  assert.equal(Array.from(b.subarray(0, 16)), [2, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde, 7, 0, 0, 0, 4, 0, 0, 0]);
  assert.equal(decodeHeader(b), { type: 2, reqId: 0xdeadbeef, txId: 7, len: 4 });
  assert.equal(Array.from(b.subarray(16)), Array.from(payload));
});

test('payload strings: split at NULs, one argument exactly, bytes round-trip through strings', () => {
  assert.equal(splitStrings(stringToBytes('a\0b\0tail')), ['a', 'b']);
  assert.equal(splitStrings(new Uint8Array(0)), []);
  assert.is(oneArg(stringToBytes('path\0')), 'path');
  assert.is(oneArg(stringToBytes('path')), null, 'no NUL');
  assert.is(oneArg(stringToBytes('a\0b\0')), null, 'two strings');
  assert.is(oneArg(new Uint8Array(0)), null);
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.equal(Array.from(stringToBytes(bytesToString(all))), Array.from(all));
  assert.equal(Array.from(nulJoin(['OK'])), [79, 75, 0]);
  assert.is(typeName(XsType.TRANSACTION_END), 'TRANSACTION_END');
  assert.is(typeName(20), 'type 20');
});

test.run();
