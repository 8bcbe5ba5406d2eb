// The bytes an ONNX graph takes on disk: its file and its external data (`model.onnx.data` or
// `model.onnx_data`, as the exporters name it). Its own module, so that the server can size a
// model's graphs without loading ONNX Runtime.
import { statSync } from 'node:fs';

/** A graph's file and its external data, in bytes; a file that is not there (or a link that leads nowhere) counts nothing. */
export function graphBytes(file: string): number {
  return [file, `${file}.data`, `${file}_data`].reduce((n, f) => n + (statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0);
}
