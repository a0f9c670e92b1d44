// The stream layer's public surface: records, RAM, snapshot files.  Live
// migration and transports build on these.
export { FORMAT_MAJOR, FORMAT_MINOR, OPTIONAL_BIT, PAGE_SIZE, RecordType, RamEncoding, typeName } from './format.js';
export type { RamPagesRecord, RamZeroRecord, ReadHeader, Section, StreamCounts, StreamHeader, StreamRecord, StreamWarning } from './records.js';
export { type ByteSink, fileSink, writableSink } from './sink.js';
export { type ByteSource, fileSource, readableSource } from './source.js';
export { StreamWriter, type WriterOptions } from './stream-writer.js';
export { StreamReader, type ReaderOptions } from './stream-reader.js';
export { applyRamRecord, DEFAULT_BATCH_PAGES, type RamWriteOptions, type RamWriteStats, writeRam } from './ram.js';
export { listRamRuns, type RamMap, type RamRun, RamRunBuilder } from './ram-map.js';
export { openSnapshot, type SnapshotFile, type SnapshotWriteOptions, type SnapshotWriteResult, writeSnapshotFile } from './snapshot-file.js';
