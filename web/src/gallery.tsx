// The gallery: finished images with their parameters; reuse them, download a PNG, or compare two.
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { GalleryItem } from './gallery-store.js';

export function Gallery({ items, onReuse, onDelete }: { items: GalleryItem[]; onReuse: (item: GalleryItem) => void; onDelete: (key: string) => void }) {
  const [compare, setCompare] = useState<string[]>([]);
  // One object URL per stored image, revoked when the list changes.
  const urls = useMemo(() => new Map(items.map((i) => [i.key, URL.createObjectURL(i.image)])), [items]);
  useEffect(() => () => urls.forEach((u) => URL.revokeObjectURL(u)), [urls]);
  const toggle = (key: string): void => setCompare((c) => (c.includes(key) ? c.filter((k) => k !== key) : [...c, key].slice(-2)));
  const pair = compare.map((k) => items.find((i) => i.key === k)).filter((i): i is GalleryItem => i !== undefined);
  return (
    <section class="gallery" aria-label="Gallery">
      <h2>Gallery</h2>
      {items.length === 0 && <p class="empty">Finished images are kept here, in this browser.</p>}
      {pair.length === 2 && (
        <div class="compare" data-testid="compare">
          {pair.map((i) => (
            <figure>
              <img src={urls.get(i.key)} alt={`seed ${String(i.params.seed)}`} />
              <figcaption>seed {String(i.params.seed)}</figcaption>
            </figure>
          ))}
        </div>
      )}
      <div class="grid">
        {items.map((i) => (
          <figure class="item" data-testid="gallery-item" data-seed={String(i.params.seed)}>
            <img src={urls.get(i.key)} alt={String(i.params.prompt)} style={{ aspectRatio: `${Number(i.params.width)} / ${Number(i.params.height)}` }} />
            <figcaption>
              <span class="prompt">{String(i.params.prompt)}</span>
              <span class="params">
                {i.model} · {String(i.params.width)}×{String(i.params.height)} · {String(i.params.num_inference_steps)} steps · {String(i.params.scheduler)} · cfg {String(i.params.guidance_scale)} · seed {String(i.params.seed)}
              </span>
              <span class="actions">
                <button type="button" class="secondary" data-testid="reuse" onClick={() => onReuse(i)}>Reuse</button>
                <a class="button secondary" href={urls.get(i.key)} download={`easel-${i.model}-${String(i.params.seed)}.png`}>PNG</a>
                <label class="check">
                  <input type="checkbox" checked={compare.includes(i.key)} onChange={() => toggle(i.key)} data-testid="compare-toggle" />
                  compare
                </label>
                <button type="button" class="secondary" aria-label="delete" onClick={() => onDelete(i.key)}>×</button>
              </span>
            </figcaption>
          </figure>
        ))}
      </div>
    </section>
  );
}
