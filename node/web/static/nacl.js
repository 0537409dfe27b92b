// Opening a libsodium sealed box (crypto_box_seal) in the browser, so a
// patient's records are decrypted in this page with their own key and never
// exist in clear at the node that serves it.
//   sealed = epk(32) || mac(16) || ciphertext
//   nonce  = BLAKE2b-192(epk || pk)
//   key    = HSalsa20(X25519(sk, epk), 0)      (crypto_box_beforenm)
//   box    = XSalsa20-Poly1305(key, nonce)     (crypto_secretbox)
// X25519, SHA-512 and SHA-256 come from WebCrypto; BLAKE2b, Salsa20 and
// Poly1305 are written out here (WebCrypto has none of them).
"use strict";

const Nacl = (() => {
  // -- Salsa20 / HSalsa20 ------------------------------------------------------
  const SIGMA = new TextEncoder().encode("expand 32-byte k");
  const u32 = (b, i) => (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
  const rotl = (v, c) => ((v << c) | (v >>> (32 - c))) >>> 0;

  function core(key, input, hsalsa) {
    // key: 32 bytes, input: 16 bytes (nonce and counter, or HSalsa20's input)
    const j = new Uint32Array(16);
    j[0] = u32(SIGMA, 0); j[5] = u32(SIGMA, 4); j[10] = u32(SIGMA, 8); j[15] = u32(SIGMA, 12);
    for (let i = 0; i < 4; i++) { j[1 + i] = u32(key, 4 * i); j[11 + i] = u32(key, 16 + 4 * i); }
    for (let i = 0; i < 4; i++) j[6 + i] = u32(input, 4 * i);
    const x = Uint32Array.from(j);
    const qr = (a, b, c, d) => {
      x[b] ^= rotl((x[a] + x[d]) >>> 0, 7);
      x[c] ^= rotl((x[b] + x[a]) >>> 0, 9);
      x[d] ^= rotl((x[c] + x[b]) >>> 0, 13);
      x[a] ^= rotl((x[d] + x[c]) >>> 0, 18);
    };
    for (let i = 0; i < 20; i += 2) {
      qr(0, 4, 8, 12); qr(5, 9, 13, 1); qr(10, 14, 2, 6); qr(15, 3, 7, 11);
      qr(0, 1, 2, 3); qr(5, 6, 7, 4); qr(10, 11, 8, 9); qr(15, 12, 13, 14);
    }
    const out = new Uint8Array(hsalsa ? 32 : 64);
    const words = hsalsa ? [0, 5, 10, 15, 6, 7, 8, 9].map((k) => x[k]) : Array.from(x, (v, k) => (v + j[k]) >>> 0);
    words.forEach((w, k) => { out[4 * k] = w; out[4 * k + 1] = w >>> 8; out[4 * k + 2] = w >>> 16; out[4 * k + 3] = w >>> 24; });
    return out;
  }
  const hsalsa20 = (key, input16) => core(key, input16, true);

  function xsalsa20Stream(key, nonce24, length) {
    const sub = hsalsa20(key, nonce24.subarray(0, 16));
    const input = new Uint8Array(16);
    input.set(nonce24.subarray(16, 24));
    const out = new Uint8Array(length);
    for (let at = 0, ctr = 0; at < length; at += 64, ctr++) {
      let c = ctr;
      for (let i = 8; i < 16; i++) { input[i] = c & 0xff; c = Math.floor(c / 256); }
      const block = core(sub, input, false);
      out.set(block.subarray(0, Math.min(64, length - at)), at);
    }
    return out;
  }

  // -- Poly1305 (BigInt: records are small) ------------------------------------
  const P1305 = (1n << 130n) - 5n;
  const le = (b) => b.reduceRight((acc, v) => (acc << 8n) | BigInt(v), 0n);

  function poly1305(key32, msg) {
    const r = le(key32.subarray(0, 16)) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
    const s = le(key32.subarray(16, 32));
    let h = 0n;
    for (let at = 0; at < msg.length; at += 16) {
      const chunk = msg.subarray(at, Math.min(at + 16, msg.length));
      h = ((h + (le(chunk) | (1n << BigInt(8 * chunk.length)))) * r) % P1305;
    }
    h = (h + s) & ((1n << 128n) - 1n);
    const tag = new Uint8Array(16);
    for (let i = 0; i < 16; i++) { tag[i] = Number(h & 0xffn); h >>= 8n; }
    return tag;
  }

  // -- BLAKE2b (unkeyed, BigInt words) -----------------------------------------
  const M64 = (1n << 64n) - 1n;
  const IV = [
    0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
    0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
  ];
  const SIG = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4], [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13], [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11], [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5], [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
  ];
  const rotr64 = (v, c) => ((v >> BigInt(c)) | (v << BigInt(64 - c))) & M64;

  function blake2b(data, outlen) {
    const h = IV.slice();
    h[0] ^= 0x01010000n ^ BigInt(outlen);
    const blocks = Math.max(1, Math.ceil(data.length / 128));
    for (let b = 0; b < blocks; b++) {
      const last = b === blocks - 1;
      const chunk = new Uint8Array(128);
      chunk.set(data.subarray(128 * b, Math.min(128 * (b + 1), data.length)));
      const m = Array.from({ length: 16 }, (_, i) => le(chunk.subarray(8 * i, 8 * i + 8)));
      const t = BigInt(last ? data.length : 128 * (b + 1));
      const v = [...h, ...IV];
      v[12] ^= t & M64;
      v[13] ^= t >> 64n;
      if (last) v[14] ^= M64;
      const g = (a, bb, c, d, x, y) => {
        v[a] = (v[a] + v[bb] + x) & M64; v[d] = rotr64(v[d] ^ v[a], 32);
        v[c] = (v[c] + v[d]) & M64; v[bb] = rotr64(v[bb] ^ v[c], 24);
        v[a] = (v[a] + v[bb] + y) & M64; v[d] = rotr64(v[d] ^ v[a], 16);
        v[c] = (v[c] + v[d]) & M64; v[bb] = rotr64(v[bb] ^ v[c], 63);
      };
      for (let r = 0; r < 12; r++) {
        const s = SIG[r % 10];
        g(0, 4, 8, 12, m[s[0]], m[s[1]]); g(1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(2, 6, 10, 14, m[s[4]], m[s[5]]); g(3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(0, 5, 10, 15, m[s[8]], m[s[9]]); g(1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(2, 7, 8, 13, m[s[12]], m[s[13]]); g(3, 4, 9, 14, m[s[14]], m[s[15]]);
      }
      for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
    }
    const out = new Uint8Array(64);
    h.forEach((w, i) => { for (let k = 0; k < 8; k++) out[8 * i + k] = Number((w >> BigInt(8 * k)) & 0xffn); });
    return out.slice(0, outlen);
  }

  // -- keys ----------------------------------------------------------------------
  const PKCS8_X25519 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
  const b64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

  async function x25519Keys(edSeed) {
    // The X25519 form of an Ed25519 key, as libsodium's crypto_sign_ed25519_sk_to_curve25519.
    const h = new Uint8Array(await crypto.subtle.digest("SHA-512", edSeed));
    const scalar = h.slice(0, 32);
    scalar[0] &= 248; scalar[31] &= 127; scalar[31] |= 64;
    const der = new Uint8Array(48);
    der.set(PKCS8_X25519); der.set(scalar, 16);
    const sk = await crypto.subtle.importKey("pkcs8", der, { name: "X25519" }, true, ["deriveBits"]);
    const pk = b64url((await crypto.subtle.exportKey("jwk", sk)).x);
    return { sk, pk };
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
    return d === 0;
  }

  // Open a box sealed (libsodium crypto_box_seal) to the X25519 form of an Ed25519 key.
  async function openSealed(sealed, edSeed) {
    if (sealed.length < 48) throw new Error("sealed box too short");
    const { sk, pk } = await x25519Keys(edSeed);
    const epk = sealed.subarray(0, 32);
    const peer = await crypto.subtle.importKey("raw", epk, { name: "X25519" }, false, []);
    const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: peer }, sk, 256));
    const key = hsalsa20(shared, new Uint8Array(16));
    const both = new Uint8Array(64);
    both.set(epk); both.set(pk, 32);
    const nonce = blake2b(both, 24);
    const mac = sealed.subarray(32, 48);
    const c = sealed.subarray(48);
    const stream = xsalsa20Stream(key, nonce, 32 + c.length);
    if (!equal(poly1305(stream.subarray(0, 32), c), mac)) throw new Error("the sealed box does not open (wrong key or altered)");
    const m = new Uint8Array(c.length);
    for (let i = 0; i < c.length; i++) m[i] = c[i] ^ stream[32 + i];
    return m;
  }

  return { openSealed, blake2b, poly1305, hsalsa20, xsalsa20Stream };
})();
