// A Stable Diffusion style ONNX pipeline (the diffusers / optimum layout): CLIP tokenizer and
// text encoder, UNet denoising loop with classifier-free guidance, VAE decoder. It works in
// steps — begin(requests) → denoise(states) repeatedly → finish(states) — so that a caller
// can run many requests, each at its own step, through shared UNet calls. Knows nothing of HTTP.
import path from 'node:path';
import { findVariant, floatTensor, makeTensor, OnnxSession, variantFile, tensorToFloat32, type IoInfo, type SessionOptions, type Tensor } from '../../runtime/onnx-runtime.js';
import { ClipTokenizer } from './clip-tokenizer.js';
import { readDiffusionLayout, type DiffusionLayout } from './diffusion-layout.js';
import { TorchGenerator } from './random.js';
import { createScheduler, type Scheduler, type SchedulerConfig, type SchedulerName } from './schedulers/index.js';
import { roundHalfEven } from './schedulers/schedule.js';

export interface GenerationRequest {
  readonly prompt: string;
  readonly negativePrompt: string;
  readonly steps: number;
  readonly guidanceScale: number;
  readonly width: number;
  readonly height: number;
  readonly seed: number;
  readonly scheduler: SchedulerName;
  /** Per-request overrides of scheduler_config.json keys (timestep_spacing, prediction_type, ...). */
  readonly schedulerConfig?: Partial<SchedulerConfig> | undefined;
  /** Image-to-image and inpainting: the image to start from. */
  readonly init?: InitImage | undefined;
}

export interface InitImage {
  /** Planar RGB in [-1, 1], width × height of the request. */
  readonly pixels: Float32Array;
  /** Inpainting: per pixel, 1 where to paint and 0 where to keep the image (diffusers' binarized mask_image). */
  readonly mask?: Float32Array | undefined;
  /** How much of the schedule runs: its last strength × steps calls (diffusers' strength). */
  readonly strength: number;
}

/** The calls an image-to-image run skips: diffusers' get_timesteps (t_start × the scheduler's order, 1 here). */
export function skippedSteps(steps: number, strength: number): number {
  return Math.max(steps - Math.min(Math.floor(steps * strength), steps), 0);
}

/** One image in progress. Everything a step needs lives here, none of it on the pipeline. */
export interface DenoiseState {
  readonly request: GenerationRequest;
  readonly scheduler: Scheduler;
  readonly generator: TorchGenerator;
  latents: Float32Array;
  /** The scheduler's latest estimate of the clean latents, for previews. */
  predictedOriginal: Float32Array | null;
  readonly cond: Float32Array;
  /** The negative prompt's embedding; null when guidance is off (scale ≤ 1 or embedded guidance). */
  readonly uncond: Float32Array | null;
  readonly timestepCond: Float32Array | null;
  /** The first scheduler call run (image-to-image starts part-way). */
  readonly firstCall: number;
  /** Inpainting with an ordinary UNet: each step the kept region is reset to the image's latents, noised to that step's level. */
  readonly inpaint: { readonly imageLatents: Float32Array; readonly mask: Float32Array; readonly noise: Float32Array } | null;
}

export interface RgbImage {
  readonly width: number;
  readonly height: number;
  /** Interleaved 8-bit RGB, row-major. */
  readonly data: Uint8Array;
}

export interface PipelineInfo {
  readonly vaeScaleFactor: number;
  readonly latentChannels: number;
  readonly textLength: number;
  /** The UNet's `timestep` is a scalar: requests share a call only at the same timestep. */
  readonly scalarTimestep: boolean;
  /** Width of `timestep_cond` (LCM's guidance embedding), or null. */
  readonly guidanceEmbeddingSize: number | null;
  readonly defaultScheduler: SchedulerName;
  readonly defaultSize: number;
  /** It has a VAE encoder: image-to-image and inpainting. */
  readonly imageToImage: boolean;
}

export function stepsDone(state: DenoiseState): number {
  return state.scheduler.stepIndex - state.firstCall;
}

export function totalSteps(state: DenoiseState): number {
  return state.scheduler.timesteps.length - state.firstCall;
}

export function isFinished(state: DenoiseState): boolean {
  return stepsDone(state) >= totalSteps(state);
}

function requireInput(session: OnnxSession, names: readonly string[], what: string): IoInfo {
  const found = session.inputs.find((i) => names.includes(i.name));
  if (!found) throw new Error(`${what}: the ONNX graph has no input named ${names.join(' or ')} (inputs: ${session.inputs.map((i) => i.name).join(', ')})`);
  return found;
}

