// A scratch directory per test (or per suite), removed by `cleanup`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory named xenkvm-`tag`-XXXXXX under the system's temporary directory. */
export function tempDir(tag = 'test'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `xenkvm-${tag}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
