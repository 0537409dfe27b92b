// Canonical msgpack, as medchain's storage/codec.py writes it: minimal integer
// and length encodings, str for text, bin for bytes, maps with sorted keys.
// Enough to build what a patient signs in the browser (login, transactions).
"use strict";

const MsgPack = (() => {
  const enc = new TextEncoder();

  function encode(value) {
    const out = [];
    put(value, out);
    const buf = new Uint8Array(out.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of out) { buf.set(p, at); at += p.length; }
    return buf;
  }

  function be(n, bytes) {
    const b = new Uint8Array(bytes);
    const v = new DataView(b.buffer);
    if (bytes === 1) v.setUint8(0, n);
    else if (bytes === 2) v.setUint16(0, n);
    else if (bytes === 4) v.setUint32(0, n);
    else v.setBigUint64(0, BigInt(n));
    return b;
  }

  function head(small, base, codes, len, out) {
    // small: max length of the fix form (or -1), codes: [8-bit, 16-bit, 32-bit]
    if (len <= small) out.push(Uint8Array.of(base | len));
    else if (codes[0] !== null && len < 0x100) out.push(Uint8Array.of(codes[0]), be(len, 1));
    else if (len < 0x10000) out.push(Uint8Array.of(codes[1]), be(len, 2));
    else out.push(Uint8Array.of(codes[2]), be(len, 4));
  }

  function put(v, out) {
    if (v === null || v === undefined) { out.push(Uint8Array.of(0xc0)); return; }
    if (v === false) { out.push(Uint8Array.of(0xc2)); return; }
    if (v === true) { out.push(Uint8Array.of(0xc3)); return; }
    if (typeof v === "number" || typeof v === "bigint") {
      const n = BigInt(v);
      if (n >= 0n) {
        if (n < 128n) out.push(Uint8Array.of(Number(n)));
        else if (n < 0x100n) out.push(Uint8Array.of(0xcc), be(Number(n), 1));
        else if (n < 0x10000n) out.push(Uint8Array.of(0xcd), be(Number(n), 2));
        else if (n < 0x100000000n) out.push(Uint8Array.of(0xce), be(Number(n), 4));
        else out.push(Uint8Array.of(0xcf), be(n, 8));
        return;
      }
      if (n >= -32n) { out.push(Uint8Array.of(0x100 + Number(n))); return; }
      const b = new Uint8Array(8);
      const dv = new DataView(b.buffer);
      if (n >= -128n) { dv.setInt8(0, Number(n)); out.push(Uint8Array.of(0xd0), b.slice(0, 1)); }
      else if (n >= -32768n) { dv.setInt16(0, Number(n)); out.push(Uint8Array.of(0xd1), b.slice(0, 2)); }
      else if (n >= -2147483648n) { dv.setInt32(0, Number(n)); out.push(Uint8Array.of(0xd2), b.slice(0, 4)); }
      else { dv.setBigInt64(0, n); out.push(Uint8Array.of(0xd3), b); }
      return;
    }
    if (typeof v === "string") {
      const b = enc.encode(v);
      head(31, 0xa0, [0xd9, 0xda, 0xdb], b.length, out);
      out.push(b);
      return;
    }
    if (v instanceof Uint8Array) {
      head(-1, 0, [0xc4, 0xc5, 0xc6], v.length, out);
      out.push(v);
      return;
    }
    if (Array.isArray(v)) {
      head(15, 0x90, [null, 0xdc, 0xdd], v.length, out);
      for (const x of v) put(x, out);
      return;
    }
    if (typeof v === "object") {
      const keys = Object.keys(v).sort();
      head(15, 0x80, [null, 0xde, 0xdf], keys.length, out);
      for (const k of keys) { put(k, out); put(v[k], out); }
      return;
    }
    throw new TypeError("cannot encode " + typeof v);
  }

  // Decode one msgpack value (the sealed record payload [version, content, salts]).
  function decode(buf) {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let at = 0;
    const need = (n) => { if (at + n > buf.length) throw new Error("msgpack: truncated"); };
    const u = (n) => {
      need(n);
      const v = n === 1 ? dv.getUint8(at) : n === 2 ? dv.getUint16(at) : n === 4 ? dv.getUint32(at) : Number(dv.getBigUint64(at));
      at += n;
      return v;
    };
    const bytes = (n) => { need(n); const b = buf.slice(at, at + n); at += n; return b; };
    const text = (n) => new TextDecoder("utf-8", { fatal: true }).decode(bytes(n));
    const arr = (n) => Array.from({ length: n }, () => one());
    const map = (n) => { const o = {}; for (let i = 0; i < n; i++) { const k = one(); o[k] = one(); } return o; };
    function one() {
      const t = u(1);
      if (t < 0x80) return t;
      if (t >= 0xe0) return t - 0x100;
      if ((t & 0xe0) === 0xa0) return text(t & 0x1f);
      if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
      if ((t & 0xf0) === 0x80) return map(t & 0x0f);
      switch (t) {
        case 0xc0: return null;
        case 0xc2: return false;
        case 0xc3: return true;
        case 0xc4: return bytes(u(1));
        case 0xc5: return bytes(u(2));
        case 0xc6: return bytes(u(4));
        case 0xcc: return u(1);
        case 0xcd: return u(2);
        case 0xce: return u(4);
        case 0xcf: return u(8);
        case 0xd0: { need(1); const v = dv.getInt8(at); at += 1; return v; }
        case 0xd1: { need(2); const v = dv.getInt16(at); at += 2; return v; }
        case 0xd2: { need(4); const v = dv.getInt32(at); at += 4; return v; }
        case 0xd3: { need(8); const v = Number(dv.getBigInt64(at)); at += 8; return v; }
        case 0xd9: return text(u(1));
        case 0xda: return text(u(2));
        case 0xdb: return text(u(4));
        case 0xdc: return arr(u(2));
        case 0xdd: return arr(u(4));
        case 0xde: return map(u(2));
        case 0xdf: return map(u(4));
        default: throw new Error("msgpack: unsupported type 0x" + t.toString(16));
      }
    }
    const v = one();
    if (at !== buf.length) throw new Error("msgpack: trailing bytes");
    return v;
  }

  return { encode, decode };
})();
