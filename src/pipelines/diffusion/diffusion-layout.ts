// What a diffusers/optimum layout's JSON configs say about the requests it can serve, read
// without loading a session: admission in the API process checks requests against it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EaselError } from '../../errors/easel-error.js';
import { readJsonConfig } from '../json-config.js';
import { parseSchedulerConfig, schedulerName, type SchedulerConfig, type SchedulerName } from './schedulers/index.js';

export interface DiffusionLayout {
  readonly vaeScaleFactor: number;
  /** Each UNet down block but the last halves the latent: width and height must be multiples of vaeScaleFactor × unetFactor. */
  readonly unetFactor: number;
  readonly defaultSize: number;
  readonly defaultScheduler: SchedulerName;
  /** The keys of the model's scheduler_config.json that Easel reads (the scheduler class's defaults fill the rest). */
  readonly schedulerConfig: Partial<SchedulerConfig>;
  /** The VAE decoder's config.json (scaling factor, latent channels). */
  readonly vaeConfig: Readonly<Record<string, unknown>>;
  /** It ships a VAE encoder: image-to-image and inpainting. */
  readonly vaeEncoder: boolean;
  /**
   * SDXL: a second text encoder (with projection). The UNet attends to both encoders'
   * penultimate hidden states side by side and takes the second's pooled output as
   * `text_embeds`, beside the micro-conditioning `time_ids`; requests may send prompt_2.
   */
  readonly dualTextEncoder: boolean;
  /** model_index.json's force_zeros_for_empty_prompt: no negative prompt means zero embeddings, not the empty prompt's. */
  readonly forceZerosForEmptyPrompt: boolean;
  /** The VAE's latent channels (4 unless its config says otherwise). */
  readonly latentChannels: number;
  /** unet/config.json's in_channels: 9 for an inpainting UNet (latents, mask, masked image's latents). */
  readonly unetInChannels: number | undefined;
  /** The UNet takes the latents, the mask and the masked image's latents: 2 × latent channels + 1 inputs. */
  readonly inpaintingUnet: boolean;
  /** The VAE's force_upcast (SDXL's overflows in half precision): its graphs run in float32 even when a variant is asked for. */
  readonly vaeForceUpcast: boolean;
}

export function readDiffusionLayout(dir: string): DiffusionLayout {
  const index = readJsonConfig(path.join(dir, 'model_index.json'));
  const has = (component: string): boolean => existsSync(path.join(dir, component, 'model.onnx'));
  // An SDXL refiner's time_ids carry an aesthetic score in place of the target size, and it has
  // only the second text encoder: refused by name rather than run wrong.
  if (index.requires_aesthetics_score === true || (has('text_encoder_2') && !has('text_encoder'))) {
    throw new EaselError('EASEL_MODEL_INVALID', `${path.basename(dir)}: this is an SDXL refiner layout (requires_aesthetics_score, text_encoder_2 only); Easel runs SDXL base-style layouts (text_encoder and text_encoder_2), not refiners`);
  }
  const vae = readJsonConfig(path.join(dir, 'vae_decoder', 'config.json'));
  const unet = readJsonConfig(path.join(dir, 'unet', 'config.json'));
  const scheduler = readJsonConfig(path.join(dir, 'scheduler', 'scheduler_config.json'));
  const vaeBlocks = vae.block_out_channels;
  const vaeScaleFactor = Array.isArray(vaeBlocks) ? 2 ** (vaeBlocks.length - 1) : 8;
  const unetBlocks = unet.down_block_types ?? unet.block_out_channels;
  const unetFactor = Array.isArray(unetBlocks) && unetBlocks.length > 0 ? 2 ** (unetBlocks.length - 1) : 1;
  const sampleSize = typeof unet.sample_size === 'number' ? unet.sample_size : 64;
  const latentChannels = typeof vae.latent_channels === 'number' ? vae.latent_channels : 4;
  const unetInChannels = typeof unet.in_channels === 'number' ? unet.in_channels : undefined;
  const className = typeof scheduler._class_name === 'string' ? scheduler._class_name : 'PNDMScheduler';
  return {
    vaeScaleFactor,
    unetFactor,
    defaultSize: sampleSize * vaeScaleFactor,
    defaultScheduler: schedulerName(className) ?? 'pndm',
    schedulerConfig: parseSchedulerConfig(scheduler),
    vaeConfig: vae,
    vaeEncoder: has('vae_encoder'),
    dualTextEncoder: has('text_encoder_2'),
    forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt === true,
    vaeForceUpcast: vae.force_upcast === true,
    latentChannels,
    unetInChannels,
    inpaintingUnet: unetInChannels === 2 * latentChannels + 1,
  };
}
