// Turns one notebook cell into a module that shares state with the cells before it (the REPL design):
//
//   - every cell runs as its own ES module (so top-level await, imports and TypeScript work natively in Bun);
//   - the cells of one notebook share one global object (one Bun Worker per open notebook). After each top-level
//     declaration the cell copies the new bindings onto globalThis (`const x = …; globalThis.x = x;`), and
//     `let`/`var` bindings are copied again at the end of the cell (to catch reassignments). Later cells read
//     them as free identifiers, which resolve to globalThis properties;
//   - import specifiers are resolved against the notebook file's folder, so a cell module written anywhere
//     imports what the file would import when run with `bun X.nb.ts`;
//   - a last expression statement becomes the module's default export: the page displays it (REPL style).
// Every edit keeps the line structure (insertions contain no newline; the trailing sync goes after the last
// line), so Bun's stack traces point at the cell's own line numbers.
// Known limit: a function declared in cell A that reassigns a `let` of cell A keeps writing A's binding; cells
// after A see the value copied at the end of A. Use an object (state.x = …) for shared mutable state.
import ts from "typescript";

export interface TransformResult { code: string; names: string[] }

function bindingNames(n: ts.BindingName, out: string[]) {
  if (ts.isIdentifier(n)) out.push(n.text);
  else for (const el of n.elements) if (!ts.isOmittedExpression(el)) bindingNames(el.name, out);
}

const hasModifier = (s: ts.Node, k: ts.SyntaxKind) => !!(ts.canHaveModifiers(s) && ts.getModifiers(s)?.some((m) => m.kind === k));

/** import.meta.dir / path / url of the notebook file, substituted into the cell (its module lives elsewhere). */
export interface CellMeta { file: string; dir: string }

export function transformCell(source: string, resolveSpecifier: (spec: string) => string, meta?: CellMeta): TransformResult {
  const sf = ts.createSourceFile("cell.ts", source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edits: { pos: number; end: number; text: string }[] = [];
  const names: string[] = [];
  const mutable: string[] = [];
  const sync = (ns: string[]) => ns.map((n) => `globalThis.${n} = ${n};`).join(" ");
  const stmts = sf.statements;
  stmts.forEach((s, i) => {
    // `export` has no meaning in a cell module shared through globals; blank it out (same length).
    if (ts.canHaveModifiers(s)) for (const m of ts.getModifiers(s) ?? []) {
      if (m.kind === ts.SyntaxKind.ExportKeyword) edits.push({ pos: m.getStart(sf), end: m.end, text: " ".repeat(m.end - m.getStart(sf)) });
    }
    if (ts.isImportDeclaration(s)) {
      const spec = s.moduleSpecifier as ts.StringLiteral;
      const c = s.importClause;
      if (c?.isTypeOnly) return; // erased by Bun; its file need not resolve
      edits.push({ pos: spec.getStart(sf), end: spec.end, text: JSON.stringify(resolveSpecifier(spec.text)) });
      if (!c) return;
      const ns: string[] = [];
      if (c.name) ns.push(c.name.text);
      if (c.namedBindings) {
        if (ts.isNamespaceImport(c.namedBindings)) ns.push(c.namedBindings.name.text);
        else for (const el of c.namedBindings.elements) if (!el.isTypeOnly) ns.push(el.name.text);
      }
      if (ns.length) { edits.push({ pos: s.end, end: s.end, text: ` ${sync(ns)}` }); names.push(...ns); }
      return;
    }
    if (ts.isExportDeclaration(s) && s.moduleSpecifier && ts.isStringLiteral(s.moduleSpecifier)) {
      edits.push({ pos: s.moduleSpecifier.getStart(sf), end: s.moduleSpecifier.end, text: JSON.stringify(resolveSpecifier(s.moduleSpecifier.text)) });
      return;
    }
    if (hasModifier(s, ts.SyntaxKind.DeclareKeyword)) return;
    let ns: string[] = [];
    if (ts.isVariableStatement(s)) {
      for (const d of s.declarationList.declarations) bindingNames(d.name, ns);
      if (!(s.declarationList.flags & ts.NodeFlags.Const)) mutable.push(...ns);
    } else if ((ts.isFunctionDeclaration(s) || ts.isClassDeclaration(s) || ts.isEnumDeclaration(s)) && s.name) {
      ns = [s.name.text];
    }
    if (ns.length) { edits.push({ pos: s.end, end: s.end, text: ` ;${sync(ns)}` }); names.push(...ns); }
    if (i === stmts.length - 1 && ts.isExpressionStatement(s)) {
      const e = s.expression;
      edits.push({ pos: e.getStart(sf), end: e.getStart(sf), text: "export default (" }, { pos: e.end, end: e.end, text: ")" });
    }
  });
  if (meta) {
    const value: Record<string, string> = { dir: meta.dir, dirname: meta.dir, path: meta.file, filename: meta.file, url: Bun.pathToFileURL(meta.file).href };
    const visit = (n: ts.Node) => {
      if (ts.isPropertyAccessExpression(n) && ts.isMetaProperty(n.expression) && n.expression.keywordToken === ts.SyntaxKind.ImportKeyword
        && value[n.name.text] !== undefined) {
        edits.push({ pos: n.getStart(sf), end: n.end, text: JSON.stringify(value[n.name.text]) });
        return;
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  edits.sort((a, b) => b.pos - a.pos || b.end - a.end);
  let code = source;
  for (const e of edits) code = code.slice(0, e.pos) + e.text + code.slice(e.end);
  const tail = [...new Set(mutable)];
  if (tail.length) code += `\n;${sync(tail)}`;
  return { code, names: [...new Set(names)] };
}
