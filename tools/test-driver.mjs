// Child process of run-tests.mjs: runs the uvu suites it is given.  A file
// (not `node -e`): an eval'd ES module ends early while tests wait on
// vCPU worker threads.
import { run } from 'uvu/run';

const files = JSON.parse(process.env.XENKVM_TEST_FILES ?? '[]');
await run(
  files.map((file) => ({ name: file.name, file: file.path })),
  { bail: false },
);
// Every suite has reported: end here even if a failed test left a child
// process (a destination waiting for another source) holding this one open.
process.exit(process.exitCode ?? 0);
