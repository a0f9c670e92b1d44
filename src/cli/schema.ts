// `xenkvm schema [--json]`: the section descriptors this build writes.
// `xenkvm schema check OLD NEW`: whether files written with OLD's schemas
// load with NEW's and the reverse (each a schema JSON file or a snapshot;
// NEW defaults to this build).  Exit status: 0 compatible both ways (or in
// the --direction asked), 1 breaking changes, 2 bad input.
import { UsageError } from '../errors.js';
import {
  checkSchemaSets,
  currentSchemaSet,
  jsonText,
  loadSchemaSet,
  renderSchemaCheck,
  renderSchemaSet,
  schemaSetJson,
  style,
} from '../inspect/index.js';
import { printers, reportError } from './inspect.js';

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

export async function schemaCommand(args: SchemaArgs): Promise<number> {
  const p = printers(args);
  try {
    const set = currentSchemaSet();
    p.out(args.json ? `${jsonText(schemaSetJson(set))}\n` : `${renderSchemaSet(set, style(p.color)).join('\n')}\n`);
    return 0;
  } catch (e) {
    return reportError(e, p.err);
  }
}

export async function schemaCheckCommand(args: SchemaCheckArgs): Promise<number> {
  const p = printers(args);
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
