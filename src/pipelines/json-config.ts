// Reading a model's JSON config files (config.json, scheduler_config.json, generation_config.json):
// one reader for every pipeline's layout.
import { readFileSync } from 'node:fs';

/** A JSON object file, or {} when it is missing or not an object. */
export function readJsonConfig(file: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
