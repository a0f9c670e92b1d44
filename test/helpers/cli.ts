// The real command line, for tests that run `xenkvm` as a user would: in a
// child process of this Node, from bin/xenkvm.js.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { repoPath } from './paths.js';

export const BIN = repoPath('bin/xenkvm.js');

/** Runs `xenkvm ...args` to its end (at most `timeoutMs`); stdout and stderr as text. */
export function xenkvmSync(args: string[], timeoutMs = 60_000): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: timeoutMs });
}
