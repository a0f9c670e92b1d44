// Child process of run-tests.mjs: runs the uvu suites it is given.  A file
// (not `node -e`): an eval'd ES module ends early while tests wait on
// vCPU worker threads.
import { run } from 'uvu/run';

const files = JSON.parse(process.env.XENKVM_TEST_FILES ?? '[]');
await run(
  files.map((file) => ({ name: file.name, file: file.path })),
  { bail: false },
);
