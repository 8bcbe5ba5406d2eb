// The image tab's init image: an upload or a finished result to start from (image-to-image), the
// strength, and a mask painted over it with a brush (inpainting: white where the brush went).
import { useEffect, useRef } from 'preact/hooks';

export interface InitImage {
  image: Blob;
  url: string;
  width: number;
  height: number;
}

/** An image blob with its decoded size, for the form. */
export async function initImageOf(image: Blob): Promise<InitImage> {
  const bitmap = await createImageBitmap(image);
  const init = { image, url: URL.createObjectURL(image), width: bitmap.width, height: bitmap.height };
  bitmap.close();
  return init;
}

export async function base64Of(blob: Blob): Promise<string> {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** The painted strokes as diffusers' mask_image: white on black, the init image's size; undefined when nothing is painted. */
export async function maskOf(canvas: HTMLCanvasElement | null): Promise<Blob | undefined> {
  if (!canvas) return undefined;
  const painted = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
  if (!painted.some((v, i) => i % 4 === 3 && v > 0)) return undefined;
  const out = document.createElement('canvas');
  [out.width, out.height] = [canvas.width, canvas.height];
  const ctx = out.getContext('2d')!;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(canvas, 0, 0);
  return new Promise((resolve) => out.toBlob((b) => resolve(b ?? undefined), 'image/png'));
}

interface Props {
  init: InitImage | undefined;
  strength: number;
  onInit: (init: InitImage | undefined) => void;
  onStrength: (strength: number) => void;
  /** The mask canvas, read when the form is sent. */
  maskRef: { current: HTMLCanvasElement | null };
}

export function InitImagePanel({ init, strength, onInit, onStrength, maskRef }: Props) {
  const painting = useRef(false);
  // A new init image: a clear mask of its size.
  useEffect(() => {
    const canvas = maskRef.current;
    if (canvas && init) [canvas.width, canvas.height] = [init.width, init.height];
  }, [init?.url]);

  const paint = (e: PointerEvent): void => {
    const canvas = maskRef.current;
    if (!canvas || !painting.current) return;
    const rect = canvas.getBoundingClientRect();
    const x = ((e.clientX - rect.left) / rect.width) * canvas.width;
    const y = ((e.clientY - rect.top) / rect.height) * canvas.height;
    const ctx = canvas.getContext('2d')!;
    ctx.fillStyle = '#fff';
    ctx.beginPath();
    ctx.arc(x, y, Math.max(2, canvas.width / 16), 0, 2 * Math.PI);
    ctx.fill();
  };
  const clear = (): void => {
    const canvas = maskRef.current;
    canvas?.getContext('2d')!.clearRect(0, 0, canvas.width, canvas.height);
  };

  return (
    <fieldset class="init" data-testid="init-image">
      <legend>Start from an image</legend>
      <input type="file" accept="image/png,image/jpeg,image/webp" data-testid="init-file" onChange={(e) => { const f = e.currentTarget.files?.[0]; if (f) void initImageOf(f).then(onInit); }} />
      {init && (
        <>
          <div class="paint" style={{ aspectRatio: `${init.width} / ${init.height}` }}>
            <img src={init.url} alt="init image" data-testid="init-preview" />
            <canvas
              ref={maskRef}
              data-testid="mask-canvas"
              aria-label="paint the region to repaint"
              onPointerDown={(e) => { painting.current = true; e.currentTarget.setPointerCapture(e.pointerId); paint(e); }}
              onPointerMove={paint}
              onPointerUp={() => { painting.current = false; }}
            />
          </div>
          <label class="field" data-field="strength">
            <span>Strength {strength.toFixed(2)}</span>
            <input type="range" name="strength" min={0.01} max={1} step={0.01} value={strength} onInput={(e) => onStrength(Number(e.currentTarget.value))} />
          </label>
          <div class="row">
            <button type="button" class="secondary" data-testid="clear-mask" onClick={clear}>Clear mask</button>
            <button type="button" class="secondary" data-testid="remove-init" onClick={() => onInit(undefined)}>Remove image</button>
          </div>
          <small class="hint">Paint over the image to repaint only there (inpainting); unpainted, the whole image is redrawn at this strength.</small>
        </>
      )}
    </fieldset>
  );
}
