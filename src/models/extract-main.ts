// The archive extractor's own process (archive.ts forks it): extracts one archive, answers once
// over IPC, and exits. Killed by its parent at the time limit.
import { isEaselError } from '../errors/easel-error.js';
import { extractArchiveHere, type ExtractLimits } from './archive.js';

process.once('message', (m: { file: string; target: string; limits: ExtractLimits }) => {
  extractArchiveHere(m.file, m.target, m.limits).then(
    () => process.send!({}, () => process.exit(0)),
    (err: unknown) => process.send!({ error: isEaselError(err) ? err.message : `the archive could not be extracted: ${(err as Error).message}` }, () => process.exit(0)),
  );
});
