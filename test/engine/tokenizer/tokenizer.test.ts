// Tokenizer parity: engine/text/tokenizer.ts against Hugging Face ids (golden.json, golden-ids.json when present),
// against @huggingface/tokenizers (HF's JS port) on the corpus, round trips, streaming decode, GGUF metadata.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { QwenTokenizer, loadQwenTokenizer, loadTokenizerDir, MODELS_DIR, TOKEN_TYPE, QWEN2_PATTERN } from "../../../engine/text/tokenizer.ts";
import { CHATML_TEMPLATE } from "../../../engine/text/chat.ts";
import type { EngineModel } from "../../../engine/api.ts";
import { pseudoWords } from "../../../notebooks/tokenizer-bench.ts";
import { generousTimeout } from "../../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const FIX = join(import.meta.dir, "..", "..", "fixtures");
const TINY_DIR = join(MODELS_DIR, "tiny-qwen2-brown");
const corpusFile = JSON.parse(readFileSync(join(FIX, "tokenizer", "corpus.json"), "utf8")) as {
  texts: { name: string; text: string }[];
  decode_cases: string[][];
};
const corpus = corpusFile.texts;
/** corpus.json decode case -> ids: hex byte -> its byte-level token, else an added token's content. */
function caseIds(t: QwenTokenizer, items: string[]): number[] {
  return items.map((x) => t.tokenToId(x.startsWith("<") ? x : byteLevelChar(parseInt(x, 16)))!);
}
// What Rust's String::from_utf8_lossy / WHATWG TextDecoder give (one U+FFFD per maximal invalid subpart).
const DECODE_EXPECTED = [
  "a\uFFFD", "😀", "\uFFFDa", "\uFFFDA", "\uFFFD\uFFFD", "\uFFFD\uFFFD\uFFFD", "\uFFFD\uFFFD\uFFFD\uFFFD",
  "\uFFFD<|im_end|>\uFFFD", "\uFFFD\uFFFD 你", "<|endoftext|>\uFFFD",
];
const golden = JSON.parse(readFileSync(join(FIX, "golden.json"), "utf8")) as { prompts: { text: string; ids: number[] }[] };
const GOLDEN_IDS = join(FIX, "tokenizer", "golden-ids.json");

const tiny = loadTokenizerDir(TINY_DIR);
const qwen = loadQwenTokenizer();
const toks = { tiny, qwen } as const;
// The engine API's tokenizer shape (engine/api.ts) is satisfied by QwenTokenizer.
const _apiShape: EngineModel["tokenizer"] = qwen;

function readJson(path: string): unknown {
  const b = readFileSync(path);
  return JSON.parse(new TextDecoder().decode(b[0] === 0x1f ? Bun.gunzipSync(b) : b));
}

describe("golden.json (transformers 5.17, tiny tokenizer)", () => {
  for (const [i, p] of golden.prompts.entries()) {
    test(`prompt ${i}`, () => {
      expect(tiny.encode(p.text)).toEqual(p.ids);
      expect(tiny.decode(p.ids)).toBe(p.text);
      // The first 8192 ids are Qwen's: the full tokenizer round-trips the same text.
      expect(qwen.decode(p.ids)).toBe(p.text);
    });
  }
});

