// The image tab: a text-to-image model's form (its fields, defaults and limits from the API),
// a card per job (queue position, progress, live previews, cancel), and the gallery.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, followJob, getBlob, getJson, postJson, remove, type Job, type Model, type TextToImageParameters } from './api.js';
import type { ComponentChildren } from 'preact';
import { Field, ModelPicker } from './fields.js';
import { Gallery } from './gallery.js';
import { loadGallery, saveGallery, type GalleryItem } from './gallery-store.js';
import { base64Of, initImageOf, InitImagePanel, maskOf, type InitImage } from './init-image.js';

/** The form's fields, as the request sends them. */
interface Form {
  prompt: string;
  negative_prompt: string;
  num_inference_steps: number;
  guidance_scale: number;
  scheduler: string;
  width: number;
  height: number;
  seed: string;
  randomSeed: boolean;
  num_images: number;
}

const FIELDS: ReadonlySet<string> = new Set(['prompt', 'negative_prompt', 'num_inference_steps', 'guidance_scale', 'scheduler', 'width', 'height', 'seed', 'num_images', 'strength']);

interface Card {
  id: string;
  model: string;
  job: Job;
  preview?: string | undefined;
  previews: number;
  images: string[];
}

function formFor(p: TextToImageParameters, keep?: Form): Form {
  const d = p.defaults;
  return {
    prompt: keep?.prompt ?? '',
    negative_prompt: keep?.negative_prompt ?? '',
    num_inference_steps: d.num_inference_steps,
    guidance_scale: d.guidance_scale,
    scheduler: d.scheduler,
    width: d.width,
    height: d.height,
    seed: keep?.seed ?? '',
    randomSeed: keep?.randomSeed ?? true,
    num_images: 1,
  };
}

/** The sizes a model allows: multiples of its size multiple, up to its limit. */
function sizes(multiple: number, max: number): number[] {
  const out: number[] = [];
  for (let s = multiple; s <= max; s += multiple) out.push(s);
  return out;
}

/** About ten previews per image, whatever the step count. */
const previewEvery = (steps: number): number => Math.max(1, Math.round(steps / 10));

