// The stream layer's public surface: records, RAM, snapshot files.  Live
// migration and transports build on these.
export {
  FORMAT_MAJOR,
  FORMAT_MINOR,
  OPTIONAL_BIT,
  PAGE_SIZE,
  RecordType,
  RamEncoding,
  typeName,
} from './stream/format.js';
export type {
  RamPagesRecord,
  RamZeroRecord,
  ReadHeader,
  Section,
  StreamCounts,
  StreamHeader,
  StreamRecord,
  StreamWarning,
} from './stream/records.js';
export { type ByteSink, fileSink, writableSink } from './stream/byte-sink.js';
export { type ByteSource, fileSource, readableSource } from './stream/byte-source.js';
export { StreamWriter, type WriterOptions } from './stream/writer.js';
export { StreamReader, type ReaderOptions } from './stream/reader.js';
export {
  applyRamRecord,
  DEFAULT_BATCH_PAGES,
  type RamWriteOptions,
  type RamWriteStats,
  writeRam,
} from './ram/write.js';
export {
  ABSENT,
  listRamRuns,
  PageIndex,
  PageIndexBuilder,
  type RamMap,
  type RamRecord,
  type RamRun,
  type RamStats,
} from './ram/page-index.js';
export { PageReader } from './ram/page-reader.js';
export {
  openSnapshot,
  type SnapshotFile,
  type SnapshotWriteOptions,
  type SnapshotWriteResult,
  writeSnapshotFile,
} from './stream/file.js';