describe("golden-ids.json (Hugging Face tokenizers, make_golden.py)", () => {
  if (!existsSync(GOLDEN_IDS)) {
    test.skip("golden-ids.json absent: run python3 test/fixtures/tokenizer/make_golden.py", () => {});
    return;
  }
  const g = JSON.parse(readFileSync(GOLDEN_IDS, "utf8")) as {
    names: string[];
    tokenizers: Record<string, { ids: number[][]; decoded: string[]; decode_cases: string[]; chats?: { messages: { role: string; content: string }[]; text: string; ids: number[] }[] }>;
  };
  test("covers the current corpus", () => {
    expect(g.names).toEqual(corpus.map((c) => c.name));
  });
  for (const key of ["tiny", "qwen"] as const) {
    const e = g.tokenizers[key];
    test(`${key}: ids and decode of ${corpus.length} texts`, () => {
      expect(e).toBeDefined();
      for (const [i, c] of corpus.entries()) {
        const ids = toks[key].encode(c.text);
        if (JSON.stringify(ids) !== JSON.stringify(e.ids[i])) {
          throw new Error(`${key}/${c.name}: ids differ\n ours ${JSON.stringify(ids)}\n hf   ${JSON.stringify(e.ids[i])}`);
        }
        expect(toks[key].decode(e.ids[i])).toBe(e.decoded[i]);
      }
      for (const [i, c] of corpusFile.decode_cases.entries()) expect(toks[key].decode(caseIds(toks[key], c))).toBe(e.decode_cases[i]);
    });
    if (e?.chats) {
      test(`${key}: chat template`, () => {
        for (const c of e.chats!) {
          expect(toks[key].renderChat(c.messages)).toBe(c.text);
          expect(toks[key].applyChatTemplate(c.messages)).toEqual(c.ids);
        }
      });
    }
  }
});

describe("parity with @huggingface/tokenizers on the corpus", () => {
  const hfTiny = new HfTokenizer(readJson(join(TINY_DIR, "tokenizer.json")) as object, readJson(join(TINY_DIR, "tokenizer_config.json")) as object);
  const qdir = join(MODELS_DIR, "qwen-tokenizer");
  const hfQwen = new HfTokenizer(readJson(join(qdir, "tokenizer.json.gz")) as object, readJson(join(qdir, "tokenizer_config.json")) as object);
  for (const [key, hf] of [["tiny", hfTiny], ["qwen", hfQwen]] as const) {
    test(`${key}: ${corpus.length} texts`, () => {
      for (const c of corpus) {
        const ids = toks[key].encode(c.text);
        const ref = hf.encode(c.text, { add_special_tokens: false }).ids;
        if (JSON.stringify(ids) !== JSON.stringify(ref)) {
          throw new Error(`${key}/${c.name}: ids differ\n ours ${JSON.stringify(ids)}\n hf.js ${JSON.stringify(ref)}`);
        }
        if (ids.length) expect(toks[key].decode(ids)).toBe(hf.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }));
      }
    });
  }
});

describe("round trips", () => {
  for (const key of ["tiny", "qwen"] as const) {
    test(`${key}: decode(encode(x)) == NFC(x) and streaming decode == decode`, () => {
      const t = toks[key];
      for (const c of corpus) {
        const ids = t.encode(c.text);
        const s = t.decode(ids);
        expect(s).toBe(c.text.normalize("NFC"));
        const d = t.decoder();
        const pieces = ids.map((id) => d.push(id));
        pieces.push(d.end());
        expect(pieces.join("")).toBe(s);
        if (!c.text.includes("\uFFFD")) for (const p of pieces) expect(p.includes("\uFFFD")).toBe(false);
      }
    });
  }
  test("invalid / incomplete UTF-8 decodes like from_utf8_lossy, streaming included", () => {
    expect(corpusFile.decode_cases.length).toBe(DECODE_EXPECTED.length);
    for (const t of [tiny, qwen]) {
      for (const [i, c] of corpusFile.decode_cases.entries()) {
        const ids = caseIds(t, c);
        expect(ids.every((x) => x !== undefined)).toBe(true);
        expect(t.decode(ids)).toBe(DECODE_EXPECTED[i]);
        const d = t.decoder();
        expect(ids.map((id) => d.push(id)).join("") + d.end()).toBe(DECODE_EXPECTED[i]);
      }
    }
  });
  test("empty", () => {
    expect(qwen.encode("")).toEqual([]);
    expect(qwen.decode([])).toBe("");
  });
  test("streaming holds back split UTF-8 and flushes broken tails as U+FFFD", () => {
    // "😀" is 4 bytes: byte-level tokens of its bytes one by one.
    const bytes = new TextEncoder().encode("a😀");
    const byteIds = [...bytes].map((b) => qwen.tokenToId(byteLevelChar(b))!);
    const d = qwen.decoder();
    expect(byteIds.map((id) => d.push(id))).toEqual(["a", "", "", "", "😀"]);
    const d2 = qwen.decoder();
    expect(d2.push(byteIds[1]) + d2.push(byteIds[2])).toBe("");
    expect(d2.end()).toBe("\uFFFD");
    expect(qwen.decode(byteIds.slice(0, 3))).toBe("a\uFFFD");
  });
});

