// The manifest block of a profile (docs/ARCHITECTURE.md §Measurement): who measured what, on which build and device. One
// implementation for the CLI, the notebooks and the web runs.
import { spawnSync } from "node:child_process";
import type { EngineModel } from "../api.ts";
import type { Manifest, ToggleValues } from "./profile.ts";
import { REPO_ROOT } from "../constants.ts";
import { outputFormat } from "../formats/requant.ts";

let gitCommitCache: string | undefined;
/** HEAD of the checkout the engine runs from, "-dirty" when tracked files differ from it, or "unknown". */
export function gitCommit(): string {
  if (gitCommitCache) return gitCommitCache;
  try {
    const r = spawnSync("git", ["rev-parse", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 5000 });
    const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: REPO_ROOT, encoding: "utf8", timeout: 5000 });
    gitCommitCache = r.status === 0 ? r.stdout.trim() + (dirty.status === 0 && dirty.stdout.trim() ? "-dirty" : "") : "unknown";
  } catch {
    gitCommitCache = "unknown";
  }
  return gitCommitCache;
}

export interface ManifestExtra {
  toggles?: ToggleValues;
  command?: string;
  label?: string;
  prompts?: Manifest["prompts"];
  sampling?: Manifest["sampling"];
}

type ManifestModel = Pick<EngineModel, "id" | "hash" | "format" | "config" | "buildInfo" | "device" | "weightTypes" | "weightBytes"> &
  Partial<Pick<EngineModel, "weights">>;

/** The manifest for a run on `model` (optional fields are left out when not given). */
export function modelManifest(model: ManifestModel, extra: ManifestExtra = {}): Manifest {
  return {
    date: new Date().toISOString(),
    git_commit: gitCommit(),
    engine_build: model.buildInfo,
    device: model.device,
    model: {
      id: model.id, hash: model.hash, format: model.format, config: { ...model.config },
      weight_types: model.weightTypes, weight_bytes: model.weightBytes,
      // the toggles record the layers' weights; the output's format (weightsLayers.output) has no toggle
      ...(outputFormat(model.weights) !== "as-loaded" ? { weights_output: outputFormat(model.weights) } : {}),
    },
    toggles: extra.toggles ?? {},
    ...(extra.prompts ? { prompts: extra.prompts } : {}),
    ...(extra.sampling ? { sampling: extra.sampling } : {}),
    ...(extra.command ? { command: extra.command } : {}),
    ...(extra.label ? { label: extra.label } : {}),
  };
}
