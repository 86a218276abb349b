// engine/measure/roofline.ts: device grouping, the mixed-device warning, label placement, the cache explanation of points
// above the DRAM roof, and the server SVG over the committed CPU and H200 profiles.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readProfile } from "../../engine/measure/profile.ts";
import {
  aboveDramReason, cacheNote, ceilingsFor, groupByDevice, loadCeilings, mixedDeviceWarning, parseCeilings, placeLabels, rooflinePoints,
} from "../../engine/measure/roofline.ts";
import { rooflineSvg } from "../../engine/export/svg.ts";
import { generousTimeout } from "../setup.ts";

generousTimeout(); // Bun resets the default timeout per file (test/setup.ts)

const REPO = resolve(import.meta.dir, "../..");
const tiny = readProfile(join(REPO, "profiles/cpu-run-tiny-brown-bf16.json"));           // Intel Xeon, 10 MB of weights
const h200 = readProfile(join(REPO, "profiles/h200/run3/bench-0.5b-bf16-nvidia-h200-2026-12-03T09-03-19-864Z.json"));
const ceilings = loadCeilings(join(REPO, "profiles/ceilings"));

test("runs group by device; two devices give the warning, one does not", () => {
  const g = groupByDevice([tiny, h200, tiny]);
  expect(g.map((x) => [x.key, x.items.map((i) => i.index)])).toEqual([["Intel(R) Xeon(R) Processor (cpu)", [0, 2]], ["NVIDIA H200 (cuda)", [1]]]);
  expect(mixedDeviceWarning(g)).toMatch(/^Runs from 2 devices/);
  expect(mixedDeviceWarning(groupByDevice([tiny, tiny]))).toBeNull();
});

test("the overlay SVG of a CPU run and an H200 run: each on its own roofs, with the warning", () => {
  const svg = rooflineSvg([tiny, h200], ceilings, "layer-op");
  expect(svg).toContain("⚠ Runs from 2 devices");
  expect(svg).toContain("Intel(R) Xeon(R) Processor (cpu) · ceilings intel-r-xeon-r-processor.json");
  expect(svg).toContain("NVIDIA H200 (cuda) · ceilings nvidia-h200.json");
  // the CPU panel comes first and holds the CPU roof; the H200 roof appears after the H200 heading only
  const cpuAt = svg.indexOf("ceilings intel-r"), gpuAt = svg.indexOf("ceilings nvidia-h200");
  expect(svg.indexOf("read bandwidth 21.3 GB/s")).toBeGreaterThan(cpuAt);
  expect(svg.indexOf("read bandwidth 21.3 GB/s")).toBeLessThan(gpuAt);
  expect(svg.indexOf("copy bandwidth 4.26 TB/s")).toBeGreaterThan(gpuAt);
  // the layer × op view has 2 × 40+ points: only a few carry a text label
  expect(svg).toContain("labels on up to 8 points with the most time (none that would overlap)");
});

test("placeLabels: most time first, at most n, no overlapping boxes", () => {
  const pts = [{ seconds: 3, x: 0, y: 0, t: "aaaa" }, { seconds: 2, x: 5, y: 2, t: "bbbb" }, { seconds: 1, x: 0, y: 40, t: "cccc" }, { seconds: 0.5, x: 0, y: 80, t: "d" }];
  const got = placeLabels(pts, 2, (d) => d.x, (d) => d.y, (d) => d.t).map((d) => d.t);
  expect(got).toEqual(["aaaa", "cccc"]);
});

test("a point above the DRAM roof is explained by the cache its bytes fit in; the 10 MB tiny model is labelled", () => {
  const c = parseCeilings({ schema: "qwen-workbench/ceilings", version: 1, device: "Intel(R) Xeon(R) Processor", backend: "cpu", bandwidth_bytes_s: 21.3e9,
    cache_bandwidth_bytes_s: { l2: 300e9, l3: 100e9 }, cache_bytes: { l2: 2 << 20, l3: 300 << 20 }, flops: { fp32: 137e9 } }, "x.json");
  expect(aboveDramReason({ bytesPerS: 10e9, bytes: 1e6 }, c)).toBeNull();
  expect(aboveDramReason({ bytesPerS: 50e9, bytes: 1e6 }, c)).toMatch(/fits in L2 \(2.10 MB\)/);
  expect(aboveDramReason({ bytesPerS: 50e9, bytes: 20e6 }, c)).toMatch(/fits in L3/);
  const pts = rooflinePoints(tiny, "layer-op");
  const note = cacheNote(tiny, pts, c)!;
  expect(note).toMatch(/point\(s\) above the DRAM roof read from cache, not DRAM\. Its weights \(10\.3 MB\) fit in the last-level cache \(315 MB\)\./);
  // with the committed Intel ceilings (no cache roofs) the note says so
  expect(cacheNote(tiny, pts, ceilingsFor(ceilings, tiny.manifest.device.name, "cpu"))).toMatch(/No cache roofs measured for this device yet/);
});

test("the committed CPU file of calibrate.ts carries L2/L3 roofs with >= 3 samples each", () => {
  const c = ceilingsFor(ceilings, "AMD EPYC", "cpu");
  expect(c?.file).toBe("amd-epyc.json");
  expect(c!.memory.map((m) => m.level)).toEqual(["dram", "l3", "l2"]);
  expect(c!.cacheBytes.l2).toBeGreaterThan(0);
  const raw = JSON.parse(readFileSync(join(REPO, "profiles/ceilings/amd-epyc.json"), "utf8"));
  for (const k of ["l2_read_bandwidth", "l3_read_bandwidth"]) {
    expect(raw.measurements[k].samples.length).toBeGreaterThanOrEqual(3);
    expect(raw.measurements[k].median).toBe(raw.cache_bandwidth_bytes_s[k.slice(0, 2)]);
  }
});