function byteLevelChar(b: number): string {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  if (printable) return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++) if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) n++;
  return String.fromCharCode(256 + n);
}

describe("special tokens", () => {
  test("ids, eos, matching inside text", () => {
    expect(tiny.specialId("<|endoftext|>")).toBe(8192);
    expect(tiny.specialId("<|im_start|>")).toBe(8193);
    expect(tiny.specialId("<|im_end|>")).toBe(8194);
    expect(qwen.specialId("<|endoftext|>")).toBe(151643);
    expect(qwen.specialId("<|im_end|>")).toBe(151645);
    expect(tiny.eosId).toBe(8192);
    expect(tiny.eosIds.sort()).toEqual([8192, 8194]);
    expect(qwen.eosId).toBe(151645);
    expect(qwen.eosIds.sort()).toEqual([151643, 151645]);
    expect(tiny.encode("a<|im_start|>b<|endoftext|>")).toEqual([64, 8193, 65, 8192]);
    expect(tiny.encode("<|im_start|>", { parseSpecial: false }).length).toBeGreaterThan(1);
    expect(tiny.decode([64, 8193, 65, 8192], { skipSpecial: true })).toBe("ab");
    expect(tiny.encode("x", { addSpecial: true })).toEqual(tiny.encode("x")); // Qwen adds no BOS/EOS
    expect(qwen.vocabSize).toBe(151669);
    expect(tiny.vocabSize).toBe(8195);
    expect(qwen.idToToken(1)).toBe('"');
    expect(qwen.tokenToId("Ġthe")).toBe(279);
  });
});

describe("chat template", () => {
  const msgs = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }];
  test("tiny: its ChatML template", () => {
    const s = tiny.renderChat(msgs);
    expect(s).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    const ids = tiny.applyChatTemplate(msgs);
    expect(ids[0]).toBe(8193);
    expect(ids.slice(-1 - tiny.encode("assistant\n").length)).toEqual([8193, ...tiny.encode("assistant\n")]);
    expect(tiny.decode(ids)).toBe(s);
  });
  test("fallback to ChatML without a template", () => {
    const j = readJson(join(TINY_DIR, "tokenizer.json"));
    const t = QwenTokenizer.fromJson(j, { eos_token: "<|endoftext|>" });
    expect(t.chatTemplate).toBeNull();
    expect(t.renderChat(msgs)).toBe(tiny.renderChat(msgs));
    expect(t.renderChat(msgs, { addGenerationPrompt: false }).endsWith("<|im_end|>\n")).toBe(true);
    expect(CHATML_TEMPLATE).toContain("<|im_start|>");
  });
  test("full Qwen (Qwen3) template renders through @huggingface/jinja", () => {
    const s = qwen.renderChat([...msgs, { role: "assistant", content: "<think>\nr\n</think>\n\nHello" }, { role: "user", content: "Q" }]);
    expect(s).toBe("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n");
  });
});

