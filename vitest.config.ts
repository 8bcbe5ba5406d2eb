import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    // End-to-end tests start real servers and worker processes; two cores are all we have.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      { extends: true, test: { name: 'main', include: ['src/**/*.test.ts', 'test/**/*.test.ts'], exclude: ['**/*.alone.test.ts'], sequence: { groupOrder: 0 } } },
      // Tests that measure latency (`*.alone.test.ts`) run after the others, one file at a time:
      // another file's servers on the same two cores would measure them instead.
      { extends: true, test: { name: 'alone', include: ['test/**/*.alone.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } } },
    ],
  },
});
