import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readDiffusionLayout } from './diffusion-layout.js';

describe('the diffusion layout as read from its JSON', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  function layout(files: Record<string, unknown>): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'easel-layout-'));
    dirs.push(dir);
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      writeFileSync(path.join(dir, file), typeof content === 'string' ? content : JSON.stringify(content));
    }
    return dir;
  }
  const sdxl = {
    'model_index.json': { _class_name: 'StableDiffusionXLPipeline', force_zeros_for_empty_prompt: true },
    'text_encoder/model.onnx': '',
    'text_encoder_2/model.onnx': '',
    'vae_decoder/config.json': { block_out_channels: [128, 256, 512, 512], scaling_factor: 0.13025, force_upcast: true },
  };

  it('reads SDXL\'s second encoder, force_zeros_for_empty_prompt and the VAE\'s force_upcast', () => {
    expect(readDiffusionLayout(layout(sdxl))).toMatchObject({ dualTextEncoder: true, forceZerosForEmptyPrompt: true, vaeForceUpcast: true, vaeScaleFactor: 8 });
    expect(readDiffusionLayout(layout({ 'text_encoder/model.onnx': '' }))).toMatchObject({ dualTextEncoder: false, forceZerosForEmptyPrompt: false, vaeForceUpcast: false });
  });

  it('refuses an SDXL refiner by name: its time_ids carry an aesthetic score', () => {
    const refiner = { ...sdxl, 'model_index.json': { _class_name: 'StableDiffusionXLImg2ImgPipeline', requires_aesthetics_score: true } };
    expect(() => readDiffusionLayout(layout(refiner))).toThrow(expect.objectContaining({ code: 'EASEL_MODEL_INVALID', message: expect.stringMatching(/refiner/) }));
    const secondOnly = { 'text_encoder_2/model.onnx': '' };
    expect(() => readDiffusionLayout(layout(secondOnly))).toThrow(/refiner/);
  });
});
