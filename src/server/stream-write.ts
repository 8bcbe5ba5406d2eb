// Streamed responses (SSE, chunked text): the chunks written in one turn of the event loop leave
// in one system call. A worker's message carries several turns' tokens (batching.streamIntervalMs)
// and each token is written on its own; corked until the next tick they make one writev per
// client instead of one per token (~50 µs each on a small VM).
import type { ServerResponse } from 'node:http';

export function streamWrite(res: ServerResponse, chunk: string): void {
  if (!res.writableCorked) {
    res.cork();
    process.nextTick(() => res.uncork());
  }
  res.write(chunk);
}
