// The pre-tokenizer of Qwen2/2.5 (the Split regex, translated to JavaScript with Oniguruma's semantics) and the
// byte-level alphabet (GPT-2's bytes_to_unicode) the BPE in tokenizer.ts works on.

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenizer

/** The Split regex of Qwen2/2.5/3's tokenizer.json (Oniguruma syntax), verbatim. */
export const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Oniguruma's \s for UTF-8 (what the Rust `tokenizers` crate uses): U+0009..U+000D, U+0085 and the Zl/Zp/Zs
// categories. JavaScript's \s differs: it lacks U+0085 and adds U+FEFF, so it is spelled out here.
const WS = "\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
// (?i:...) in Oniguruma applies Unicode case folding: 's' also matches U+017F (long s); no other letter of the
// contractions has a non-ASCII case-fold partner.
/** QWEN2_PATTERN translated to a JavaScript RegExp source (flags "gu"). */
export const QWEN2_JS_PATTERN =
  `'(?:[sS\\u017F]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])` +
  `|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+` +
  `|\\p{N}` +
  `| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*` +
  `|[${WS}]*[\\r\\n]+` +
  `|[${WS}]+(?![^${WS}])` +
  `|[${WS}]+`;

// ---------------------------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2's bytes_to_unicode)

export const BYTE_TO_CHAR: string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const out = new Array<string>(256);
  for (const b of bs) out[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (out[b] === undefined) out[b] = String.fromCharCode(256 + n++);
  return out;
})();
export const CHAR_TO_BYTE = new Map<string, number>(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** Maps raw bytes to the byte-level alphabet (e.g. " the" -> "Ġthe"). */
export function bytesToByteLevel(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}

export const utf8 = new TextEncoder();

/** The bytes a token decodes to, as the Rust ByteLevel decoder does it: every char through the byte-level
 * table, or, if any char is not in it, the token's own UTF-8 bytes. */
export function tokenStringToBytes(tok: string): Uint8Array {
  const out = new Uint8Array(tok.length);
  let i = 0;
  for (const ch of tok) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) return utf8.encode(tok);
    out[i++] = b;
  }
  return out.subarray(0, i);
}

export function isWordChar(s: string, i: number): boolean {
  if (i < 0 || i >= s.length) return false;
  return /[\p{L}\p{N}_]/u.test(s[i]);
}