export function ImageTab({ models }: { models: Model[] }) {
  const [modelId, setModelId] = useState('');
  const model = models.find((m) => m.id === modelId) ?? models[0];
  const params = model?.easel?.parameters as TextToImageParameters | undefined;
  const [form, setForm] = useState<Form | undefined>();
  const [errors, setErrors] = useState<Map<string, string>>(new Map());
  const [formError, setFormError] = useState('');
  const [cards, setCards] = useState<Card[]>([]);
  const [gallery, setGallery] = useState<GalleryItem[]>([]);
  const following = useRef(new Map<string, AbortController>());
  const [init, setInit] = useState<InitImage | undefined>();
  const [strength, setStrength] = useState(0.8);
  const maskRef = useRef<HTMLCanvasElement | null>(null);

  useEffect(() => {
    void loadGallery().then(setGallery);
    const all = following.current;
    return () => all.forEach((c) => c.abort());
  }, []);
  // A new model: its own defaults, the prompt kept.
  useEffect(() => {
    if (params) setForm((f) => formFor(params, f));
  }, [model?.id]);

  if (!model || !params || !form) return <p class="empty">No text-to-image model is served.</p>;

  const set = <K extends keyof Form>(field: K, value: Form[K]): void => {
    setForm({ ...form, [field]: value });
    if (errors.has(field)) setErrors(new Map([...errors].filter(([f]) => f !== field)));
  };
  const update = (id: string, change: (c: Card) => Partial<Card>): void => setCards((cs) => cs.map((c) => (c.id === id ? { ...c, ...change(c) } : c)));

  const finished = async (job: Job): Promise<void> => {
    const blobs = await Promise.all(job.outputs.map((o) => getBlob(o.url)));
    update(job.id, () => ({ images: blobs.map((b) => URL.createObjectURL(b)) }));
    const seed = Number(job.input.seed);
    const items = blobs.map((image, k): GalleryItem => ({ key: `${job.id}/${k}`, model: job.model, params: { ...job.input, seed: seed + k, num_images: 1 }, image, createdAt: Date.now() }));
    setGallery((g) => {
      const next = [...items, ...g];
      void saveGallery(next);
      return next;
    });
  };

  const follow = (job: Job): void => {
    const controller = new AbortController();
    following.current.set(job.id, controller);
    // While it waits: its place in the queue and the estimate, which the events do not carry.
    const poll = setInterval(() => {
      void getJson<Job>(`/v1/jobs/${job.id}`).then((j) => update(job.id, (c) => (c.job.status === 'queued' ? { job: { ...c.job, queue_position: j.queue_position, estimated_seconds: j.estimated_seconds } } : {})), () => undefined);
    }, 1000);
    followJob(
      job.id,
      (e) => {
        if (e.type === 'status') {
          update(job.id, (c) => ({ job: { ...e.data, queue_position: e.data.status === 'queued' ? c.job.queue_position : null } }));
          if (e.data.status === 'succeeded') void finished(e.data);
        } else if (e.type === 'progress') {
          update(job.id, (c) => ({ job: { ...c.job, status: 'running', progress: e.data } }));
        } else if (e.type === 'preview') {
          update(job.id, (c) => ({ preview: `data:${e.data.content_type};base64,${e.data.data}`, previews: c.previews + 1 }));
        }
      },
      controller.signal,
    )
      .catch((err: Error) => update(job.id, (c) => ({ job: { ...c.job, status: 'failed', error: { code: 'EASEL_STREAM_FAILED', message: err.message } } })))
      .finally(() => {
        clearInterval(poll);
        following.current.delete(job.id);
      });
  };

  const submit = async (e?: Event): Promise<void> => {
    e?.preventDefault();
    setFormError('');
    const { randomSeed, seed, ...fields } = form;
    const input: Record<string, unknown> = { ...fields, ...(randomSeed || seed === '' ? {} : { seed: Number(seed) }), preview_every: previewEvery(form.num_inference_steps) };
    if (init && params.image_to_image) {
      // The image keeps its own size (as diffusers): width and height come from it.
      const mask = await maskOf(maskRef.current);
      Object.assign(input, { image: await base64Of(init.image), strength, width: undefined, height: undefined, ...(mask ? { mask_image: await base64Of(mask) } : {}) });
    }
    try {
      const job = await postJson<Job>('/v1/jobs', { model: model.id, input });
      setErrors(new Map());
      setCards((cs) => [{ id: job.id, model: model.id, job, previews: 0, images: [] }, ...cs]);
      follow(job);
    } catch (err) {
      const field = err instanceof ApiError ? err.field?.replace(/^input\./, '') : undefined;
      if (field && FIELDS.has(field)) setErrors(new Map([[field, (err as ApiError).message]]));
      else setFormError(err instanceof ApiError ? `${err.message} (${err.code})` : String(err));
    }
  };

  const reuse = (item: GalleryItem): void => {
    setModelId(item.model);
    const p = item.params;
    setForm({
      prompt: String(p.prompt ?? ''),
      negative_prompt: String(p.negative_prompt ?? ''),
      num_inference_steps: Number(p.num_inference_steps),
      guidance_scale: Number(p.guidance_scale),
      scheduler: String(p.scheduler),
      width: Number(p.width),
      height: Number(p.height),
      seed: String(p.seed),
      randomSeed: false,
      num_images: 1,
    });
    window.scrollTo({ top: 0 });
  };

  const field = (name: keyof Form, label: string, control: ComponentChildren) => (
    <Field name={name} label={label} error={errors.get(name)}>
      {control}
    </Field>
  );
  const number = (name: 'num_inference_steps' | 'guidance_scale' | 'width' | 'height' | 'num_images', min: number, max: number, step: number) => (
    <input type="number" name={name} min={min} max={max} step={step} value={form[name]} onInput={(e) => set(name, Number(e.currentTarget.value))} list={name === 'width' || name === 'height' ? 'sizes' : undefined} />
  );
  const limits = params.limits;
  return (
    <div class="image-tab">
      {/* The API checks the fields and says what is wrong, beside the field it names. */}
      <form class="panel" noValidate onSubmit={(e) => void submit(e)} data-testid="image-form">
        {field('prompt', 'Prompt', <textarea name="prompt" rows={3} value={form.prompt} onInput={(e) => set('prompt', e.currentTarget.value)} onKeyDown={(e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) void submit(); }} placeholder="a red circle on a blue background" />)}
        {field('negative_prompt', 'Negative prompt', <input name="negative_prompt" value={form.negative_prompt} onInput={(e) => set('negative_prompt', e.currentTarget.value)} />)}
        <div class="row">
          <ModelPicker models={models} value={model.id} onChange={setModelId} />
          {field('scheduler', 'Scheduler', <select name="scheduler" value={form.scheduler} onChange={(e) => set('scheduler', e.currentTarget.value)}>{params.schedulers.map((s) => <option value={s}>{s}</option>)}</select>)}
        </div>
        <div class="row">
          {field('num_inference_steps', 'Steps', number('num_inference_steps', 1, limits.max_inference_steps, 1))}
          {field('guidance_scale', 'Guidance', number('guidance_scale', 0, limits.max_guidance_scale, 0.5))}
          {field('num_images', 'Images', number('num_images', 1, limits.max_num_images, 1))}
        </div>
        <div class="row">
          {field('width', 'Width', number('width', params.size_multiple, limits.max_width, params.size_multiple))}
          {field('height', 'Height', number('height', params.size_multiple, limits.max_height, params.size_multiple))}
          <datalist id="sizes">{sizes(params.size_multiple, Math.max(limits.max_width, limits.max_height)).map((s) => <option value={s} />)}</datalist>
        </div>
        <div class="row seed">
          {field('seed', 'Seed', <input name="seed" type="number" min={0} value={form.seed} disabled={form.randomSeed} onInput={(e) => set('seed', e.currentTarget.value)} placeholder="random" />)}
          <label class="check">
            <input type="checkbox" name="randomSeed" checked={form.randomSeed} onChange={(e) => set('randomSeed', e.currentTarget.checked)} />
            random
          </label>
          <button type="button" class="secondary" data-testid="reuse-seed" disabled={cards.length === 0} onClick={() => { const s = cards[0]?.job.input.seed; if (s !== undefined) setForm({ ...form, seed: String(s), randomSeed: false }); }}>
            reuse last
          </button>
        </div>
        {params.image_to_image && <InitImagePanel init={init} strength={strength} onInit={setInit} onStrength={setStrength} maskRef={maskRef} />}
        {formError && <p class="error" role="alert" data-testid="form-error">{formError}</p>}
        <button type="submit" data-testid="generate">Generate <kbd>Ctrl+Enter</kbd></button>
      </form>
      <section class="queue" aria-label="Jobs">
        <h2>Queue</h2>
        {cards.length === 0 && <p class="empty">Jobs appear here.</p>}
        {cards.map((c) => <JobCard key={c.id} card={c} onCancel={() => void remove(`/v1/jobs/${c.id}`).catch(() => undefined)} onUse={params.image_to_image ? (src) => void fetch(src).then((r) => r.blob()).then(initImageOf).then(setInit) : undefined} />)}
      </section>
      <Gallery items={gallery} onReuse={reuse} onDelete={(key) => setGallery((g) => { const next = g.filter((i) => i.key !== key); void saveGallery(next); return next; })} />
    </div>
  );
}

