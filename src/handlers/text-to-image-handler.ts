// The `text-to-image` handler (the job of TorchServe's DiffusersHandler): prompt in, image
// out — PNG/JPEG/WebP bytes for one image, JSON with base64 images when asked or when several.
// It declares the diffusion pipeline's step API; the worker's step loop (src/scheduling) drives
// it, so requests with different step counts share UNet calls and a cancelled request leaves at
// the next step.
import sharp from 'sharp';
import { EaselError } from '../errors/easel-error.js';
import { DiffusionPipeline, isFinished, skippedSteps, stepsDone, totalSteps, type DenoiseState, type GenerationRequest, type InitImage, type RgbImage } from '../pipelines/diffusion/diffusion-pipeline.js';
import { isEaselError } from '../errors/easel-error.js';
import { jsonResult, type Handler, type HandlerContext, type HandlerOutcome, type HandlerResult, type InferenceRequest, type RequestContext, type StepModel, type StepRunner } from './handler.js';
import { parseTextToImage, textToImageRules, type RequestRules, type TextToImageParameters } from './text-to-image-request.js';

const CONTENT_TYPES = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' } as const;

interface Job {
  readonly params: TextToImageParameters;
  readonly accept: string | undefined;
}

type Output = { images: RgbImage[]; params: TextToImageParameters; accept: string | undefined } | EaselError;

/** Encodes RGB pixels; sharp's encoders are deterministic for the same pixels and options. */
export async function encodeImage(image: RgbImage, format: 'png' | 'jpeg' | 'webp', quality = 90): Promise<Uint8Array> {
  const input = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  const encoded = format === 'png' ? input.png() : format === 'jpeg' ? input.jpeg({ quality }) : input.webp({ quality });
  return new Uint8Array(await encoded.toBuffer());
}

/** The diffusion pipeline's step API: begin encodes prompts, a step is one UNet turn, finish decodes. */
export function diffusionSteps(pipeline: DiffusionPipeline): StepModel<GenerationRequest, DenoiseState, RgbImage> {
  return {
    begin: (requests) => pipeline.begin(requests),
    step: (states) => pipeline.denoise(states),
    isFinished,
    finish: (states) => pipeline.finish(states),
    // One UNet call per resolution.
    group: (r) => `${r.width}x${r.height}`,
    progress: (state) => ({ step: stepsDone(state), total: totalSteps(state) }),
    length: (r) => r.steps - (r.init ? skippedSteps(r.steps, r.init.strength) : 0),
    stages: { begin: 'text_encode', step: 'denoise', finish: 'vae_decode' },
  };
}

/**
 * The init image as the pipeline takes it: decoded by sharp (within the pixel limit admission
 * checked), resized to the request's size with Lanczos when it differs (diffusers' resampling),
 * planar RGB in [-1, 1]; the mask as diffusers' mask processor makes it: greyscale, 1 from half
 * white up (with mask_alpha, 1 where the alpha is below half: OpenAI's transparent-repaints).
 */
async function initImage(p: TextToImageParameters, rules: RequestRules): Promise<InitImage> {
  const { width, height } = p;
  const decode = async (bytes: Uint8Array, channels: 1 | 3, alpha = false): Promise<Uint8Array> => {
    let image = sharp(bytes, { limitInputPixels: rules.limits.max_image_pixels });
    image = alpha ? image.ensureAlpha().extractChannel('alpha') : image.removeAlpha();
    const meta = await image.metadata();
    if (meta.width !== width || meta.height !== height) image = image.resize(width, height, { fit: 'fill', kernel: 'lanczos3' });
    image = channels === 1 ? image.toColourspace('b-w') : image.toColourspace('srgb');
    const { data, info } = await image.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) throw new EaselError('EASEL_BAD_REQUEST', `the image decoded to ${info.channels} channels, not ${channels}`, { field: channels === 1 ? 'mask_image' : 'image' });
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  };
  let rgb: Uint8Array;
  let grey: Uint8Array | undefined;
  try {
    rgb = await decode(p.image!, 3);
    grey = p.mask_image ? await decode(p.mask_image, 1, p.mask_alpha) : undefined;
  } catch (err) {
    if (isEaselError(err)) throw err;
    throw new EaselError('EASEL_BAD_REQUEST', `the image could not be decoded: ${(err as Error).message}`, { field: 'image' });
  }
  const plane = width * height;
  const pixels = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i += 1) for (let c = 0; c < 3; c += 1) pixels[c * plane + i] = Math.fround(Math.fround(rgb[i * 3 + c]! / 255) * 2 - 1);
  const repaint = p.mask_alpha ? (v: number): boolean => v / 255 < 0.5 : (v: number): boolean => v / 255 >= 0.5;
  const mask = grey && Float32Array.from(grey, (v) => (repaint(v) ? 1 : 0));
  return { pixels, mask, strength: p.strength ?? 1 };
}

/** True when the client asks for JSON and not for an image. */
function wantsJson(accept: string | undefined): boolean {
  if (!accept) return false;
  return /application\/json/.test(accept) && !/image\//.test(accept);
}

export class TextToImageHandler implements Handler<Job[], Output> {
  #pipeline: DiffusionPipeline | undefined;
  #loop: StepRunner<GenerationRequest, DenoiseState, RgbImage> | undefined;
  #rules: RequestRules | undefined;

