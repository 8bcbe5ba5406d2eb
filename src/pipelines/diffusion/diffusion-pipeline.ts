// A Stable Diffusion style ONNX pipeline (the diffusers / optimum layout): CLIP tokenizer and
// text encoder (SDXL: two, with pooled embeddings and micro-conditioning), UNet denoising loop
// with classifier-free guidance, VAE decoder (and encoder, for image-to-image). It works in
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
  /** SDXL: the second text encoder's prompt and negative prompt (default: prompt and negativePrompt). */
  readonly prompt2?: string | undefined;
  readonly negativePrompt2?: string | undefined;
  /** SDXL's micro-conditioning (the UNet's time_ids); unset values take diffusers' defaults. */
  readonly microConditioning?: MicroConditioning | undefined;
  /** diffusers' guidance_rescale: pulls the guided prediction's spread back toward the text prediction's (0: off). */
  readonly guidanceRescale?: number | undefined;
}

/** (height, width) pairs, as diffusers' SDXL pipelines take them. */
export type SizePair = readonly [number, number];

export interface MicroConditioning {
  /** Default: the request's height and width. */
  readonly originalSize?: SizePair | undefined;
  /** Default: (0, 0). */
  readonly cropsCoordsTopLeft?: SizePair | undefined;
  /** Default: the request's height and width. */
  readonly targetSize?: SizePair | undefined;
  /** The unconditional pass's, used only when both negative sizes are given (as diffusers); otherwise the above. */
  readonly negativeOriginalSize?: SizePair | undefined;
  readonly negativeCropsCoordsTopLeft?: SizePair | undefined;
  readonly negativeTargetSize?: SizePair | undefined;
}

/** What one pass of the UNet is conditioned on. */
export interface Conditioning {
  /** The text encoder's hidden states (SDXL: both encoders' penultimate ones, side by side). */
  readonly hidden: Float32Array;
  /** SDXL: the second encoder's pooled projection (`text_embeds`) and the micro-conditioning (`time_ids`). */
  readonly pooled: Float32Array | null;
  readonly timeIds: Float32Array | null;
}