describe("GGUF metadata", () => {
  test("toGgufMetadata like convert_hf_to_gguf.py, and back", () => {
    const meta = qwen.toGgufMetadata({ vocabSize: 151936 });
    const tokens = meta["tokenizer.ggml.tokens"] as string[];
    const types = meta["tokenizer.ggml.token_type"] as number[];
    const merges = meta["tokenizer.ggml.merges"] as string[];
    expect(meta["tokenizer.ggml.model"]).toBe("gpt2");
    expect(meta["tokenizer.ggml.pre"]).toBe("qwen2");
    expect(tokens.length).toBe(151936);
    expect(types.length).toBe(151936);
    expect(merges.length).toBe(151387);
    expect(merges[0]).toBe("Ġ Ġ");
    expect(tokens[151643]).toBe("<|endoftext|>");
    expect(types[151643]).toBe(TOKEN_TYPE.CONTROL);
    expect(types[151659]).toBe(TOKEN_TYPE.CONTROL); // <|fim_prefix|>: not special but looks special
    expect(types[151657]).toBe(TOKEN_TYPE.USER_DEFINED); // <tool_call>
    expect(types[151667]).toBe(TOKEN_TYPE.USER_DEFINED); // <think>
    expect(types[100]).toBe(TOKEN_TYPE.NORMAL);
    expect(tokens[151700]).toBe("[PAD151700]");
    expect(types[151700]).toBe(TOKEN_TYPE.UNUSED);
    expect(meta["tokenizer.ggml.bos_token_id"]).toBe(151643);
    expect(meta["tokenizer.ggml.eos_token_id"]).toBe(151645);
    expect(meta["tokenizer.ggml.padding_token_id"]).toBe(151643);
    expect(meta["tokenizer.ggml.add_bos_token"]).toBe(false);
    expect(typeof meta["tokenizer.chat_template"]).toBe("string");

    const back = QwenTokenizer.fromGgufMetadata({ ...meta, "tokenizer.ggml.token_type": Int32Array.from(types), "tokenizer.ggml.eos_token_id": 151645n });
    expect(back.vocabSize).toBe(151936);
    expect(back.eosIds.sort()).toEqual([151643, 151645]);
    expect(back.chatTemplate).toBe(qwen.chatTemplate);
    for (const c of corpus) expect(back.encode(c.text)).toEqual(qwen.encode(c.text));
    expect(back.decode([151700, 9707])).toBe(qwen.decode([9707]));
    const again = back.toGgufMetadata();
    expect(again["tokenizer.ggml.tokens"]).toEqual(tokens);
    expect(again["tokenizer.ggml.token_type"]).toEqual(types);
    expect(again["tokenizer.ggml.merges"]).toEqual(merges);
  });
  test("tiny: ids from config", () => {
    const meta = tiny.toGgufMetadata({ vocabSize: 8256 });
    expect((meta["tokenizer.ggml.tokens"] as string[]).length).toBe(8256);
    expect((meta["tokenizer.ggml.merges"] as string[]).length).toBe(7936);
    expect(meta["tokenizer.ggml.eos_token_id"]).toBe(8192);
    const back = QwenTokenizer.fromGgufMetadata(new Map(Object.entries(meta)));
    for (const p of golden.prompts) expect(back.encode(p.text)).toEqual(p.ids);
    // engine/formats/gguf.ts's typed form: { type, value }, arrays { elemType, items } (STRING 8, ARRAY 9, I32 5, U32 4).
    const kv = new Map<string, unknown>([["general.architecture", { type: 8, value: "qwen2" }]]);
    for (const [k, v] of Object.entries(meta)) {
      if (k === "tokenizer.ggml.token_type") kv.set(k, { type: 9, value: { elemType: 5, items: Int32Array.from(v as number[]) } });
      else if (Array.isArray(v)) kv.set(k, { type: 9, value: { elemType: 8, items: v } });
      else kv.set(k, { type: typeof v === "number" ? 4 : typeof v === "boolean" ? 7 : 8, value: v });
    }
    const typed = QwenTokenizer.fromGgufMetadata(kv);
    for (const p of golden.prompts) expect(typed.encode(p.text)).toEqual(p.ids);
    expect(typed.eosIds.sort()).toEqual([8192, 8194]);
  });
  test("bad metadata names the key", () => {
    const meta = tiny.toGgufMetadata();
    expect(() => QwenTokenizer.fromGgufMetadata({ ...meta, "tokenizer.ggml.pre": "llama-bpe" })).toThrow(/tokenizer\.ggml\.pre/);
    expect(() => QwenTokenizer.fromGgufMetadata({ ...meta, "tokenizer.ggml.model": "llama" })).toThrow(/tokenizer\.ggml\.model/);
    const { ["tokenizer.ggml.merges"]: _m, ...noMerges } = meta;
    expect(() => QwenTokenizer.fromGgufMetadata(noMerges)).toThrow(/tokenizer\.ggml\.merges/);
    expect(() => QwenTokenizer.fromGgufMetadata({ ...meta, "tokenizer.ggml.eos_token_id": 99999 })).toThrow(/eos_token_id/);
  });
});