  async initialize(ctx: HandlerContext): Promise<void> {
    const pipeline = await DiffusionPipeline.load(ctx.modelDir, ctx.spec.runtime);
    const info = pipeline.info;
    this.#pipeline = pipeline;
    this.#loop = ctx.stepLoop(diffusionSteps(pipeline));
    this.#rules = textToImageRules(ctx.spec, ctx.modelDir);
    ctx.logger.info({ ...info }, 'text-to-image pipeline loaded');
    if (ctx.spec.runtime.warmup && !info.inpaintingUnet) {
      // One step at the default size: first-run allocations happen here, not in a request.
      const states = await pipeline.begin([this.#generation(parseTextToImage({ prompt: '', num_inference_steps: 1, seed: 0 }, this.#rules), 0)]);
      await pipeline.denoise(states);
      await pipeline.finish(states);
    }
  }

  #generation(p: TextToImageParameters, image: number, init?: InitImage): GenerationRequest {
    return {
      init,
      prompt: p.prompt,
      negativePrompt: p.negative_prompt,
      steps: p.num_inference_steps,
      guidanceScale: p.guidance_scale,
      width: p.width,
      height: p.height,
      // Image k of a request uses seed + k, so each image can be reproduced alone.
      seed: p.seed + image,
      scheduler: p.scheduler,
      schedulerConfig: p.scheduler_config,
      guidanceRescale: p.guidance_rescale,
      prompt2: p.prompt_2,
      negativePrompt2: p.negative_prompt_2,
      microConditioning: {
        originalSize: p.original_size,
        cropsCoordsTopLeft: p.crops_coords_top_left,
        targetSize: p.target_size,
        negativeOriginalSize: p.negative_original_size,
        negativeCropsCoordsTopLeft: p.negative_crops_coords_top_left,
        negativeTargetSize: p.negative_target_size,
      },
    };
  }

  preprocess(requests: readonly InferenceRequest[]): Job[] {
    const rules = this.#rules!;
    // Parse all first: a bad request throws here and the worker retries the others alone.
    return requests.map((r) => ({ params: parseTextToImage(r.input, rules), accept: r.accept }));
  }

  /**
   * Runs each request through the shared step loop: requests of this batch, and of batches the
   * worker receives meanwhile (step-level batching), share every UNet call.
   */
  async inference(jobs: Job[], ctx: RequestContext): Promise<Output[]> {
    const loop = this.#loop!;
    return Promise.all(
      jobs.map(async (job, i): Promise<Output> => {
        const handle = ctx.requests[i];
        try {
          const init = job.params.image ? await initImage(job.params, this.#rules!) : undefined;
          const generations = Array.from({ length: job.params.num_images }, (_, k) => this.#generation(job.params, k, init));
          const images = await loop.run(generations, {
            signal: handle?.signal,
            onStep: async (states) => {
              const step = Math.min(...states.map(stepsDone));
              const total = totalSteps(states[0]!);
              const every = job.params.preview_every;
              const preview = every > 0 && step % every === 0 && step < total ? await this.#preview(states[0]!, ctx) : undefined;
              handle?.progress({ step, total, ...(preview ? { preview } : {}) });
            },
          });
          return { images, params: job.params, accept: job.accept };
        } catch (err) {
          // Cancelled: this request fails alone, its batch-mates go on.
          if (isEaselError(err) && err.code === 'EASEL_CANCELLED') return err;
          throw err;
        }
      }),
    );
  }

  async #preview(state: DenoiseState, ctx: RequestContext): Promise<HandlerResult> {
    const image = await ctx.timers.timeAsync('preview', () => this.#pipeline!.preview(state));
    return { contentType: 'image/jpeg', data: await encodeImage(image, 'jpeg', 70) };
  }

  async postprocess(outputs: Output[], ctx: RequestContext): Promise<HandlerOutcome[]> {
    return ctx.timers.timeAsync('encode_image', () => Promise.all(outputs.map((o) => (o instanceof EaselError ? o : this.#respond(o)))));
  }

  async #respond({ images, params, accept }: Exclude<Output, EaselError>): Promise<HandlerResult> {
    const { output_format: format } = params;
    // The parameters as run, less the images sent (the client has them).
    const parameters = { ...params, preview_every: undefined, image: undefined, mask_image: undefined, mask_alpha: undefined };
    if (format === 'tensor') {
      // Asked for explicitly: the raw uint8 RGB pixels, NHWC.
      const first = images[0]!;
      return jsonResult({ shape: [images.length, first.height, first.width, 3], dtype: 'uint8', data: images.flatMap((im) => Array.from(im.data)), seed: params.seed, parameters });
    }
    const encoded = await Promise.all(images.map((im) => encodeImage(im, format)));
    if (encoded.length === 1 && !wantsJson(accept)) return { contentType: CONTENT_TYPES[format], data: encoded[0]! };
    // Several images, or JSON asked for: the images stay binary as the result's parts; the JSON
    // describes them, and the HTTP layer inlines them as base64 where a client reads JSON.
    const described = jsonResult({ content_type: CONTENT_TYPES[format], seed: params.seed, seeds: images.map((_, k) => params.seed + k), parameters });
    return { ...described, parts: encoded.map((data) => ({ contentType: CONTENT_TYPES[format], data })) };
  }

  notes(): string[] {
    const info = this.#pipeline?.info;
    if (!info) return [];
    const notes: string[] = [];
    if (info.scalarTimestep) {
      notes.push('the UNet takes a scalar timestep: step-level batching can only put requests at the same timestep in one UNet call, so concurrent requests share fewer calls (re-export with a per-sample timestep to batch fully)');
    }
    if (info.guidanceEmbeddingSize !== null) notes.push('guidance is embedded (timestep_cond, as LCM): no unconditional pass, and negative_prompt has no effect');
    return notes;
  }

  async dispose(): Promise<void> {
    await this.#pipeline?.release();
  }
}
