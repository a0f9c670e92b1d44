// Declarative versioned state descriptors: the DSL, codec, schema and diff.
export * from './fields.js';
export { defineState } from './define.js';
export type {
  AnyDescriptor,
  SubDescriptors,
  SectionState,
  StateDefinition,
  StateDescriptor,
  StateOf,
  Subsection,
  SubsectionMap,
} from './define.js';
export { DEFAULT_LIMITS, MSGPACK_OPTIONS, decodeState, encodeState } from './codec.js';
export type { DecodeLimits, DecodeOptions, EncodeOptions, Envelope, SubEnvelope } from './codec.js';
export type { StateRecord } from './values.js';
export { decodeWithSchema, descriptorFromSchema, schemaOf, toJson } from './schema.js';
export type { FieldSchema, JsonValue, NamedFieldSchema, SectionSchema } from './schema.js';
export { checkSchemas } from './check.js';
export type { SchemaBreak } from './check.js';
export { diffStates, globToRegExp } from './diff.js';
export type { DiffOptions, StateChange } from './diff.js';
