// The notebook file format, .ipynb conversion, the cell transform, the display helpers' terminal mode, and the
// shipped notebooks run unchanged with `bun notebooks/X.nb.ts` (spawned, as from a terminal).
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { cellHash, matchOutputs, outputsFile, parseNotebook, parseOutputs, serializeNotebook, type Cell, type Output } from "../../engine/notebook/format.ts";
import { fromIpynb, toIpynb } from "../../engine/notebook/ipynb.ts";
import { transformCell } from "../../engine/notebook/transform.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const NOTEBOOKS = readdirSync(join(REPO, "notebooks")).filter((f) => f.endsWith(".nb.ts")).sort();

const cells: Cell[] = [
  { type: "markdown", source: "# Title\n\nSome *text* and a list:\n\n- one\n- two" },
  { type: "code", source: "import { x } from \"./x.ts\";\nconst a = 1;", title: "Setup" },
  { type: "code", source: "for (let i = 0; i < 3; i++) {\n\n  console.log(i);\n}" },
];
const outputs: Output[][] = [
  [],
  [{ type: "text", text: "hello\nworld\n", stream: "stdout" }, { type: "text", text: "oops\n", stream: "stderr" }, { type: "markdown", text: "**bold**" }],
  [
    { type: "table", rows: [{ a: 1, b: "x" }, { a: 2, b: null }], columns: ["a", "b"], title: "t" },
    { type: "plotly", data: [{ type: "bar", x: [1], y: [2] }], layout: { title: { text: "p" } } },
    { type: "svg", svg: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"></svg>", title: "fig" },
    { type: "html", html: "<b>hi</b>" },
    { type: "progress", key: "k", label: "arms", done: 3, total: 3 },
    { type: "error", name: "Error", message: "bad", line: 4, stack: "at cell:4:7" },
  ],
];

describe("notebook format", () => {
  test("serialize → parse gives the cells back; the text is stable", () => {
    const text = serializeNotebook(cells);
    expect(text).toStartWith("// %% [markdown]\n// # Title\n//\n// Some *text* and a list:\n");
    expect(text).toContain("\n\n// %% Setup\nimport");
    expect(parseNotebook(text)).toEqual(cells);
    expect(serializeNotebook(parseNotebook(text))).toBe(text);
  });

  test("every shipped notebook is in canonical form (parse → serialize is the identity)", () => {
    expect(NOTEBOOKS.length).toBeGreaterThanOrEqual(4);
    for (const f of NOTEBOOKS) {
      const text = readFileSync(join(REPO, "notebooks", f), "utf8");
      const c = parseNotebook(text);
      expect(c.filter((x) => x.type === "code").length).toBeGreaterThanOrEqual(2);
      expect(serializeNotebook(c)).toBe(text);
    }
  });

  test("text before the first marker is a code cell; CRLF is accepted; a lone marker is an empty cell", () => {
    expect(parseNotebook("const a = 1;\r\n\r\n// %%\r\nb\r\n")).toEqual([{ type: "code", source: "const a = 1;" }, { type: "code", source: "b" }]);
    expect(parseNotebook("\n\n// %% [md]\n// x\n// %%\n")).toEqual([{ type: "markdown", source: "x" }, { type: "code", source: "" }]);
    expect(parseNotebook("")).toEqual([]);
  });

  test("outputs are matched to cells by source hash, survive reordering, and are dropped when a cell changes", () => {
    const file = outputsFile(cells, outputs.map((o) => ({ outputs: o, ok: true })));
    expect(file.cells.length).toBe(2);
    const parsed = parseOutputs(JSON.stringify(file));
    expect(parsed.error).toBeUndefined();
    const moved = [cells[0], cells[2], cells[1]];
    const m = matchOutputs(moved, parsed.file);
    expect(m[1]!.outputs).toEqual(outputs[2]);
    expect(m[2]!.outputs).toEqual(outputs[1]);
    const edited = [cells[0], { ...cells[1], source: cells[1].source + "\nconst b = 2;" }, cells[2]];
    expect(matchOutputs(edited, parsed.file)[1]).toBeNull();
    expect(cellHash("a\n\n")).toBe(cellHash("a"));
    expect(parseOutputs("{").error).toContain("not JSON");
    expect(parseOutputs(JSON.stringify({ ...file, cells: [{ hash: 1 }] })).error).toContain("cells.0.hash");
  });
});

