// The import rule of src/, read from the sources with the TypeScript parser:
// no import cycles; every import points down a floor or stays in its folder
// (the floors are listed below, lowest first); and the start-up paths that
// are kept small on purpose stay small: what `xenkvm` and `xenkvm restore`
// load before they have anything to do, following static imports only (an
// import() loads later, when its code runs).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import ts from 'typescript';
import { repoPath } from './helpers/paths.js';

/** Floors, lowest first: a module may import from a lower floor, or from its own folder. */
const FLOORS: ReadonlyArray<readonly [string, number]> = [
  ['errors.ts', 1],
  ['version.ts', 1],
  ['trace.ts', 1],
  ['vmstate/', 2],
  ['qmp/', 2],
  ['kvm/', 3],
  ['xen/', 4],
  ['machine/', 5],
  ['migrate/', 6],
  ['inspect/', 7],
  ['cli/', 8],
];

/**
 * What `xenkvm restore` loads only once it has started its threads (see
 * src/cli/restore.ts): the emulator and its state, the file reader, the run
 * loop, the control socket and migration commands, and the vCPU and timer
 * threads' own modules (which load in those threads).
 */
const RESTORE_LOADS_LATER = [
  'machine/machine.ts',
  'machine/state.ts',
  'machine/sections.ts',
  'machine/vcpu-worker.ts',
  'machine/timer-worker.ts',
  'migrate/sections-in.ts',
  'migrate/snapshot/restore.ts',
  'migrate/stream/file.ts',
  'migrate/stream/reader.ts',
  'cli/run.ts',
  'cli/progress.ts',
  'qmp/server.ts',
  'migrate/live/qmp-commands.ts',
];
/** Packages neither `xenkvm` nor `xenkvm restore` loads at start-up (koffi alone costs tens of ms). */
const PACKAGES_LOADED_LATER = ['koffi', 'yargs', '@msgpack/msgpack', 'fflate'];

type Kind = 'static' | 'type' | 'dynamic';
interface Edge {
  from: string;
  /** src-relative path of the imported module, or the package name. */
  to: string;
  kind: Kind;
  local: boolean;
}

const SRC = repoPath('src');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(relative(SRC, p).split('\\').join('/'));
  }
  return out;
}