describe("malformed tokenizer.json", () => {
  const good = () => structuredClone(readJson(join(TINY_DIR, "tokenizer.json"))) as Record<string, any>;
  test("errors name the problem", () => {
    expect(() => QwenTokenizer.fromJson({})).toThrow(/pre_tokenizer|model/);
    const a = good();
    delete a.model.vocab;
    expect(() => QwenTokenizer.fromJson(a)).toThrow(/model\.vocab/);
    const b = good();
    b.pre_tokenizer.pretokenizers[0].pattern.Regex = "\\w+";
    expect(() => QwenTokenizer.fromJson(b)).toThrow(/Split regex/);
    const c = good();
    c.model.merges[5] = 42;
    expect(() => QwenTokenizer.fromJson(c)).toThrow(/model\.merges\.5/);
    const d = good();
    d.model.merges[7] = ["Ġ", "notatoken"];
    expect(() => QwenTokenizer.fromJson(d)).toThrow(/merge #7.*notatoken/);
    const e = good();
    e.model.vocab["x"] = -3;
    expect(() => QwenTokenizer.fromJson(e)).toThrow(/model\.vocab\."x"/);
    const f = good();
    f.model.type = "WordPiece";
    expect(() => QwenTokenizer.fromJson(f)).toThrow(/model\.type/);
    expect(() => QwenTokenizer.fromJson(good(), { eos_token: "<|nope|>" })).toThrow(/<\|nope\|>/);
    expect(() => QwenTokenizer.fromTokenizerJson("/nonexistent/tokenizer.json")).toThrow(/cannot read/);
  });
  test("the pattern constant matches both tokenizer files", () => {
    const j = good();
    expect(j.pre_tokenizer.pretokenizers[0].pattern.Regex).toBe(QWEN2_PATTERN);
  });
});

// Worst-case and realistic inputs for the encoder (timed in notebooks/tokenizer-bench.ts, never here: a test
// must not assert a wall-clock time).
describe("large inputs", () => {
  test("a fresh full Qwen tokenizer encodes ~4k unique pseudo-words and the corpus, and decodes them back", () => {
    const t = loadQwenTokenizer();
    expect(t.vocabSize).toBe(qwen.vocabSize);
    // A fresh tokenizer (empty word cache) on ~4k tokens of mostly unique pseudo-words (worst case: no cache
    // hits), then on the corpus (realistic text, repeated words hit the word cache).
    const text = pseudoWords(1100, 12345);
    const ids = t.encode(text);
    expect(ids.length).toBeGreaterThan(3000);
    expect(ids).toEqual(qwen.encode(text));
    expect(t.decode(ids)).toBe(text);
    const text2 = corpus.map((c) => c.text).join("\n").repeat(3);
    const ids2 = t.encode(text2);
    expect(ids2.length).toBeGreaterThan(3000);
    expect(ids2).toEqual(qwen.encode(text2));
    expect(t.decode(ids2)).toBe(text2.normalize("NFC")); // the Qwen normalizer is NFC
  });
});