describe(".ipynb", () => {
  test("round trip: cells and outputs → ipynb → cells and outputs", () => {
    const nb = toIpynb(cells, outputs.map((o) => ({ outputs: o })));
    const json = JSON.parse(JSON.stringify(nb));
    expect(json.nbformat).toBe(4);
    expect(json.metadata.kernelspec.language).toBe("typescript");
    expect(json.cells[1].source).toEqual(["import { x } from \"./x.ts\";\n", "const a = 1;"]);
    const back = fromIpynb(json);
    expect(back.cells).toEqual(cells);
    expect(back.outputs).toEqual(outputs);
    expect(toIpynb(back.cells, back.outputs.map((o) => ({ outputs: o })))).toEqual(nb);
  });

  test("a notebook written by Jupyter imports: standard mime bundles, raw cells, string sources", () => {
    const jup = {
      nbformat: 4, nbformat_minor: 2, metadata: { kernelspec: { name: "python3" } },
      cells: [
        { cell_type: "markdown", metadata: {}, source: "# Hi" },
        { cell_type: "code", metadata: {}, execution_count: 3, source: ["1 + 1\n"], outputs: [
          { output_type: "execute_result", execution_count: 3, metadata: {}, data: { "text/plain": ["2"] } },
          { output_type: "display_data", metadata: {}, data: { "image/png": "iVBORw0KGgo=\n", "text/plain": "<Figure>" } },
          { output_type: "stream", name: "stdout", text: ["a\n", "b\n"] },
          { output_type: "error", ename: "ValueError", evalue: "no", traceback: ["line 1", "line 2"] },
        ] },
        { cell_type: "raw", metadata: {}, source: "raw text" },
      ],
    };
    const r = fromIpynb(jup);
    expect(r.cells).toEqual([{ type: "markdown", source: "# Hi" }, { type: "code", source: "1 + 1" }, { type: "markdown", source: "raw text" }]);
    expect(r.outputs[1]).toEqual([
      { type: "text", text: "2" },
      { type: "html", html: "<img src=\"data:image/png;base64,iVBORw0KGgo=\">" },
      { type: "text", text: "a\nb\n", stream: "stdout" },
      { type: "error", name: "ValueError", message: "no", stack: "line 1\nline 2" },
    ]);
  });

  test("bad input is a clear error", () => {
    expect(() => fromIpynb({ cells: [] })).toThrow(/not a Jupyter notebook: nbformat/);
    expect(() => fromIpynb({ nbformat: 3, cells: [] })).toThrow(/nbformat 4/);
    expect(() => fromIpynb({ nbformat: 4, cells: [{ cell_type: "code" }] })).toThrow(/cells\.0\.source/);
  });
});

describe("cell transform", () => {
  test("declarations and imports are copied to globalThis on the same line; the last expression is the value", () => {
    const src = [
      'import { a, type T } from "./a.ts";',
      'import type { U } from "./u.ts";',
      "const x: number = 1, { y, z: [w] } = { y: 2, z: [3] };",
      "let n = 0; // comment",
      "function f() { return x; }",
      "class K {}",
      "export const e = import.meta.dir;",
      "n += 1;",
      "f() + n",
    ].join("\n");
    const r = transformCell(src, (s) => `/abs/${s}`, { file: "/nb/x.nb.ts", dir: "/nb" });
    const lines = r.code.split("\n");
    expect(lines[0]).toBe('import { a, type T } from "/abs/./a.ts"; globalThis.a = a;');
    expect(lines[1]).toBe('import type { U } from "./u.ts";');
    expect(lines[2]).toContain("globalThis.x = x; globalThis.y = y; globalThis.w = w;");
    expect(lines[3]).toBe("let n = 0; ;globalThis.n = n; // comment");
    expect(lines[6]).toBe('       const e = "/nb"; ;globalThis.e = e;');
    expect(lines[8]).toBe("export default (f() + n)");
    expect(lines[9]).toBe(";globalThis.n = n;");   // let/var re-copied at the end (after reassignments)
    expect(lines.length).toBe(10);                  // line numbers of the cell are preserved
    expect(r.names).toEqual(["a", "x", "y", "w", "n", "f", "K", "e"]);
  });
});

describe("shipped notebooks run unchanged with bun from a terminal", () => {
  const native = existsSync(join(REPO, "cuda/build/libqwen_cpu.so"));
  if (!native) console.warn("[notebook] libqwen_cpu.so not built: skipping the terminal runs (make -C cuda cpu)");
  for (const f of NOTEBOOKS) {
    test.skipIf(!native)(f, async () => {
      const p = Bun.spawn([process.execPath, join("notebooks", f)], { cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env, QW_BACKEND: "cpu" } });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      if (code !== 0) console.error(err);
      expect(code).toBe(0);
      expect(out).toContain("default:tiny-qwen2-brown");
      expect(out).toMatch(/\n\| [^\n]+ \|\n\| --- \|/);        // a table printed as markdown
      expect(out).toMatch(/\[svg figure|\[plotly figure/);    // figures are announced, not dropped silently
    }, 300_000);
  }
});