/** SDXL's add_time_ids: original size, crop's top-left corner, target size; and the negative pass's. */
export function timeIds(request: GenerationRequest): { cond: Float32Array; uncond: Float32Array } {
  const m = request.microConditioning ?? {};
  const size: SizePair = [request.height, request.width];
  const cond = Float32Array.from([...(m.originalSize ?? size), ...(m.cropsCoordsTopLeft ?? [0, 0]), ...(m.targetSize ?? size)]);
  const uncond = m.negativeOriginalSize && m.negativeTargetSize
    ? Float32Array.from([...m.negativeOriginalSize, ...(m.negativeCropsCoordsTopLeft ?? [0, 0]), ...m.negativeTargetSize])
    : cond;
  return { cond, uncond };
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
  readonly cond: Conditioning;
  /** The negative prompt's conditioning; null when guidance is off (scale ≤ 1 or embedded guidance). */
  readonly uncond: Conditioning | null;
  readonly timestepCond: Float32Array | null;
  /** The first scheduler call run (image-to-image starts part-way). */
  readonly firstCall: number;
  /** Inpainting with an ordinary UNet: each step the kept region is reset to the image's latents, noised to that step's level. */
  readonly inpaint: { readonly imageLatents: Float32Array; readonly mask: Float32Array; readonly noise: Float32Array } | null;
  /** An inpainting UNet's extra input channels, after the latents: the mask and the masked image's latents. */
  readonly unetExtra: Float32Array | null;
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
  /** An inpainting UNet (diffusers' 9 input channels: latents, mask, masked image's latents): every request is inpainting. */
  readonly inpaintingUnet: boolean;
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

/** A text encoder and its tokenizer; SDXL's read the penultimate hidden state. */
interface TextEncoding {
  readonly tokenizer: ClipTokenizer;
  readonly session: OnnxSession;
  readonly inputIds: IoInfo;
  /** The output the UNet attends to. */
  readonly hidden: string;
}

/** The hidden state before the last layer (diffusers' hidden_states[-2]): optimum exports hidden_states.0 … hidden_states.N. */
function penultimateHiddenState(session: OnnxSession, component: string): string {
  const layers = session.outputs.map((o) => /^hidden_states\.(\d+)$/.exec(o.name)?.[1]).filter((n) => n !== undefined).map(Number);
  if (layers.length < 2) {
    throw new Error(`${component}: SDXL conditions on the penultimate hidden state, and this export has no hidden_states.N outputs (outputs: ${session.outputs.map((o) => o.name).join(', ')}); export it with optimum, which adds them`);
  }
  return `hidden_states.${Math.max(...layers) - 1}`;
}

function textEncoding(dir: string, component: string, tokenizerDir: string, session: OnnxSession, penultimate: boolean): TextEncoding {
  const inputIds = requireInput(session, ['input_ids'], component);
  const tokenizer = ClipTokenizer.load(path.join(dir, tokenizerDir), staticDim(inputIds, 1) ?? 77);
  const hidden = penultimate ? penultimateHiddenState(session, component) : session.outputs.some((o) => o.name === 'last_hidden_state') ? 'last_hidden_state' : session.outputs[0]?.name ?? '';
  return { tokenizer, session, inputIds, hidden };
}

async function encodeWith(encoding: TextEncoding, texts: readonly string[]): Promise<Record<string, Tensor>> {
  const ids = texts.flatMap((t) => encoding.tokenizer.encode(t));
  const feeds = { [encoding.inputIds.name]: makeTensor(encoding.inputIds.type, ids, [texts.length, encoding.tokenizer.maxLength]) };
  return encoding.session.run(feeds);
}

/** The (prompt, prompt_2) pair a pass is conditioned on, as one Map key. */
function textKey(first: string, second: string): string {
  return JSON.stringify([first, second]);
}

export class DiffusionPipeline {
  readonly info: PipelineInfo;
  readonly #text: TextEncoding;
  /** SDXL's second text encoder (with projection). */
  readonly #text2: TextEncoding | undefined;
  readonly #forceZeros: boolean;
  readonly #unet: OnnxSession;
  readonly #vaeDecoder: OnnxSession;
  /** Image-to-image: the layout's VAE encoder, when it ships one. */
  readonly #vaeEncoder: OnnxSession | undefined;
  readonly #schedulerConfig: Partial<SchedulerConfig>;
  readonly #vaeScaling: number;
  /** The UNet's input channels: the latents', or 2 × those + 1 for an inpainting UNet. */
  readonly #unetChannels: number;
  readonly #io: {
    sample: IoInfo;
    timestep: IoInfo;
    hidden: IoInfo;
    timestepCond: IoInfo | undefined;
    textEmbeds: IoInfo | undefined;
    timeIds: IoInfo | undefined;
    latent: IoInfo;
  };

  private constructor(parts: {
    text: TextEncoding;
    text2: TextEncoding | undefined;
    unet: OnnxSession;
    vaeDecoder: OnnxSession;
    vaeEncoder: OnnxSession | undefined;
    layout: DiffusionLayout;
  }) {
    const { layout } = parts;
    this.#text = parts.text;
    this.#text2 = parts.text2;
    this.#forceZeros = layout.forceZerosForEmptyPrompt;
    this.#unet = parts.unet;
    this.#vaeDecoder = parts.vaeDecoder;
    this.#vaeEncoder = parts.vaeEncoder;
    this.#schedulerConfig = layout.schedulerConfig;
    this.#io = {
      sample: requireInput(parts.unet, ['sample'], 'unet'),
      timestep: requireInput(parts.unet, ['timestep'], 'unet'),
      hidden: requireInput(parts.unet, ['encoder_hidden_states'], 'unet'),
      timestepCond: optionalInput(parts.unet, 'timestep_cond'),
      textEmbeds: optionalInput(parts.unet, 'text_embeds'),
      timeIds: optionalInput(parts.unet, 'time_ids'),
      latent: requireInput(parts.vaeDecoder, ['latent_sample', 'latent'], 'vae_decoder'),
    };
    if ((this.#io.textEmbeds !== undefined) !== (parts.text2 !== undefined) || (this.#io.timeIds !== undefined) !== (parts.text2 !== undefined)) {
      throw new Error(parts.text2
        ? 'unet: an SDXL layout (text_encoder_2) needs a UNet that takes text_embeds and time_ids'
        : 'unet: this UNet takes text_embeds and time_ids (SDXL) but the layout has no text_encoder_2 to make them');
    }
    if (parts.text2 && parts.text2.tokenizer.maxLength !== parts.text.tokenizer.maxLength) {
      throw new Error(`tokenizer_2: its length (${parts.text2.tokenizer.maxLength}) must equal tokenizer's (${parts.text.tokenizer.maxLength}): the UNet attends to both encoders' tokens side by side`);
    }
    const scaling = layout.vaeConfig.scaling_factor;
    this.#vaeScaling = typeof scaling === 'number' ? scaling : 0.18215;
    const channels = layout.latentChannels;
    this.#unetChannels = staticDim(this.#io.sample, 1) ?? layout.unetInChannels ?? channels;
    this.info = {
      vaeScaleFactor: layout.vaeScaleFactor,
      latentChannels: channels,
      inpaintingUnet: this.#unetChannels === 2 * channels + 1,
      textLength: parts.text.tokenizer.maxLength,
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
    // The same reading of the JSON configs as admission's, so worker and API agree on sizes, defaults and image-to-image.
    const layout = readDiffusionLayout(dir);
    const components = ['text_encoder', 'unet', 'vae_decoder', ...(layout.dualTextEncoder ? ['text_encoder_2'] : [])];
    // A variant (fp16, int8) applies to each component that has it; often only the UNet does. A
    // VAE marked force_upcast runs in float32 (diffusers upcasts it: SDXL's overflows in fp16).
    const { variant } = options;
    const takesVariant = (c: string): boolean => !(layout.vaeForceUpcast && c.startsWith('vae_')) && findVariant(file(c), variant!) !== undefined;
    const withVariant = variant ? components.filter(takesVariant) : [];
    if (variant && withVariant.length === 0) variantFile(file('unet'), variant); // throws, naming the files looked for
    const session = (c: string): Promise<OnnxSession> => OnnxSession.create(file(c), { ...options, variant: withVariant.includes(c) ? variant : undefined });
    const [textEncoder, unet, vaeDecoder, textEncoder2] = await Promise.all(components.map(session)) as [OnnxSession, OnnxSession, OnnxSession, OnnxSession | undefined];
    const vaeEncoder = layout.vaeEncoder ? await session('vae_encoder') : undefined;
    const sdxl = textEncoder2 !== undefined;
    const text = textEncoding(dir, 'text_encoder', 'tokenizer', textEncoder, sdxl);
    const text2 = textEncoder2 && textEncoding(dir, 'text_encoder_2', 'tokenizer_2', textEncoder2, true);
    return new DiffusionPipeline({ text, text2, unet, vaeDecoder, vaeEncoder, layout });
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
    const pairs = new Map<string, [string, string]>();
    for (const r of requests) {
      pairs.set(textKey(r.prompt, r.prompt2 ?? r.prompt), [r.prompt, r.prompt2 ?? r.prompt]);
      if (this.usesGuidance(r) && !this.#zeroNegative(r)) pairs.set(textKey(r.negativePrompt, r.negativePrompt2 ?? r.negativePrompt), [r.negativePrompt, r.negativePrompt2 ?? r.negativePrompt]);
    }
    const embeddings = await this.#encodeText(pairs);
    const withImage = requests.filter((r) => r.init !== undefined);
    const moments = await this.#encodeImages(withImage.map((r) => ({ request: r, pixels: r.init!.pixels })));
    // An inpainting UNet also sees the masked image (diffusers: the image × (mask < 0.5)).
    const masked = this.info.inpaintingUnet ? await this.#encodeImages(withImage.map((r) => ({ request: r, pixels: maskedPixels(r.init!) }))) : new Map<GenerationRequest, Float32Array>();
    return requests.map((request) => {
      const scheduler = createScheduler(request.scheduler, this.#schedulerConfig, request.steps, request.schedulerConfig);
      const generator = new TorchGenerator(request.seed);
      const f = this.info.vaeScaleFactor;
      const count = this.info.latentChannels * (request.height / f) * (request.width / f);
      const size = this.info.guidanceEmbeddingSize;
      const cond = embeddings.get(textKey(request.prompt, request.prompt2 ?? request.prompt))!;
      const negative = this.#zeroNegative(request)
        ? { hidden: new Float32Array(cond.hidden.length), pooled: cond.pooled && new Float32Array(cond.pooled.length) }
        : embeddings.get(textKey(request.negativePrompt, request.negativePrompt2 ?? request.negativePrompt))!;
      const ids = this.#text2 ? timeIds(request) : null;
      const common = {
        request, scheduler, generator, predictedOriginal: null,
        cond: { ...cond, timeIds: ids?.cond ?? null },
        uncond: this.usesGuidance(request) ? { ...negative, timeIds: ids?.uncond ?? null } : null,
        timestepCond: size === null ? null : guidanceEmbedding(request.guidanceScale, size),
      };
      const init = request.init;
      if (!init) {
        if (this.info.inpaintingUnet) throw new Error('an inpainting UNet needs an image and a mask');
        const sigma = scheduler.initNoiseSigma;
        return { ...common, latents: generator.standardNormal(count).map((x) => x * sigma), firstCall: 0, inpaint: null, unetExtra: null };
      }
      if (this.info.inpaintingUnet) {
        if (!init.mask) throw new Error('an inpainting UNet needs a mask');
        // diffusers' order of draws here: the image's sample only when the start is the noised
        // image (strength below 1), the noise, then the masked image's sample.
        const firstCall = skippedSteps(request.steps, init.strength);
        scheduler.beginAt(firstCall);
        const full = init.strength >= 1;
        const imageLatents = full ? null : this.#latentsOf(moments.get(request)!, generator).map((x) => x * this.#vaeScaling);
        const noise = generator.standardNormal(count);
        const maskedLatents = this.#latentsOf(masked.get(request)!, generator).map((x) => x * this.#vaeScaling);
        const latents = imageLatents ? scheduler.addNoise(imageLatents, noise, firstCall) : noise.map((x) => x * scheduler.initNoiseSigma);
        const mask = latentMask(init.mask, request.width, request.height, f);
        const unetExtra = new Float32Array(mask.length + maskedLatents.length);
        unetExtra.set(mask);
        unetExtra.set(maskedLatents, mask.length);
        return { ...common, latents, firstCall, inpaint: null, unetExtra };
      }
      // diffusers' order of draws: the VAE's sample (when the encoder gives a distribution), then the noise.
      const imageLatents = this.#latentsOf(moments.get(request)!, generator).map((x) => x * this.#vaeScaling);
      const noise = generator.standardNormal(count);
      // diffusers' inpaint pipelines then encode the masked image too (for 9-channel UNets): one more VAE sample from the generator.
      if (init.mask && this.#encoderSamples) generator.standardNormal(count);
      const firstCall = skippedSteps(request.steps, init.strength);
      scheduler.beginAt(firstCall);
      // Inpainting at full strength starts from pure noise, as diffusers does; otherwise from the noised image.
      const latents = init.mask && init.strength >= 1 ? noise.map((x) => x * scheduler.initNoiseSigma) : scheduler.addNoise(imageLatents, noise, firstCall);
      const inpaint = init.mask ? { imageLatents, mask: latentMask(init.mask, request.width, request.height, f), noise } : null;
      return { ...common, latents, firstCall, inpaint, unetExtra: null };
    });
  }

  /** The VAE encoder's output per request's pixels: the latents, or their distribution's mean and log-variance. */
  async #encodeImages(items: readonly { request: GenerationRequest; pixels: Float32Array }[]): Promise<Map<GenerationRequest, Float32Array>> {
    const out = new Map<GenerationRequest, Float32Array>();
    if (items.length === 0) return out;
    const encoder = this.#vaeEncoder;
    if (!encoder) throw new Error('image-to-image needs the layout\'s vae_encoder');
    for (const group of groupBy(items, (item) => `${item.request.width}x${item.request.height}`)) {
      const { width, height } = group[0]!.request;
      const per = 3 * width * height;
      const pixels = new Float32Array(group.length * per);
      group.forEach((item, i) => pixels.set(item.pixels, i * per));
      const input = encoder.inputs[0]!;
      const outputs = await encoder.run({ [input.name]: floatTensor(input.type, pixels, [group.length, 3, height, width]) });
      const encoded = tensorToFloat32(outputs[encoder.outputs[0]?.name ?? '']!);
      const size = encoded.length / group.length;
      group.forEach((item, i) => out.set(item.request, encoded.slice(i * size, (i + 1) * size)));
    }
    return out;
  }

  /** Latents from the encoder's output: as given, or sampled from mean and log-variance (diffusers' latent_dist.sample). */
  #latentsOf(encoded: Float32Array, generator: TorchGenerator): Float32Array {
    if (!this.#encoderSamples) return encoded;
    // optimum's latent_parameters: the mean, then the log-variance (clamped as diffusers does).
    const count = encoded.length / 2;
    const eps = generator.standardNormal(count);
    return Float32Array.from({ length: count }, (_, i) => {
      const logvar = Math.min(20, Math.max(-30, encoded[count + i] ?? 0));
      return (encoded[i] ?? 0) + Math.exp(0.5 * logvar) * (eps[i] ?? 0);
    });
  }

  /** SDXL's force_zeros_for_empty_prompt: with no negative prompt, the unconditional pass gets zeros. */
  #zeroNegative(request: GenerationRequest): boolean {
    return this.#forceZeros && request.negativePrompt === '';
  }

  /** The VAE encoder gives a distribution (optimum's latent_parameters), which diffusers samples with the request's generator. */
  get #encoderSamples(): boolean {
    return this.#vaeEncoder?.outputs[0]?.name === 'latent_parameters';
  }

  /**
   * Encodes every (prompt, prompt_2) pair in one call per text encoder. SDXL: the first prompt
   * through the first encoder, the second through the second; their penultimate hidden states
   * side by side per token, and the second's pooled projection.
   */
  async #encodeText(pairs: ReadonlyMap<string, readonly [string, string]>): Promise<Map<string, Omit<Conditioning, 'timeIds'>>> {
    const keys = [...pairs.keys()];
    const first = await encodeWith(this.#text, keys.map((k) => pairs.get(k)![0]));
    const hidden1 = tensorToFloat32(first[this.#text.hidden]!);
    const text2 = this.#text2;
    if (!text2) {
      const width = hidden1.length / keys.length;
      return new Map(keys.map((k, i) => [k, { hidden: hidden1.slice(i * width, (i + 1) * width), pooled: null }]));
    }
    const second = await encodeWith(text2, keys.map((k) => pairs.get(k)![1]));
    const hidden2 = tensorToFloat32(second[text2.hidden]!);
    const pooled = tensorToFloat32(second.text_embeds ?? second[text2.session.outputs[0]?.name ?? '']!);
    const tokens = this.info.textLength;
    const d1 = hidden1.length / keys.length / tokens;
    const d2 = hidden2.length / keys.length / tokens;
    const p = pooled.length / keys.length;
    return new Map(keys.map((k, i) => {
      const hidden = new Float32Array(tokens * (d1 + d2));
      for (let t = 0; t < tokens; t += 1) {
        const row = i * tokens + t;
        hidden.set(hidden1.subarray(row * d1, (row + 1) * d1), t * (d1 + d2));
        hidden.set(hidden2.subarray(row * d2, (row + 1) * d2), t * (d1 + d2) + d1);
      }
      return [k, { hidden, pooled: pooled.slice(i * p, (i + 1) * p) }];
    }));
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
    const rows: { state: DenoiseState; on: Conditioning; input: Float32Array }[] = [];
    for (const state of group) {
      const input = withExtra(state.scheduler.scaleModelInput(state.latents), state.unetExtra);
      if (state.uncond) rows.push({ state, on: state.uncond, input });
      rows.push({ state, on: state.cond, input });
    }
    const first = group[0]!.request;
    const f = this.info.vaeScaleFactor;
    const dims = [rows.length, this.#unetChannels, first.height / f, first.width / f];
    const sample = new Float32Array(rows.length * rows[0]!.input.length);
    rows.forEach((row, i) => sample.set(row.input, i * row.input.length));
    /** One row per pass, stacked: [rows, …dims]. */
    const stack = (io: IoInfo, pick: (c: Conditioning) => Float32Array | null, dims: number[]): Tensor => {
      const width = dims.reduce((a, b) => a * b, 1);
      const out = new Float32Array(rows.length * width);
      rows.forEach((r, i) => out.set(pick(r.on)!, i * width));
      return floatTensor(io.type, out, [rows.length, ...dims]);
    };
    const hiddenWidth = rows[0]!.on.hidden.length;
    const io = this.#io;
    const timesteps = rows.map((r) => r.state.scheduler.timesteps[r.state.scheduler.stepIndex] ?? 0);
    // Integer timestep inputs truncate, as numpy's astype does in diffusers' ONNX pipeline.
    const timestepValues = io.timestep.type.startsWith('int') ? timesteps.map(Math.trunc) : timesteps;
    const feeds: Record<string, Tensor> = {
      [io.sample.name]: floatTensor(io.sample.type, sample, dims),
      [io.timestep.name]: this.info.scalarTimestep ? makeTensor(io.timestep.type, timestepValues.slice(0, 1), []) : makeTensor(io.timestep.type, timestepValues, [rows.length]),
      [io.hidden.name]: stack(io.hidden, (c) => c.hidden, [this.info.textLength, hiddenWidth / this.info.textLength]),
    };
    if (io.textEmbeds) feeds[io.textEmbeds.name] = stack(io.textEmbeds, (c) => c.pooled, [rows[0]!.on.pooled!.length]);
    if (io.timeIds) feeds[io.timeIds.name] = stack(io.timeIds, (c) => c.timeIds, [6]);
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
        const rescale = state.request.guidanceRescale ?? 0;
        if (rescale > 0) noise = rescaleGuidance(noise, text, rescale);
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
    return this.#sessions().reduce((sum, s) => sum + s.runSeconds, 0);
  }

  #sessions(): OnnxSession[] {
    return [this.#text.session, this.#unet, this.#vaeDecoder, ...(this.#text2 ? [this.#text2.session] : []), ...(this.#vaeEncoder ? [this.#vaeEncoder] : [])];
  }

  async release(): Promise<void> {
    await Promise.all(this.#sessions().map((s) => s.release()));
  }
}

/** An inpainting UNet's input: the scaled latents, then the mask and the masked image's latents (diffusers' torch.cat on channels). */
function withExtra(input: Float32Array, extra: Float32Array | null): Float32Array {
  if (!extra) return input;
  const out = new Float32Array(input.length + extra.length);
  out.set(input);
  out.set(extra, input.length);
  return out;
}

/** The init image where the mask keeps it, 0 (mid-grey) where it repaints: diffusers' image × (mask < 0.5). */
function maskedPixels(init: InitImage): Float32Array {
  const mask = init.mask!;
  const plane = mask.length;
  return init.pixels.map((v, i) => (mask[i % plane]! < 0.5 ? v : 0));
}

/** Sample standard deviation (torch's std, unbiased). */
function std(x: Float32Array): number {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let sq = 0;
  for (const v of x) sq += (v - mean) ** 2;
  return Math.sqrt(sq / (x.length - 1));
}

/**
 * diffusers' rescale_noise_cfg (Lin et al., "Common Diffusion Noise Schedules and Sample Steps
 * are Flawed", §3.4): the guided prediction scaled to the text prediction's standard deviation,
 * mixed with the unscaled one by `rescale`.
 */
function rescaleGuidance(guided: Float32Array, text: Float32Array, rescale: number): Float32Array {
  const factor = std(text) / std(guided);
  return guided.map((x) => rescale * (x * factor) + (1 - rescale) * x);
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
