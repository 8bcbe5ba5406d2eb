// The text-to-image request: its fields, defaults (easel.yaml `defaults:` over built-ins) and
// limits (easel.yaml `limits:`), each violation a 400 naming the field and what is allowed.
import { randomInt } from 'node:crypto';
import { imageSize } from 'image-size';
import { EaselError, invalidField } from '../errors/easel-error.js';
import type { ModelSpec } from '../models/model-spec.js';
import { readDiffusionLayout } from '../pipelines/diffusion/diffusion-layout.js';
import { SCHEDULER_DEFAULTS } from '../pipelines/diffusion/schedulers/schedule.js';
import { SCHEDULER_NAMES, parseSchedulerConfig, schedulerName, type SchedulerConfig, type SchedulerName } from '../pipelines/diffusion/schedulers/index.js';

export const OUTPUT_FORMATS = ['png', 'jpeg', 'webp', 'tensor'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface TextToImageParameters {
  prompt: string;
  negative_prompt: string;
  num_inference_steps: number;
  guidance_scale: number;
  width: number;
  height: number;
  seed: number;
  scheduler: SchedulerName;
  num_images: number;
  output_format: OutputFormat;
  /** Send a preview image every N steps (0: none). */
  preview_every: number;
  scheduler_config?: Partial<SchedulerConfig>;
  /** Image-to-image: the init image's bytes (PNG, JPEG or WebP), resized to width × height in the worker. */
  image?: Uint8Array;
  /** Inpainting: the mask's bytes, the image's size; white repaints, black keeps. */
  mask_image?: Uint8Array;
  /** The mask is mask_image's alpha channel: transparent repaints (OpenAI's images/edits). */
  mask_alpha?: boolean;
  /** With an image: how much of the schedule runs (0 keeps the image, 1 repaints it all). */
  strength?: number;
  /** diffusers' guidance_rescale, 0 to 1 (0: off). */
  guidance_rescale: number;
  /** SDXL: the second text encoder's prompts (default: prompt and negative_prompt). */
  prompt_2?: string;
  negative_prompt_2?: string;
  /** SDXL's micro-conditioning, each [height, width] (crops: [top, left]). */
  original_size?: [number, number];
  crops_coords_top_left?: [number, number];
  target_size?: [number, number];
  negative_original_size?: [number, number];
  negative_crops_coords_top_left?: [number, number];
  negative_target_size?: [number, number];
}

/** SDXL's micro-conditioning fields: [height, width] pairs ([top, left] for crops). */
const MICRO_CONDITIONING = [
  'original_size',
  'crops_coords_top_left',
  'target_size',
  'negative_original_size',
  'negative_crops_coords_top_left',
  'negative_target_size',
] as const;

/** The fields only a layout with a second text encoder (SDXL) takes. */
const SDXL_FIELDS = ['prompt_2', 'negative_prompt_2', ...MICRO_CONDITIONING] as const;

export interface TextToImageLimits {
  max_inference_steps: number;
  max_width: number;
  max_height: number;
  max_num_images: number;
  max_guidance_scale: number;
  max_prompt_length: number;
  /** An init image or mask as sent, at most. */
  max_image_bytes: number;
  /** An init image or mask's width × height as sent, at most (decoded only below it). */
  max_image_pixels: number;
}

/** What an SD 1.5 export would be served with when its easel.yaml says nothing. */
export const BUILT_IN_LIMITS: TextToImageLimits = Object.freeze({
  max_inference_steps: 150,
  max_width: 1024,
  max_height: 1024,
  max_num_images: 4,
  max_guidance_scale: 30,
  max_prompt_length: 2000,
  max_image_bytes: 8 * 1024 * 1024,
  max_image_pixels: 4096 * 4096,
});

/** The image formats an init image or mask may be in (sharp decodes them in the worker). */
const IMAGE_TYPES = ['png', 'jpg', 'webp'] as const;

const FIELDS = [
  'prompt',
  'data',
  'negative_prompt',
  'num_inference_steps',
  'guidance_scale',
  'width',
  'height',
  'seed',
  'scheduler',
  'num_images',
  'output_format',
  'preview_every',
  'scheduler_config',
  'image',
  'mask_image',
  'mask_alpha',
  'strength',
  'guidance_rescale',
  ...SDXL_FIELDS,
] as const;

export interface RequestRules {
  /** Model-level defaults: built-ins merged with easel.yaml `defaults:`. */
  readonly defaults: Readonly<Record<string, unknown>>;
  readonly limits: TextToImageLimits;
  /** Width and height are multiples of this: the VAE's factor times the UNet's down-sampling. */
  readonly sizeMultiple: number;
  /** The model's scheduler_config.json: a request's scheduler_config overrides must stay consistent with it. */
  readonly schedulerConfig: Partial<SchedulerConfig>;
  /** The layout has a VAE encoder: image and mask_image are taken. */
  readonly imageToImage: boolean;
  /** The layout has a second text encoder (SDXL): prompt_2 and the micro-conditioning sizes are taken. */
  readonly dualTextEncoder: boolean;
  /** An inpainting UNet (9 input channels): every request sends image and mask_image. */
  readonly inpaintingUnet?: boolean;
}

/**
 * The rules a model's requests are checked against, from its easel.yaml and its layout's JSON
 * configs (no session is loaded): the API process admits with them, the worker re-checks.
 * An invalid `limits:` throws EASEL_MODEL_INVALID, so the model is refused at registration.
 */
export function textToImageRules(spec: ModelSpec, dir: string): RequestRules {
  const layout = readDiffusionLayout(dir);
  const rules: RequestRules = {
    defaults: {
      num_inference_steps: 50,
      guidance_scale: 7.5,
      width: layout.defaultSize,
      height: layout.defaultSize,
      scheduler: layout.defaultScheduler,
      ...spec.defaults,
    },
    limits: resolveLimits(spec.limits),
    sizeMultiple: layout.vaeScaleFactor * layout.unetFactor,
    schedulerConfig: layout.schedulerConfig,
    imageToImage: layout.vaeEncoder,
    dualTextEncoder: layout.dualTextEncoder,
    inpaintingUnet: layout.inpaintingUnet,
  };
  try {
    // The easel.yaml defaults must make a valid request on their own (an inpainting model's, with an image and mask).
    parseTextToImage({ prompt: '' }, { ...rules, inpaintingUnet: false });
  } catch (err) {
    const e = err as EaselError;
    throw new EaselError('EASEL_MODEL_INVALID', `model ${spec.name}: easel.yaml defaults.${e.field ?? ''}: ${e.message}`, { field: `defaults.${e.field ?? ''}` });
  }
  return rules;
}

/** The public form of the rules: what a form needs to offer only valid requests. */
export function textToImageParameters(rules: RequestRules): Record<string, unknown> {
  return { defaults: rules.defaults, limits: rules.limits, size_multiple: rules.sizeMultiple, schedulers: SCHEDULER_NAMES, output_formats: OUTPUT_FORMATS, image_to_image: rules.imageToImage, sdxl: rules.dualTextEncoder, inpainting: rules.inpaintingUnet === true };
}

/** A number as sent: JSON's, or a multipart form field's decimal text ("20", "0.75"). */
function formNumber(value: unknown): unknown {
  return typeof value === 'string' && /^-?\d{1,16}(\.\d{1,16})?$/.test(value) ? Number(value) : value;
}

function integer(input: Record<string, unknown>, field: string, fallback: unknown, min: number, max: number): number {
  const value = formNumber(input[field] ?? fallback);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidField(field, `${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function text(value: unknown, field: string, maxLength: number): string {
  const s = value instanceof Uint8Array ? new TextDecoder().decode(value) : value;
  if (typeof s !== 'string') throw invalidField(field, `${field} must be a string, got ${typeof s}`);
  if (s.length > maxLength) throw invalidField(field, `${field} must be at most ${maxLength} characters, got ${s.length}`);
  return s;
}

/** Validates a request's fields against the model's defaults and limits. */
export function parseTextToImage(input: Readonly<Record<string, unknown>>, rules: RequestRules): TextToImageParameters {
  const unknown = Object.keys(input).filter((k) => !(FIELDS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw invalidField(unknown[0]!, `unknown field ${unknown.join(', ')}; text-to-image takes ${FIELDS.join(', ')}`);
  }
  const { defaults, limits } = rules;
  const raw = { ...input };
  const promptValue = raw.prompt ?? raw.data;
  if (promptValue === undefined) {
    throw new EaselError('EASEL_BAD_REQUEST', 'prompt is required: send {"prompt": "..."} (or TorchServe\'s {"data": "..."})', { field: 'prompt' });
  }
  const promptField = raw.prompt !== undefined ? 'prompt' : 'data';
  const prompt = text(promptValue, promptField, limits.max_prompt_length);
  const negative = text(raw.negative_prompt ?? defaults.negative_prompt ?? '', 'negative_prompt', limits.max_prompt_length);

  const sdxlField = SDXL_FIELDS.find((k) => raw[k] !== undefined);
  if (sdxlField && !rules.dualTextEncoder) throw invalidField(sdxlField, `${sdxlField} needs a model with a second text encoder (an SDXL layout, text_encoder_2); this one has one`);
  const prompt2 = raw.prompt_2 === undefined ? undefined : text(raw.prompt_2, 'prompt_2', limits.max_prompt_length);
  const negative2 = raw.negative_prompt_2 === undefined ? undefined : text(raw.negative_prompt_2, 'negative_prompt_2', limits.max_prompt_length);

  const steps = integer(raw, 'num_inference_steps', defaults.num_inference_steps, 1, limits.max_inference_steps);
  const guidance = formNumber(raw.guidance_scale ?? defaults.guidance_scale);
  if (typeof guidance !== 'number' || !Number.isFinite(guidance) || guidance < 0 || guidance > limits.max_guidance_scale) {
    throw invalidField('guidance_scale', `guidance_scale must be a number from 0 to ${limits.max_guidance_scale}, got ${JSON.stringify(guidance)}`);
  }
  const rescale = formNumber(raw.guidance_rescale ?? defaults.guidance_rescale ?? 0);
  if (typeof rescale !== 'number' || !Number.isFinite(rescale) || rescale < 0 || rescale > 1) {
    throw invalidField('guidance_rescale', `guidance_rescale must be a number from 0 (off) to 1, got ${JSON.stringify(rescale)}`);
  }
  const f = rules.sizeMultiple;
  if (raw.image !== undefined && !rules.imageToImage) throw invalidField('image', 'this model has no VAE encoder (vae_encoder/model.onnx): it makes images from text only');
  const image = raw.image === undefined ? undefined : imageInput(raw.image, 'image', limits);
  const mask = raw.mask_image === undefined ? undefined : imageInput(raw.mask_image, 'mask_image', limits);
  if (mask && !image) throw invalidField('mask_image', 'mask_image needs the image to inpaint: send image too');
  if (rules.inpaintingUnet && !mask) {
    throw invalidField(image ? 'mask_image' : 'image', 'this model\'s UNet is an inpainting UNet (9 input channels: latents, mask, masked image): send image and mask_image');
  }
  const maskAlpha = raw.mask_alpha === 'true' ? true : raw.mask_alpha === 'false' ? false : raw.mask_alpha;
  if (maskAlpha !== undefined && typeof maskAlpha !== 'boolean') throw invalidField('mask_alpha', `mask_alpha must be true or false, got ${JSON.stringify(maskAlpha)}`);
  if (maskAlpha && !mask) throw invalidField('mask_alpha', 'mask_alpha says how to read mask_image: send mask_image too');
  if (mask && image && (mask.width !== image.width || mask.height !== image.height)) {
    throw invalidField('mask_image', `mask_image must be the image's size, ${image.width}×${image.height}; got ${mask.width}×${mask.height}`);
  }
  const size = (field: 'width' | 'height', max: number): number => {
    // Image-to-image keeps the image's size (rounded down to the size multiple) unless asked otherwise, as diffusers does.
    const fromImage = image && Math.max(f, Math.floor(image[field] / f) * f);
    const value = formNumber(raw[field] ?? fromImage ?? defaults[field]);
    if (typeof value !== 'number' || !Number.isInteger(value) || value < f || value > max || value % f !== 0) {
      throw invalidField(field, `${field} must be a multiple of ${f} (this model's latent factor) from ${f} to ${max}: ${allowedSizes(f, max)}; got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const width = size('width', limits.max_width);
  const height = size('height', limits.max_height);
  const seed = raw.seed === undefined || raw.seed === null ? randomInt(2 ** 31) : integer(raw, 'seed', undefined, 0, Number.MAX_SAFE_INTEGER);

  const schedulerValue = raw.scheduler ?? defaults.scheduler;
  const scheduler = typeof schedulerValue === 'string' ? schedulerName(schedulerValue) : undefined;
  if (!scheduler) throw invalidField('scheduler', `scheduler must be one of ${SCHEDULER_NAMES.join(', ')} (or a diffusers class name such as EulerDiscreteScheduler), got ${JSON.stringify(schedulerValue)}`);

  const numImages = integer(raw, 'num_images', defaults.num_images ?? 1, 1, limits.max_num_images);
  const formatValue = raw.output_format ?? defaults.output_format ?? 'png';
  const format = formatValue === 'jpg' ? 'jpeg' : formatValue;
  if (typeof format !== 'string' || !(OUTPUT_FORMATS as readonly string[]).includes(format)) {
    throw invalidField('output_format', `output_format must be one of ${OUTPUT_FORMATS.join(', ')}, got ${JSON.stringify(formatValue)}`);
  }
  const previewEvery = integer(raw, 'preview_every', defaults.preview_every ?? 0, 0, limits.max_inference_steps);

  let strength: number | undefined;
  if (image) {
    const value = formNumber(raw.strength ?? defaults.strength ?? (mask ? 1 : 0.8));
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) {
      throw invalidField('strength', `strength must be a number above 0 and at most 1 (how much of the image to repaint), got ${JSON.stringify(value)}`);
    }
    if (Math.floor(steps * value) < 1) {
      throw invalidField('strength', `strength × num_inference_steps must be at least 1 (one denoising step): ${value} × ${steps} runs none; raise either`);
    }
    strength = value;
  } else if (raw.strength !== undefined) {
    throw invalidField('strength', 'strength applies to image-to-image: send image (the picture to start from) with it');
  }

  const params: TextToImageParameters = {
    prompt,
    negative_prompt: negative,
    num_inference_steps: steps,
    guidance_scale: guidance,
    width,
    height,
    seed,
    scheduler,
    num_images: numImages,
    output_format: format as OutputFormat,
    preview_every: previewEvery,
    guidance_rescale: rescale,
    ...(prompt2 === undefined ? {} : { prompt_2: prompt2 }),
    ...(negative2 === undefined ? {} : { negative_prompt_2: negative2 }),
    ...(image ? { image: image.bytes, strength } : {}),
    ...(mask ? { mask_image: mask.bytes, ...(maskAlpha ? { mask_alpha: true } : {}) } : {}),
  };
  for (const field of MICRO_CONDITIONING) {
    const value = raw[field] ?? defaults[field];
    if (value !== undefined) params[field] = sizePair(value, field);
  }
  if (raw.scheduler_config !== undefined) {
    if (!raw.scheduler_config || typeof raw.scheduler_config !== 'object' || Array.isArray(raw.scheduler_config)) {
      throw invalidField('scheduler_config', 'scheduler_config must be an object of scheduler_config.json keys, e.g. {"timestep_spacing": "trailing"}');
    }
    let config: Partial<SchedulerConfig>;
    try {
      config = parseSchedulerConfig(raw.scheduler_config, true);
    } catch (err) {
      throw invalidField('scheduler_config', (err as Error).message);
    }
    checkSchedulerConfig({ ...SCHEDULER_DEFAULTS, ...rules.schedulerConfig, ...config }, steps);
    params.scheduler_config = config;
  }
  return params;
}

/** SDXL's micro-conditioning values are pixel counts the UNet embeds like timesteps: whole, and within a sane range. */
const MAX_CONDITIONING_SIZE = 16384;

function sizePair(value: unknown, field: string): [number, number] {
  const ok = Array.isArray(value) && value.length === 2 && value.every((v) => Number.isInteger(v) && v >= 0 && v <= MAX_CONDITIONING_SIZE);
  if (!ok) {
    const what = field.includes('crops') ? '[top, left]' : '[height, width]';
    throw invalidField(field, `${field} must be ${what}: two integers from 0 to ${MAX_CONDITIONING_SIZE}, got ${JSON.stringify(value)}`);
  }
  return [value[0] as number, value[1] as number];
}

/**
 * An init image or mask as sent: a multipart file's bytes, or base64 in JSON (a data: URL too).
 * Its size and format are read from its header; the pixels are decoded in the worker, by sharp
 * with a pixel limit. Never a URL the server would fetch.
 */
function imageInput(value: unknown, field: string, limits: TextToImageLimits): { bytes: Uint8Array; width: number; height: number } {
  let bytes: Uint8Array;
  if (value instanceof Uint8Array) bytes = value;
  else if (typeof value === 'string') {
    const base64 = value.startsWith('data:') ? value.slice(value.indexOf(',') + 1) : value;
    if (/^https?:/i.test(value) || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) {
      throw invalidField(field, `${field} must be an image as base64 (or a data: URL, or a multipart file); URLs are not fetched`);
    }
    if (base64.length > Math.ceil(limits.max_image_bytes / 3) * 4) throw invalidField(field, `${field} must be at most ${limits.max_image_bytes} bytes`);
    bytes = new Uint8Array(Buffer.from(base64, 'base64'));
  } else throw invalidField(field, `${field} must be an image as base64 (or a data: URL, or a multipart file), got ${value === null ? 'null' : typeof value}`);
  if (bytes.byteLength > limits.max_image_bytes) throw invalidField(field, `${field} must be at most ${limits.max_image_bytes} bytes, got ${bytes.byteLength}`);
  let dims: { width?: number; height?: number; type?: string };
  try {
    dims = imageSize(bytes);
  } catch {
    throw invalidField(field, `${field} is not an image Easel reads: send PNG, JPEG or WebP`);
  }
  if (!(IMAGE_TYPES as readonly string[]).includes(dims.type ?? '') || !dims.width || !dims.height) {
    throw invalidField(field, `${field} must be PNG, JPEG or WebP, got ${dims.type ?? 'an unknown format'}`);
  }
  if (dims.width * dims.height > limits.max_image_pixels) {
    throw invalidField(field, `${field} must have at most ${limits.max_image_pixels} pixels, got ${dims.width}×${dims.height}`);
  }
  return { bytes, width: dims.width, height: dims.height };
}

/** A request's scheduler_config over the model's must describe a schedule that can run these steps. */
function checkSchedulerConfig(c: SchedulerConfig, inferenceSteps: number): void {
  const train = c.num_train_timesteps;
  const fail = (key: string, message: string): never => {
    throw invalidField(`scheduler_config.${key}`, `scheduler_config.${key} ${message}`);
  };
  if (c.trained_betas && c.trained_betas.length !== train) fail('trained_betas', `must have num_train_timesteps (${train}) values, got ${c.trained_betas.length}`);
  if (!c.trained_betas && c.beta_schedule !== 'squaredcos_cap_v2' && !(c.beta_start < c.beta_end)) fail('beta_start', `must be below beta_end (${c.beta_end}), got ${c.beta_start}`);
  if (inferenceSteps > train) fail('num_train_timesteps', `(${train}) must be at least num_inference_steps (${inferenceSteps})`);
  if (c.steps_offset >= train) fail('steps_offset', `must be below num_train_timesteps (${train}), got ${c.steps_offset}`);
  if (c.original_inference_steps > train) fail('original_inference_steps', `must be at most num_train_timesteps (${train}), got ${c.original_inference_steps}`);
}

/** "16, 32, …, 256" (or every value when there are few). */
function allowedSizes(multiple: number, max: number): string {
  const n = Math.floor(max / multiple);
  const list = (k: number): number => k * multiple;
  return n <= 4 ? Array.from({ length: n }, (_, i) => list(i + 1)).join(', ') : `${list(1)}, ${list(2)}, …, ${list(n)}`;
}

/** easel.yaml `limits:` over the built-ins; a non-positive or non-numeric limit is a model error. */
export function resolveLimits(fromSpec: Readonly<Record<string, unknown>>): TextToImageLimits {
  const limits = { ...BUILT_IN_LIMITS };
  for (const [key, value] of Object.entries(fromSpec)) {
    if (!Object.hasOwn(limits, key)) {
      throw new EaselError('EASEL_MODEL_INVALID', `easel.yaml limits.${key} is not a text-to-image limit; known: ${Object.keys(BUILT_IN_LIMITS).join(', ')}`, { field: `limits.${key}` });
    }
    if (typeof value !== 'number' || !(value > 0)) {
      throw new EaselError('EASEL_MODEL_INVALID', `easel.yaml limits.${key} must be a positive number, got ${JSON.stringify(value)}`, { field: `limits.${key}` });
    }
    limits[key as keyof TextToImageLimits] = value;
  }
  return limits;
}
