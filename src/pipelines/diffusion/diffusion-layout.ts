// What a diffusers/optimum layout's JSON configs say about the requests it can serve, read
// without loading a session: admission in the API process checks requests against it.
import { existsSync } from 'node:fs';
import path from 'node:path';
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
}

export function readDiffusionLayout(dir: string): DiffusionLayout {
  const vae = readJsonConfig(path.join(dir, 'vae_decoder', 'config.json'));
  const unet = readJsonConfig(path.join(dir, 'unet', 'config.json'));
  const scheduler = readJsonConfig(path.join(dir, 'scheduler', 'scheduler_config.json'));
  const vaeBlocks = vae.block_out_channels;
  const vaeScaleFactor = Array.isArray(vaeBlocks) ? 2 ** (vaeBlocks.length - 1) : 8;
  const unetBlocks = unet.down_block_types ?? unet.block_out_channels;
  const unetFactor = Array.isArray(unetBlocks) && unetBlocks.length > 0 ? 2 ** (unetBlocks.length - 1) : 1;
  const sampleSize = typeof unet.sample_size === 'number' ? unet.sample_size : 64;
  const className = typeof scheduler._class_name === 'string' ? scheduler._class_name : 'PNDMScheduler';
  return {
    vaeScaleFactor,
    unetFactor,
    defaultSize: sampleSize * vaeScaleFactor,
    defaultScheduler: schedulerName(className) ?? 'pndm',
    schedulerConfig: parseSchedulerConfig(scheduler),
    vaeConfig: vae,
    vaeEncoder: existsSync(path.join(dir, 'vae_encoder', 'model.onnx')),
  };
}