/** Every import of `file`: declarations, re-exports, import() calls and import('...') types. */
function importsOf(file: string): Edge[] {
  const sf = ts.createSourceFile(file, readFileSync(join(SRC, file), 'utf8'), ts.ScriptTarget.ES2022, true);
  const out: Edge[] = [];
  const add = (spec: string, kind: Kind): void => {
    const local = spec.startsWith('.');
    const to = local ? posix.normalize(posix.join(dirname(file), spec)).replace(/\.js$/, '.ts') : spec;
    out.push({ from: file, to, kind, local });
  };
  const visit = (n: ts.Node): void => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const c = n.importClause;
      // Erased by the compiler: `import type`, or only `type` names.
      const typeOnly =
        c !== undefined &&
        (c.isTypeOnly ||
          (c.name === undefined &&
            c.namedBindings !== undefined &&
            ts.isNamedImports(c.namedBindings) &&
            c.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(n.moduleSpecifier.text, typeOnly ? 'type' : 'static');
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const e = n.exportClause;
      const typeOnly =
        n.isTypeOnly || (e !== undefined && ts.isNamedExports(e) && e.elements.every((x) => x.isTypeOnly));
      add(n.moduleSpecifier.text, typeOnly ? 'type' : 'static');
    } else if (
      ts.isCallExpression(n) &&
      n.expression.kind === ts.SyntaxKind.ImportKeyword &&
      n.arguments[0] !== undefined &&
      ts.isStringLiteralLike(n.arguments[0])
    ) {
      add(n.arguments[0].text, 'dynamic');
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      add(n.argument.literal.text, 'type');
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const files = sources(SRC);
const edges = files.flatMap(importsOf);
const localEdges = edges.filter((e) => e.local);

const floorOf = (file: string): number | undefined =>
  FLOORS.find(([prefix]) => (prefix.endsWith('/') ? file.startsWith(prefix) : file === prefix))?.[1];
const folderOf = (file: string): string => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '.');

/** Modules and packages `start` loads before any of its code runs. */
function staticClosure(start: string): { modules: Set<string>; packages: Set<string>; path: Map<string, string> } {
  const modules = new Set([start]);
  const packages = new Set<string>();
  /** How each was reached (for messages): importer by module or package. */
  const path = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const from = queue.pop()!;
    for (const e of edges) {
      if (e.from !== from || e.kind !== 'static') continue;
      if (!e.local) {
        if (!packages.has(e.to)) path.set(e.to, from);
        packages.add(e.to);
      } else if (!modules.has(e.to)) {
        modules.add(e.to);
        path.set(e.to, from);
        queue.push(e.to);
      }
    }
  }
  return { modules, packages, path };
}

const chain = (path: Map<string, string>, start: string, end: string): string => {
  const out = [end];
  for (let at = end; at !== start && path.has(at);) out.unshift((at = path.get(at)!));
  return out.join(' → ');
};

test('the parser finds the imports (sanity: a few known ones)', () => {
  assert.ok(files.length > 100, `${files.length} source files`);
  const has = (from: string, to: string, kind: Kind) =>
    edges.some((e) => e.from === from && e.to === to && e.kind === kind);
  assert.ok(has('cli/main.ts', 'cli/restore.ts', 'dynamic'), 'main imports restore with import()');
  assert.ok(has('cli/main.ts', 'cli/restore.ts', 'type'), 'main imports restore types');
  assert.ok(has('cli/restore.ts', 'machine/thread-pool.ts', 'static'), 'restore imports the thread pool');
  assert.ok(has('kvm/kvm.ts', 'koffi', 'static'), 'the KVM bindings import koffi');
  assert.ok(
    edges.some((e) => e.from === 'migrate/index.ts' && e.kind === 'static' && e.to.startsWith('migrate/stream/')),
    'migrate/index.ts re-exports the stream',
  );
});

test('every import names a file that exists, and every file has a floor', () => {
  const known = new Set(files);
  for (const e of localEdges) assert.ok(known.has(e.to), `${e.from} imports ${e.to}, which is not in src/`);
  for (const f of files) assert.ok(floorOf(f) !== undefined, `${f} is in no floor: add its folder to FLOORS`);
});

test('no import cycle in src/ (static, type-only and import() alike)', () => {
  const next = new Map<string, string[]>();
  for (const e of localEdges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (u: string): void => {
    state.set(u, 'open');
    stack.push(u);
    for (const v of next.get(u) ?? []) {
      if (state.get(v) === 'open') cycles.push([...stack.slice(stack.indexOf(v)), v].join(' → '));
      else if (!state.has(v)) visit(v);
    }
    stack.pop();
    state.set(u, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.equal(cycles, []);
});

test('every import points down a floor, or stays within its folder', () => {
  const wrong = localEdges
    .filter((e) => {
      const from = floorOf(e.from)!;
      const to = floorOf(e.to)!;
      return !(to < from || folderOf(e.from) === folderOf(e.to));
    })
    .map((e) => `${e.from} (floor ${floorOf(e.from)}) imports ${e.to} (floor ${floorOf(e.to)})`);
  assert.equal(wrong, []);
});

test('`xenkvm` loads no command module before it knows the command', () => {
  const { modules, packages, path } = staticClosure('cli/main.ts');
  const later = edges.filter((e) => e.from === 'cli/main.ts' && e.kind === 'dynamic').map((e) => e.to);
  assert.ok(later.includes('yargs') && later.includes('cli/restore.ts'), 'main imports yargs and the commands lazily');
  for (const m of later)
    assert.not.ok(
      modules.has(m) || packages.has(m),
      `cli/main.ts loads ${m} at start-up: ${chain(path, 'cli/main.ts', m)}`,
    );
  for (const p of PACKAGES_LOADED_LATER)
    assert.not.ok(packages.has(p), `cli/main.ts loads ${p} at start-up: ${chain(path, 'cli/main.ts', p)}`);
});

test('`xenkvm restore` loads neither the emulator nor the file reader before its threads start', () => {
  const { modules, packages, path } = staticClosure('cli/restore.ts');
  const later = edges.filter((e) => e.from === 'cli/restore.ts' && e.kind === 'dynamic').map((e) => e.to);
  assert.ok(later.includes('migrate/snapshot/restore.ts'), 'restore imports the emulator lazily');
  for (const m of [...later, ...RESTORE_LOADS_LATER])
    assert.not.ok(modules.has(m), `cli/restore.ts loads ${m} at start-up: ${chain(path, 'cli/restore.ts', m)}`);
  for (const p of PACKAGES_LOADED_LATER)
    assert.not.ok(packages.has(p), `cli/restore.ts loads ${p} at start-up: ${chain(path, 'cli/restore.ts', p)}`);
  for (const m of RESTORE_LOADS_LATER) assert.ok(files.includes(m), `${m} (in RESTORE_LOADS_LATER) is not in src/`);
});

test.run();
