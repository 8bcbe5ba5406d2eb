// The gallery, kept in this browser (IndexedDB, through idb-keyval): each finished image with
// the parameters that made it, newest first.
import { get, set } from 'idb-keyval';

export interface GalleryItem {
  key: string;
  model: string;
  /** The request as the server admitted it (seed included): reusing it makes the same image. */
  params: Record<string, unknown>;
  image: Blob;
  createdAt: number;
}

const KEY = 'easel.gallery';
const MAX_ITEMS = 200;

export async function loadGallery(): Promise<GalleryItem[]> {
  return ((await get(KEY)) as GalleryItem[] | undefined) ?? [];
}

export async function saveGallery(items: GalleryItem[]): Promise<void> {
  await set(KEY, items.slice(0, MAX_ITEMS));
}
