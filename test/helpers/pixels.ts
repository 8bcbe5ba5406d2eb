// Comparing images as a person would: decoded RGB, and the mean difference over chosen columns
// (inpainting keeps some columns and repaints others).
import sharp from 'sharp';

/** An encoded image's RGB bytes, row-major. */
export async function rgbPixels(bytes: Uint8Array): Promise<Buffer> {
  return (await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true })).data;
}

/** Mean absolute difference per channel value over the pixels whose column `where` takes. */
export function meanDiff(a: Buffer, b: Buffer, width: number, where: (x: number) => boolean = () => true): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    if (!where(Math.floor(i / 3) % width)) continue;
    sum += Math.abs(a[i]! - b[i]!);
    n++;
  }
  return sum / n;
}