function optionalInput(session: OnnxSession, name: string): IoInfo | undefined {
  return session.inputs.find((i) => i.name === name);
}

function staticDim(io: IoInfo, axis: number): number | undefined {
  const d = io.shape[axis];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

/** LCM's w-embedding (diffusers' get_guidance_scale_embedding), for `timestep_cond`. */
function guidanceEmbedding(guidanceScale: number, size: number): Float32Array {
  const w = (guidanceScale - 1) * 1000;
  const half = Math.floor(size / 2);
  const scale = Math.log(10000) / (half - 1);
  const out = new Float32Array(size);
  for (let i = 0; i < half; i += 1) {
    const x = w * Math.exp(-scale * i);
    out[i] = Math.sin(x);
    out[half + i] = Math.cos(x);
  }
  return out;
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): T[][] {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return [...groups.values()];
}

export class DiffusionPipeline {
  readonly info: PipelineInfo;
  readonly #tokenizer: ClipTokenizer;
  readonly #textEncoder: OnnxSession;
  readonly #unet: OnnxSession;
  readonly #vaeDecoder: OnnxSession;
  /** Image-to-image: the layout's VAE encoder, when it ships one. */
  readonly #vaeEncoder: OnnxSession | undefined;
  readonly #schedulerConfig: Partial<SchedulerConfig>;
  readonly #vaeScaling: number;
  readonly #io: {
    inputIds: IoInfo;
    sample: IoInfo;
    timestep: IoInfo;
    hidden: IoInfo;
    timestepCond: IoInfo | undefined;
    latent: IoInfo;
  };

  private constructor(parts: {
    tokenizer: ClipTokenizer;
    textEncoder: OnnxSession;
    unet: OnnxSession;
    vaeDecoder: OnnxSession;
    vaeEncoder: OnnxSession | undefined;
    layout: DiffusionLayout;
  }) {
    const { layout } = parts;
    this.#tokenizer = parts.tokenizer;
    this.#textEncoder = parts.textEncoder;
    this.#unet = parts.unet;
    this.#vaeDecoder = parts.vaeDecoder;
    this.#vaeEncoder = parts.vaeEncoder;
    this.#schedulerConfig = layout.schedulerConfig;
    this.#io = {
      inputIds: requireInput(parts.textEncoder, ['input_ids'], 'text_encoder'),
      sample: requireInput(parts.unet, ['sample'], 'unet'),
      timestep: requireInput(parts.unet, ['timestep'], 'unet'),
      hidden: requireInput(parts.unet, ['encoder_hidden_states'], 'unet'),
      timestepCond: optionalInput(parts.unet, 'timestep_cond'),
      latent: requireInput(parts.vaeDecoder, ['latent_sample', 'latent'], 'vae_decoder'),
    };
    const scaling = layout.vaeConfig.scaling_factor;
    this.#vaeScaling = typeof scaling === 'number' ? scaling : 0.18215;
    const channels = staticDim(this.#io.sample, 1) ?? (typeof layout.vaeConfig.latent_channels === 'number' ? layout.vaeConfig.latent_channels : 4);
    this.info = {
      vaeScaleFactor: layout.vaeScaleFactor,
      latentChannels: channels,
      textLength: parts.tokenizer.maxLength,
      scalarTimestep: this.#io.timestep.shape.length === 0,
      guidanceEmbeddingSize: this.#io.timestepCond ? (staticDim(this.#io.timestepCond, 1) ?? 256) : null,
      defaultScheduler: layout.defaultScheduler,
      defaultSize: layout.defaultSize,
      imageToImage: parts.vaeEncoder !== undefined,
    };
  }

  /** Loads a diffusers/optimum ONNX layout (model_index.json and one folder per component). */
  static async load(dir: string, options: SessionOptions): Promise<DiffusionPipeline> {
    const file = (component: string): string => path.join(dir, component, 'model.onnx');
    const components = ['text_encoder', 'unet', 'vae_decoder'];
    // A variant (fp16, int8) applies to each component that has it; often only the UNet does.
    const { variant } = options;
    const withVariant = variant ? components.filter((c) => findVariant(file(c), variant)) : [];
    if (variant && withVariant.length === 0) variantFile(file('unet'), variant); // throws, naming the files looked for
    const session = (c: string): Promise<OnnxSession> => OnnxSession.create(file(c), { ...options, variant: withVariant.includes(c) ? variant : undefined });
    const [textEncoder, unet, vaeDecoder] = await Promise.all(components.map(session)) as [OnnxSession, OnnxSession, OnnxSession];
    // The same reading of the JSON configs as admission's, so worker and API agree on sizes, defaults and image-to-image.
    const layout = readDiffusionLayout(dir);
    const vaeEncoder = layout.vaeEncoder ? await session('vae_encoder') : undefined;
    const textInput = requireInput(textEncoder, ['input_ids'], 'text_encoder');
    const tokenizer = ClipTokenizer.load(path.join(dir, 'tokenizer'), staticDim(textInput, 1) ?? 77);
    return new DiffusionPipeline({ tokenizer, textEncoder, unet, vaeDecoder, vaeEncoder, layout });
  }

  /** Whether the request runs the unconditional half (classifier-free guidance). */
  usesGuidance(request: GenerationRequest): boolean {
    return request.guidanceScale > 1 && this.info.guidanceEmbeddingSize === null;
  }

  /**
   * Tokenizes and encodes every prompt in one text-encoder call, encodes init images (one VAE
   * encoder call per resolution), and draws the initial latents: Gaussian noise, or for
   * image-to-image the image's latents noised to the level of the first call it runs.
   */
  async begin(requests: readonly GenerationRequest[]): Promise<DenoiseState[]> {
    const texts = [...new Set(requests.flatMap((r) => (this.usesGuidance(r) ? [r.prompt, r.negativePrompt] : [r.prompt])))];
    const embeddings = await this.#encodeText(texts);
    const moments = await this.#encodeImages(requests.filter((r) => r.init !== undefined));
    return requests.map((request) => {
      const scheduler = createScheduler(request.scheduler, this.#schedulerConfig, request.steps, request.schedulerConfig);
      const generator = new TorchGenerator(request.seed);
      const f = this.info.vaeScaleFactor;
      const count = this.info.latentChannels * (request.height / f) * (request.width / f);
      const size = this.info.guidanceEmbeddingSize;
      const common = {
        request, scheduler, generator, predictedOriginal: null,
        cond: embeddings.get(request.prompt)!,
        uncond: this.usesGuidance(request) ? embeddings.get(request.negativePrompt)! : null,
        timestepCond: size === null ? null : guidanceEmbedding(request.guidanceScale, size),
      };
      const init = request.init;
      if (!init) {
        const sigma = scheduler.initNoiseSigma;
        return { ...common, latents: generator.standardNormal(count).map((x) => x * sigma), firstCall: 0, inpaint: null };
      }
      // diffusers' order of draws: the VAE's sample (when the encoder gives a distribution), then the noise.
      const imageLatents = this.#latentsOf(moments.get(request)!, generator).map((x) => x * this.#vaeScaling);
      const noise = generator.standardNormal(count);
      const firstCall = skippedSteps(request.steps, init.strength);
      scheduler.beginAt(firstCall);
      // Inpainting at full strength starts from pure noise, as diffusers does; otherwise from the noised image.
      const latents = init.mask && init.strength >= 1 ? noise.map((x) => x * scheduler.initNoiseSigma) : scheduler.addNoise(imageLatents, noise, firstCall);
      const inpaint = init.mask ? { imageLatents, mask: latentMask(init.mask, request.width, request.height, f), noise } : null;
      return { ...common, latents, firstCall, inpaint };
    });
  }

  /** The VAE encoder's output per init image: the latents, or their distribution's mean and log-variance. */
  async #encodeImages(requests: readonly GenerationRequest[]): Promise<Map<GenerationRequest, Float32Array>> {
    const out = new Map<GenerationRequest, Float32Array>();
    if (requests.length === 0) return out;
    const encoder = this.#vaeEncoder;
    if (!encoder) throw new Error('image-to-image needs the layout\'s vae_encoder');
    for (const group of groupBy(requests, (r) => `${r.width}x${r.height}`)) {
      const { width, height } = group[0]!;
      const per = 3 * width * height;
      const pixels = new Float32Array(group.length * per);
      group.forEach((r, i) => pixels.set(r.init!.pixels, i * per));
      const input = encoder.inputs[0]!;
      const outputs = await encoder.run({ [input.name]: floatTensor(input.type, pixels, [group.length, 3, height, width]) });
      const encoded = tensorToFloat32(outputs[encoder.outputs[0]?.name ?? '']!);
      const size = encoded.length / group.length;
      group.forEach((r, i) => out.set(r, encoded.slice(i * size, (i + 1) * size)));
    }
    return out;
  }

  /** Latents from the encoder's output: as given, or sampled from mean and log-variance (diffusers' latent_dist.sample). */
  #latentsOf(encoded: Float32Array, generator: TorchGenerator): Float32Array {
    // optimum's latent_parameters: the mean, then the log-variance (clamped as diffusers does).
    if (this.#vaeEncoder?.outputs[0]?.name !== 'latent_parameters') return encoded;
    const count = encoded.length / 2;
    const eps = generator.standardNormal(count);
    return Float32Array.from({ length: count }, (_, i) => {
      const logvar = Math.min(20, Math.max(-30, encoded[count + i] ?? 0));
      return (encoded[i] ?? 0) + Math.exp(0.5 * logvar) * (eps[i] ?? 0);
    });
  }

  async #encodeText(texts: readonly string[]): Promise<Map<string, Float32Array>> {
    const length = this.#tokenizer.maxLength;
    const ids = texts.flatMap((t) => this.#tokenizer.encode(t));
    const type = this.#io.inputIds.type;
    const feeds = { [this.#io.inputIds.name]: makeTensor(type, ids, [texts.length, length]) };
    const outputs = await this.#textEncoder.run(feeds);
    const name = outputs.last_hidden_state ? 'last_hidden_state' : this.#textEncoder.outputs[0]?.name ?? '';
    const hidden = tensorToFloat32(outputs[name]!);
    const width = hidden.length / texts.length;
    return new Map(texts.map((t, i) => [t, hidden.slice(i * width, (i + 1) * width)]));
  }

  /**
   * One denoising step for every unfinished state: one UNet call per resolution (per
   * resolution and timestep when the UNet takes a scalar timestep), then each request's own
   * scheduler steps with its own guidance scale and noise.
   */
  async denoise(states: readonly DenoiseState[]): Promise<void> {
    const active = states.filter((s) => !isFinished(s));
    const scalar = this.info.scalarTimestep;
    const groups = groupBy(active, (s) => `${s.request.width}x${s.request.height}${scalar ? `@${s.scheduler.timesteps[s.scheduler.stepIndex]}` : ''}`);
    for (const group of groups) await this.#denoiseGroup(group);
  }

  async #denoiseGroup(group: readonly DenoiseState[]): Promise<void> {
    const rows: { state: DenoiseState; hidden: Float32Array; input: Float32Array }[] = [];
    for (const state of group) {
      const input = state.scheduler.scaleModelInput(state.latents);
      if (state.uncond) rows.push({ state, hidden: state.uncond, input });
      rows.push({ state, hidden: state.cond, input });
    }
    const first = group[0]!.request;
    const f = this.info.vaeScaleFactor;
    const dims = [rows.length, this.info.latentChannels, first.height / f, first.width / f];
    const hiddenWidth = rows[0]!.hidden.length;
    const sample = new Float32Array(rows.length * rows[0]!.input.length);
    const hidden = new Float32Array(rows.length * hiddenWidth);
    rows.forEach((row, i) => {
      sample.set(row.input, i * row.input.length);
      hidden.set(row.hidden, i * hiddenWidth);
    });
    const io = this.#io;
    const timesteps = rows.map((r) => r.state.scheduler.timesteps[r.state.scheduler.stepIndex] ?? 0);
    // Integer timestep inputs truncate, as numpy's astype does in diffusers' ONNX pipeline.
    const timestepValues = io.timestep.type.startsWith('int') ? timesteps.map(Math.trunc) : timesteps;
    const feeds: Record<string, Tensor> = {
      [io.sample.name]: floatTensor(io.sample.type, sample, dims),
      [io.timestep.name]: this.info.scalarTimestep ? makeTensor(io.timestep.type, timestepValues.slice(0, 1), []) : makeTensor(io.timestep.type, timestepValues, [rows.length]),
      [io.hidden.name]: floatTensor(io.hidden.type, hidden, [rows.length, this.info.textLength, hiddenWidth / this.info.textLength]),
    };
    if (io.timestepCond) {
      const size = this.info.guidanceEmbeddingSize ?? 0;
      const cond = new Float32Array(rows.length * size);
      rows.forEach((r, i) => cond.set(r.state.timestepCond ?? new Float32Array(size), i * size));
      feeds[io.timestepCond.name] = floatTensor(io.timestepCond.type, cond, [rows.length, size]);
    }
    const outputs = await this.#unet.run(feeds);
    const predicted = tensorToFloat32(outputs[this.#unet.outputs[0]?.name ?? '']!);
    const per = predicted.length / rows.length;
    let row = 0;
    for (const state of group) {
      let noise: Float32Array;
      if (state.uncond) {
        const uncond = predicted.subarray(row * per, (row + 1) * per);
        const text = predicted.subarray((row + 1) * per, (row + 2) * per);
        const g = state.request.guidanceScale;
        noise = uncond.map((u, i) => u + g * ((text[i] ?? 0) - u));
        row += 2;
      } else {
        noise = predicted.slice(row * per, (row + 1) * per);
        row += 1;
      }
      const out = state.scheduler.step(noise, state.latents, state.generator);
      state.latents = state.inpaint ? keepUnmasked(state, out.prevSample) : out.prevSample;
      state.predictedOriginal = out.predictedOriginal;
    }
  }

  /** VAE-decodes finished states (one call per resolution) into 8-bit RGB images. */
  async finish(states: readonly DenoiseState[]): Promise<RgbImage[]> {
    return this.#decode(states.map((s) => ({ request: s.request, latents: s.latents })));
  }

  /** A preview of a state in progress: the VAE decode of the current clean-latent estimate. */
  async preview(state: DenoiseState): Promise<RgbImage> {
    const [image] = await this.#decode([{ request: state.request, latents: state.predictedOriginal ?? state.latents }]);
    return image!;
  }

  async #decode(items: readonly { request: GenerationRequest; latents: Float32Array }[]): Promise<RgbImage[]> {
    const images = new Map<(typeof items)[number], RgbImage>();
    for (const group of groupBy(items, (s) => `${s.request.width}x${s.request.height}`)) {
      const { width, height } = group[0]!.request;
      const f = this.info.vaeScaleFactor;
      const per = group[0]!.latents.length;
      const latents = new Float32Array(group.length * per);
      group.forEach((s, i) => latents.set(s.latents.map((x) => x / this.#vaeScaling), i * per));
      const feeds = { [this.#io.latent.name]: floatTensor(this.#io.latent.type, latents, [group.length, this.info.latentChannels, height / f, width / f]) };
      const outputs = await this.#vaeDecoder.run(feeds);
      const pixels = tensorToFloat32(outputs[this.#vaeDecoder.outputs[0]?.name ?? '']!);
      group.forEach((s, i) => images.set(s, toRgb(pixels.subarray(i * 3 * width * height, (i + 1) * 3 * width * height), width, height)));
    }
    return items.map((s) => images.get(s)!);
  }

  /** Seconds spent inside ONNX Runtime by this pipeline's sessions so far. */
  get sessionSeconds(): number {
    return this.#textEncoder.runSeconds + this.#unet.runSeconds + this.#vaeDecoder.runSeconds + (this.#vaeEncoder?.runSeconds ?? 0);
  }

  async release(): Promise<void> {
    await Promise.all([this.#textEncoder.release(), this.#unet.release(), this.#vaeDecoder.release(), this.#vaeEncoder?.release()]);
  }
}

/**
 * Inpainting with an ordinary UNet (diffusers' legacy blend): outside the mask the latents are the
 * image's, noised to the next call's level (clean after the last).
 */
function keepUnmasked(state: DenoiseState, latents: Float32Array): Float32Array {
  const { imageLatents, mask, noise } = state.inpaint!;
  const proper = isFinished(state) ? imageLatents : state.scheduler.addNoise(imageLatents, noise, state.scheduler.stepIndex);
  const plane = mask.length;
  return latents.map((x, i) => {
    const m = mask[i % plane]!;
    return Math.fround(Math.fround((1 - m) * proper[i]!) + Math.fround(m * x));
  });
}

/** The pixel mask at latent resolution: torch's nearest interpolation (source index floor(i × f)). */
function latentMask(mask: Float32Array, width: number, height: number, f: number): Float32Array {
  const w = width / f;
  const h = height / f;
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y += 1) for (let x = 0; x < w; x += 1) out[y * w + x] = mask[y * f * width + x * f]!;
  return out;
}

/** Planar [-1, 1] RGB → interleaved uint8, as diffusers: (x / 2 + 0.5).clamp(0, 1) * 255, rounded. */
function toRgb(planar: Float32Array, width: number, height: number): RgbImage {
  const plane = width * height;
  const data = new Uint8Array(plane * 3);
  for (let p = 0; p < plane; p += 1) {
    for (let c = 0; c < 3; c += 1) {
      const x = Math.min(1, Math.max(0, Math.fround(Math.fround((planar[c * plane + p] ?? 0) / 2) + 0.5)));
      data[p * 3 + c] = roundHalfEven(Math.fround(x * 255));
    }
  }
  return { width, height, data };
}