function JobCard({ card, onCancel, onUse }: { card: Card; onCancel: () => void; onUse?: ((src: string) => void) | undefined }) {
  const { job } = card;
  const width = Number(job.input.width);
  const height = Number(job.input.height);
  const p = job.progress;
  const live = job.status === 'queued' || job.status === 'running';
  const status =
    job.status === 'queued'
      ? `queued${job.queue_position !== null ? ` · position ${job.queue_position + 1}` : ''}${job.estimated_seconds !== null ? ` · ~${Math.ceil(job.estimated_seconds)} s` : ''}`
      : job.status === 'running'
        ? `running${p ? ` · step ${p.step} of ${p.total}` : ''}`
        : job.status === 'failed'
          ? `failed: ${job.error?.message ?? ''}`
          : job.status;
  return (
    <article class={`card ${job.status}`} data-testid="job-card" data-job={job.id} data-status={job.status} data-previews={card.previews}>
      {/* Sized from the request before anything arrives: previews never move the layout. */}
      <div class="frame" style={{ aspectRatio: `${width} / ${height}` }}>
        {card.images.length > 0 ? (
          card.images.map((src, k) => <img src={src} alt={`image ${k + 1} of job ${job.id}`} data-testid="final-image" />)
        ) : card.preview ? (
          <img src={card.preview} alt="preview" data-testid="preview" />
        ) : (
          <div class="placeholder" />
        )}
      </div>
      <progress max={p?.total ?? 1} value={job.status === 'succeeded' ? (p?.total ?? 1) : (p?.step ?? 0)} />
      <div class="meta">
        <span data-testid="job-status">{status}</span>
        {live && <button type="button" class="secondary" data-testid="cancel" onClick={onCancel}>Cancel</button>}
        {onUse && card.images[0] && <button type="button" class="secondary" data-testid="use-result" onClick={() => onUse(card.images[0]!)}>Use as init</button>}
      </div>
      <p class="prompt">{String(job.input.prompt ?? '')} · seed {String(job.input.seed)}</p>
    </article>
  );
}
