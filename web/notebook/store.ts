// Notebook files on disk: <dir>/<name>.nb.ts and, beside it, <name>.outputs.json. Names are plain file stems;
// every path is confined to the notebooks folder. Writes are atomic (temp file + rename).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeAll, writeFileAtomic } from "../../engine/formats/gguf.ts";
import {
  matchOutputs, NOTEBOOK_EXT, OUTPUTS_EXT, outputsFile, parseNotebook, parseOutputs, serializeNotebook,
  type Cell, type CellOutputs, type Output,
} from "../../engine/notebook/format.ts";
import { HttpError } from "../errors.ts";
import { confine } from "../paths.ts";

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface NotebookDoc {
  name: string;
  file: string;
  cells: Cell[];
  outputs: (CellOutputs | null)[];
  outputsError?: string;
  modified: string;
}

async function writeText(path: string, text: string) {
  await writeFileAtomic(path, async (fd) => writeAll(fd, new TextEncoder().encode(text), 0));
}

export class NotebookStore {
  readonly dir: string;
  constructor(dir: string) { this.dir = resolve(dir); }

  path(name: string, ext = NOTEBOOK_EXT): string {
    if (!NAME_RE.test(name)) throw new HttpError(400, `notebook name: 1–64 of A-Z a-z 0-9 . _ - (starting with a letter or digit), got ${JSON.stringify(name.slice(0, 80))}`);
    return confine(this.dir, name + ext);
  }

  list(): { name: string; modified: string; cells: number; hasOutputs: boolean }[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir).filter((f) => f.endsWith(NOTEBOOK_EXT)).map((f) => f.slice(0, -NOTEBOOK_EXT.length))
      .filter((n) => NAME_RE.test(n)).sort().map((name) => {
        const p = join(this.dir, name + NOTEBOOK_EXT);
        let cells = 0;
        try { cells = parseNotebook(readFileSync(p, "utf8")).length; } catch { /* listed anyway */ }
        return { name, modified: statSync(p).mtime.toISOString(), cells, hasOutputs: existsSync(join(this.dir, name + OUTPUTS_EXT)) };
      });
  }

  exists(name: string) { return existsSync(this.path(name)); }

  read(name: string): NotebookDoc {
    const file = this.path(name);
    if (!existsSync(file)) throw new HttpError(404, `no notebook named ${name} in ${this.dir}`);
    const cells = parseNotebook(readFileSync(file, "utf8"));
    const op = this.path(name, OUTPUTS_EXT);
    let outputs: (CellOutputs | null)[] = cells.map(() => null);
    let outputsError: string | undefined;
    if (existsSync(op)) {
      const r = parseOutputs(readFileSync(op, "utf8"));
      outputsError = r.error;
      outputs = matchOutputs(cells, r.file);
    }
    return { name, file, cells, outputs, ...(outputsError ? { outputsError } : {}), modified: statSync(file).mtime.toISOString() };
  }

  /** Writes the notebook and its outputs (outputs[i] belongs to cells[i]; none → the outputs file is removed). */
  async write(name: string, cells: Cell[], outputs: ({ outputs: Output[]; ok?: boolean; ms?: number } | null)[]): Promise<NotebookDoc> {
    const file = this.path(name), op = this.path(name, OUTPUTS_EXT);
    mkdirSync(this.dir, { recursive: true });
    await writeText(file, serializeNotebook(cells));
    const of = outputsFile(cells, outputs);
    if (of.cells.length) await writeText(op, JSON.stringify(of, null, 1) + "\n");
    else rmSync(op, { force: true });
    return this.read(name);
  }
}
