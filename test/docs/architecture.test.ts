// docs/architecture.md stays true to the code: its folder table names every folder of src/, and
// no import of src/ (tests aside) crosses a line the table does not allow; the API process's
// modules never load onnxruntime-node; no file of the repository points to the reference folder beside it.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/easel-process.js';

const SRC = path.join(ROOT, 'src');
const doc = readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8');

/** Folder (relative to src/, '.' for files directly in it) → its source files, tests and contract suites aside. */
function sourceFolders(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const entry of readdirSync(SRC, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts') || /\.(test|contract)\.ts$/.test(entry.name)) continue;
    const folder = path.relative(SRC, entry.parentPath) || '.';
    out.set(folder, [...(out.get(folder) ?? []), path.join(entry.parentPath, entry.name)]);
  }
  return out;
}

/** The table's rows: `src/<folder>` → the folders it may import ('everything' for cli). */
function table(): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of doc.split('\n')) {
    const m = /^\| `src\/([^`]+)` \| .* \| ([^|]*) \|$/.exec(line);
    if (m) rows.set(m[1]!, [...m[2]!.matchAll(/`([^`]+)`/g)].map((x) => x[1]!).concat(m[2]!.includes('everything') ? ['everything'] : []));
  }
  return rows;
}

/** Relative imports of a file that survive compilation (`import type` is erased), as resolved .ts paths. */
function imports(file: string, { valuesOnly = false } = {}): string[] {
  const text = readFileSync(file, 'utf8');
  const found = [...text.matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?from '(\.{1,2}\/[^']+)'/gms)];
  return found.filter((m) => !(valuesOnly && m[1])).map((m) => path.resolve(path.dirname(file), m[2]!.replace(/\.js$/, '.ts')));
}

const folderOf = (file: string): string => path.relative(SRC, path.dirname(file)) || '.';
const within = (folder: string, parent: string): boolean => folder === parent || folder.startsWith(`${parent}/`);

describe('docs/architecture.md', () => {
  it('names every folder of src/ in its folder table', () => {
    const rows = table();
    for (const folder of sourceFolders().keys()) if (folder !== '.') expect(rows.has(folder), `src/${folder} is missing from the folder table`).toBe(true);
    for (const folder of rows.keys()) expect(sourceFolders().has(folder), `the table names src/${folder}, which has no source`).toBe(true);
  });

  it("allows every import src/ makes, and nothing imports src/cli (only it wires)", () => {
    const rows = table();
    for (const [folder, files] of sourceFolders()) {
      const allowed = rows.get(folder) ?? [];
      for (const file of files) {
        for (const target of imports(file)) {
          const to = folderOf(target);
          expect(target.startsWith(SRC), `${path.relative(ROOT, file)} imports ${path.relative(ROOT, target)}, outside src/`).toBe(true);
          if (within(to, folder) || allowed.includes('everything')) continue;
          expect(allowed.some((a) => within(to, a)), `${path.relative(ROOT, file)} imports src/${to}, which the table does not allow src/${folder}`).toBe(true);
        }
      }
    }
  });

  it("keeps onnxruntime-node out of the API process: serve's imports never reach src/runtime/onnx-runtime.ts", () => {
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const next of imports(file, { valuesOnly: true })) visit(next);
    };
    visit(path.join(SRC, 'cli', 'serve.ts'));
    expect(seen.size).toBeGreaterThan(30);
    expect([...seen].map((f) => path.relative(ROOT, f))).not.toContain('src/runtime/onnx-runtime.ts');
    // The worker process does load it: the check above can see it when it is there.
    seen.clear();
    visit(path.join(SRC, 'workers', 'worker-main.ts'));
    expect([...seen].map((f) => path.relative(ROOT, f))).toContain('src/runtime/onnx-runtime.ts');
  });

  it('is linked from the README, and no tracked file points to the reference folder beside the repository', () => {
    expect(readFileSync(path.join(ROOT, 'README.md'), 'utf8')).toContain('](docs/architecture.md)');
    const files = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);
    const needle = ['..', 'shared'].join('/');
    const pointing = files.filter((f) => !/\.(onnx|png|jpg|bin|safetensors)$/.test(f) && readFileSync(path.join(ROOT, f), 'utf8').includes(needle));
    expect(pointing).toEqual([]);
  });
});
