// `xenkvm schema [--json]`: the section descriptors this build writes.
// `xenkvm schema check OLD NEW`: whether files written with OLD's schemas
// load with NEW's and the reverse (each a schema JSON file or a snapshot;
// NEW defaults to this build).  Exit status: 0 compatible both ways (or in
// the --direction asked), 1 breaking changes, 2 bad input.
import { UsageError } from '../errors.js';
import { printers, reportError } from './inspect.js';
import { defineCommand } from './command.js';

export const SCHEMA_EXIT = { compatible: 0, breaking: 1, trouble: 2 } as const;

export type SchemaDirection = 'both' | 'old-in-new' | 'new-in-old';

export interface SchemaArgs {
  readonly json?: boolean;
  readonly out?: (text: string) => void;
  readonly err?: (text: string) => void;
  readonly color?: boolean;
}

export interface SchemaCheckArgs extends SchemaArgs {
  readonly old: string;
  /** Default: this build's schemas. */
  readonly new?: string;
  /** Which breaks set the exit status; default both. */
  readonly direction?: SchemaDirection;
}

const check = defineCommand({
  command: 'check <old> [new]',
  describe: 'Say whether files written with OLD load with NEW and the reverse, listing each breaking change',
  builder: (c) =>
    c
      .positional('old', {
        type: 'string',
        demandOption: true,
        describe:
          "schema JSON (xenkvm schema --json), a file with one section's schema, or a snapshot (its embedded schemas)",
      })
      .positional('new', { type: 'string', describe: 'the same kinds of file; default: this build' })
      .option('direction', {
        type: 'string',
        default: 'both',
        describe: 'which breaks set the exit status: both, old-in-new (can NEW read files of OLD?) or new-in-old',
      })
      .example('$0 schema --json > schema-0.1.json', "save this release's schemas")
      .example('$0 schema check schema-0.1.json', 'can this build read files of 0.1, and 0.1 files of this build?')
      .example('$0 schema check old.xks --direction old-in-new', "does this build still read that snapshot's sections?")
      .epilogue(
        'Exit status: 0 compatible (in the direction asked), 1 breaking changes, 2 unreadable or invalid input.',
      ),
  run: (a) =>
    schemaCheckCommand({
      old: a.old,
      new: a.new,
      direction: a.direction as SchemaDirection,
      // --json is schema's own option, also given to check.
      json: a['json'] as boolean,
    }),
});

export const command = defineCommand({
  command: 'schema',
  describe: 'Print the section descriptors this build writes, or check two schemas for compatibility',
  subcommands: [check],
  builder: (y) =>
    y
      .option('json', {
        type: 'boolean',
        default: false,
        describe: 'print JSON: {"sections": {NAME: schema}}, the input of schema check',
      })
      .example('$0 schema', 'fields, kinds, versions and defaults of every section, with subsections')
      .example('$0 schema --json > schema.json', 'the same as JSON'),
  run: (a) => schemaCommand({ json: a.json }),
});

/** The inspector's schema functions, loaded when the command runs (command.ts). */
const load = () => import('../inspect/index.js');

export async function schemaCommand(args: SchemaArgs): Promise<number> {
  const { colorFor, currentSchemaSet, jsonText, renderSchemaSet, schemaSetJson, style } = await load();
  const p = printers(args, colorFor);
  try {
    const set = currentSchemaSet();
    p.out(args.json ? `${jsonText(schemaSetJson(set))}\n` : `${renderSchemaSet(set, style(p.color)).join('\n')}\n`);
    return 0;
  } catch (e) {
    return reportError(e, p.err);
  }
}

export async function schemaCheckCommand(args: SchemaCheckArgs): Promise<number> {
  const { checkSchemaSets, colorFor, currentSchemaSet, jsonText, loadSchemaSet, renderSchemaCheck, style } =
    await load();
  const p = printers(args, colorFor);
  try {
    const direction = args.direction ?? 'both';
    if (!['both', 'old-in-new', 'new-in-old'].includes(direction))
      throw new UsageError(`--direction must be both, old-in-new or new-in-old, not '${direction}'`);
    const o = await loadSchemaSet(args.old);
    const n = args.new === undefined ? currentSchemaSet() : await loadSchemaSet(args.new);
    const c = checkSchemaSets(o, n);
    const counted =
      (direction !== 'new-in-old' ? c.oldInNew.length : 0) + (direction !== 'old-in-new' ? c.newInOld.length : 0);
    const compatible = counted === 0;
    if (args.json) {
      const b = (x: typeof c.oldInNew) => x.map(({ section, path, message }) => ({ section, path, message }));
      p.out(
        `${jsonText({ old: c.old, new: c.new, compatible, oldLoadsInNew: c.oldInNew.length === 0, newLoadsInOld: c.newInOld.length === 0, oldInNew: b(c.oldInNew), newInOld: b(c.newInOld) })}\n`,
      );
    } else {
      p.out(`${renderSchemaCheck(c, style(p.color)).join('\n')}\n`);
    }
    return compatible ? SCHEMA_EXIT.compatible : SCHEMA_EXIT.breaking;
  } catch (e) {
    return reportError(e, p.err);
  }
}
