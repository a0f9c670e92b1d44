// The inspector's library: load a snapshot, summarise it, decode and render
// its sections, diff two of them, and read and check schemas.  No printing:
// src/cli/{inspect,diff,schema}.ts print what these return.
export { currentSchemas, localDescriptor } from './descriptors.js';
export { configuredMemBytes, loadSnapshot, type LoadedSnapshot, type RawSection } from './snapshot.js';
export { SectionDecoder, type DecodedSection } from './decode.js';
export { InspectContext } from './context.js';
export {
  inspectSection,
  parseSelector,
  renderSummary,
  summarize,
  type InspectSummary,
  type MemorySummary,
  type SectionReport,
} from './inspect.js';
export { colorFor, jsonText, PLAIN, style, type Style } from './text.js';
export { diffJson, diffSnapshots, hexdumpBoth, parseHexdumpArg, renderDiff, type SnapshotDiff } from './diff.js';
export { diffMemory, DIFF_WINDOW_PAGES, type MemoryDiff, type PageRange } from './mem-diff.js';
export { IgnoreSet, VOLATILE_FIELDS, type FieldChange, type SectionsDiff } from './state-diff.js';
export {
  checkSchemaSets,
  currentSchemaSet,
  loadSchemaSet,
  renderSchemaCheck,
  renderSchemaSet,
  schemaSetJson,
  type SchemaCheck,
  type SchemaSet,
} from './schema-io.js';
