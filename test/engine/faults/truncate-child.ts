// Child process for faults.test.ts (D1): opens a model, truncates its weights file mid-read, and reports
// what happened as one JSON line. Run in a child so that a SIGBUS (the bug) kills only this process.
//   bun truncate-child.ts source <path> <fileToTruncate>   — openModelSource, truncate, read every tensor
//   bun truncate-child.ts load <path> <fileToTruncate>     — openModel (CPU engine), truncate on the first progress
import { truncateSync } from "node:fs";
import { openModelSource } from "../../../engine/formats/modelfile.ts";

const [mode, path, victim] = process.argv.slice(2);
const report = (o: object) => console.log(JSON.stringify(o));
try {
  if (mode === "source") {
    const src = openModelSource(path);
    truncateSync(victim, 4096);
    let bytes = 0;
    for (const t of src.tensors) bytes += t.data.byteLength;
    report({ ok: true, bytes });
  } else {
    const { openModel } = await import("../../../engine/index.ts");
    let cut = false;
    const m = await openModel(path, {
      backend: "cpu",
      onProgress: (p) => { if (!cut && p.stage === "load") { truncateSync(victim, 4096); cut = true; } },
    });
    m.close();
    report({ ok: true, cut });
  }
} catch (e) {
  report({ ok: false, error: (e as Error).message });
}
