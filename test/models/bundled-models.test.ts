// The bundled demo models: every graph loads in onnxruntime-node with the tensor names, dtypes
// and dynamic axes of real optimum exports; every card's sha256 matches its files; the UNet
// gives each sample its own timestep; everything fits the 55 MB budget.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fromTypedArray, OnnxSession, type IoInfo } from '../../src/runtime/onnx-runtime.js';
import { ROOT } from '../helpers/easel-process.js';

const MODELS = path.join(ROOT, 'models');
const CPU = { executionProvider: 'cpu', graphOptimizationLevel: 'all', intraOpThreads: 1, interOpThreads: 1 } as const;

function walk(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(path.join(dir, d.name), base) : [path.relative(base, path.join(dir, d.name))]));
}

/** name → [type, shape] where shape uses 'dyn' for a symbolic axis. */
type Expect = Record<string, [string, (number | 'dyn')[]]>;

function check(io: IoInfo[], want: Expect): void {
  expect(io.map((i) => i.name).sort()).toEqual(Object.keys(want).sort());
  for (const i of io) {
    const [type, shape] = want[i.name]!;
    expect(i.type, i.name).toBe(type);
    expect(i.shape.map((d) => (typeof d === 'string' ? 'dyn' : d)), i.name).toEqual(shape);
  }
}

describe('bundled models', () => {
  it('fit in 55 MB', () => {
    // 25 MB until tiny-sdxl (27 MB: an SDXL layout with two text encoders and a VAE encoder).
    const bytes = walk(MODELS).reduce((n, f) => n + statSync(path.join(MODELS, f)).size, 0);
    expect(bytes).toBeLessThanOrEqual(55 * 1024 * 1024);
  });

  it.each(['tiny-sd', 'tiny-sdxl', 'tiny-lm', 'tiny-lm-draft', 'tiny-llama'])('%s: the card lists the sha256 of every file, and they match', (name) => {
    const dir = path.join(MODELS, name);
    const card = readFileSync(path.join(dir, 'README.md'), 'utf8');
    const listed = new Map([...card.matchAll(/^\| `([^`]+)` \| (\d+) \| `([0-9a-f]{64})` \|$/gm)].map((m) => [m[1]!, m[3]!]));
    const files = walk(dir).filter((f) => f !== 'README.md' && f !== 'easel.yaml').sort();
    expect([...listed.keys()].sort()).toEqual(files);
    for (const f of files) expect(createHash('sha256').update(readFileSync(path.join(dir, f))).digest('hex'), f).toBe(listed.get(f));
  });

  it('tiny-sd has the optimum Stable Diffusion layout and tensor names', async () => {
    const dir = path.join(MODELS, 'tiny-sd');
    const index = JSON.parse(readFileSync(path.join(dir, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(index)).toEqual(expect.arrayContaining(['scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae_decoder', 'vae_encoder']));
    for (const f of ['tokenizer/vocab.json', 'tokenizer/merges.txt', 'tokenizer/tokenizer_config.json', 'tokenizer/special_tokens_map.json', 'scheduler/scheduler_config.json']) {
      expect(statSync(path.join(dir, f)).size, f).toBeGreaterThan(0);
    }
    const vocab = JSON.parse(readFileSync(path.join(dir, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    expect(vocab['<|endoftext|>']).toBe(Math.max(...Object.values(vocab)));
    const sched = JSON.parse(readFileSync(path.join(dir, 'scheduler/scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    expect(sched).toMatchObject({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000, prediction_type: 'epsilon' });
    const vae = JSON.parse(readFileSync(path.join(dir, 'vae_decoder/config.json'), 'utf8')) as { latent_channels: number; scaling_factor: number };
    expect(vae.latent_channels).toBe(4);
    expect(vae.scaling_factor).toBeGreaterThan(0);

    const te = await OnnxSession.create(path.join(dir, 'text_encoder/model.onnx'), CPU);
    check(te.inputs, { input_ids: ['int32', ['dyn', 'dyn']] });
    check(te.outputs, { last_hidden_state: ['float32', ['dyn', 'dyn', 128]], pooler_output: ['float32', ['dyn', 'dyn']] });
    const unet = await OnnxSession.create(path.join(dir, 'unet/model.onnx'), CPU);
    check(unet.inputs, { sample: ['float32', ['dyn', 4, 'dyn', 'dyn']], timestep: ['float32', ['dyn']], encoder_hidden_states: ['float32', ['dyn', 'dyn', 128]] });
    check(unet.outputs, { out_sample: ['float32', ['dyn', 4, 'dyn', 'dyn']] });
    const enc = await OnnxSession.create(path.join(dir, 'vae_encoder/model.onnx'), CPU);
    check(enc.inputs, { sample: ['float32', ['dyn', 3, 'dyn', 'dyn']] });
    check(enc.outputs, { latent_sample: ['float32', ['dyn', 4, 'dyn', 'dyn']] });
    const dec = await OnnxSession.create(path.join(dir, 'vae_decoder/model.onnx'), CPU);
    check(dec.inputs, { latent_sample: ['float32', ['dyn', 4, 'dyn', 'dyn']] });
    check(dec.outputs, { sample: ['float32', ['dyn', 3, 'dyn', 'dyn']] });
    // Dynamic height and width: a 48x32 image decodes from 6x4 latents.
    const out = await dec.run({ latent_sample: fromTypedArray('float32', new Float32Array(4 * 6 * 4), [1, 4, 6, 4]) });
    expect(out.sample!.dims).toEqual([1, 3, 48, 32]);
    await Promise.all([te, unet, enc, dec].map((s) => s.release()));
  });

  it('tiny-sdxl has optimum\'s SDXL layout and tensor names', async () => {
    const dir = path.join(MODELS, 'tiny-sdxl');
    const index = JSON.parse(readFileSync(path.join(dir, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    expect(index).toMatchObject({ _class_name: 'StableDiffusionXLPipeline', force_zeros_for_empty_prompt: true });
    expect(Object.keys(index)).toEqual(expect.arrayContaining(['scheduler', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2', 'unet', 'vae']));
    const pad = (tok: string): unknown => (JSON.parse(readFileSync(path.join(dir, tok, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>).pad_token;
    expect([pad('tokenizer'), pad('tokenizer_2')]).toEqual(['<|endoftext|>', '!']);
    const unetConfig = JSON.parse(readFileSync(path.join(dir, 'unet/config.json'), 'utf8')) as Record<string, unknown>;
    expect(unetConfig).toMatchObject({ addition_embed_type: 'text_time', cross_attention_dim: 224 });
    expect(JSON.parse(readFileSync(path.join(dir, 'vae_decoder/config.json'), 'utf8'))).toMatchObject({ force_upcast: true });

    const hidden = (width: number): Record<string, [string, (number | 'dyn')[]]> => Object.fromEntries([0, 1, 2, 3].map((i) => [`hidden_states.${i}`, ['float32', ['dyn', 'dyn', width]]]));
    const te = await OnnxSession.create(path.join(dir, 'text_encoder/model.onnx'), CPU);
    check(te.inputs, { input_ids: ['int32', ['dyn', 'dyn']] });
    check(te.outputs, { last_hidden_state: ['float32', ['dyn', 'dyn', 128]], pooler_output: ['float32', ['dyn', 128]], ...hidden(128) });
    const te2 = await OnnxSession.create(path.join(dir, 'text_encoder_2/model.onnx'), CPU);
    check(te2.inputs, { input_ids: ['int32', ['dyn', 'dyn']] });
    check(te2.outputs, { text_embeds: ['float32', ['dyn', 64]], last_hidden_state: ['float32', ['dyn', 'dyn', 96]], ...hidden(96) });
    const unet = await OnnxSession.create(path.join(dir, 'unet/model.onnx'), CPU);
    check(unet.inputs, {
      sample: ['float32', ['dyn', 4, 'dyn', 'dyn']], timestep: ['float32', ['dyn']], encoder_hidden_states: ['float32', ['dyn', 'dyn', 224]],
      text_embeds: ['float32', ['dyn', 64]], time_ids: ['float32', ['dyn', 6]],
    });
    check(unet.outputs, { out_sample: ['float32', ['dyn', 4, 'dyn', 'dyn']] });
    const enc = await OnnxSession.create(path.join(dir, 'vae_encoder/model.onnx'), CPU);
    check(enc.outputs, { latent_parameters: ['float32', ['dyn', 8, 'dyn', 'dyn']] });
    await Promise.all([te, te2, unet, enc].map((s) => s.release()));
  });

  it('tiny-sd UNet: a batch at timesteps 999 and 1 equals each sample run alone', async () => {
    const unet = await OnnxSession.create(path.join(MODELS, 'tiny-sd/unet/model.onnx'), CPU);
    let seed = 1;
    const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1);
    const sample = rand(2 * 4 * 8 * 8);
    const hidden = rand(2 * 32 * 128);
    const both = await unet.run({
      sample: fromTypedArray('float32', sample, [2, 4, 8, 8]),
      timestep: fromTypedArray('float32', Float32Array.from([999, 1]), [2]),
      encoder_hidden_states: fromTypedArray('float32', hidden, [2, 32, 128]),
    });
    let maxDiff = 0;
    for (const [i, t] of [999, 1].entries()) {
      const alone = await unet.run({
        sample: fromTypedArray('float32', sample.slice(i * 256, (i + 1) * 256), [1, 4, 8, 8]),
        timestep: fromTypedArray('float32', Float32Array.from([t]), [1]),
        encoder_hidden_states: fromTypedArray('float32', hidden.slice(i * 4096, (i + 1) * 4096), [1, 32, 128]),
      });
      const a = alone.out_sample!.data as Float32Array;
      const b = (both.out_sample!.data as Float32Array).subarray(i * 256, (i + 1) * 256);
      for (let j = 0; j < a.length; j++) maxDiff = Math.max(maxDiff, Math.abs(a[j]! - b[j]!));
    }
    expect(maxDiff).toBeLessThan(1e-4);
    // and the two timesteps really differ (the check would be empty otherwise)
    const d0 = (both.out_sample!.data as Float32Array).subarray(0, 256);
    const d1 = (both.out_sample!.data as Float32Array).subarray(256, 512);
    expect(d0.some((v, j) => Math.abs(v - d1[j]!) > 1e-3)).toBe(true);
    await unet.release();
  });

  // [name, layers, width, query heads, key/value heads]: tiny-llama is Llama's architecture, with grouped-query attention.
  it.each([['tiny-lm', 4, 128, 4, 4], ['tiny-lm-draft', 1, 64, 2, 2], ['tiny-llama', 4, 128, 4, 2]] as const)('%s has the transformers.js/optimum decoder layout with a KV cache', async (name, layers, dim, heads, kvHeads) => {
    const dir = path.join(MODELS, name);
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, number>;
    // GPT-2's config names, or Llama's (num_key_value_heads).
    expect([config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads ?? config.num_attention_heads]).toEqual([layers, dim, heads, kvHeads]);
    const tokConfig = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
    expect(tokConfig.chat_template).toContain('<|im_start|>');
    expect(statSync(path.join(dir, 'tokenizer.json')).size).toBeGreaterThan(0);
    expect(statSync(path.join(dir, 'generation_config.json')).size).toBeGreaterThan(0);
    const s = await OnnxSession.create(path.join(dir, 'onnx/model.onnx'), CPU);
    const hd = dim / heads;
    const inputs: Expect = { input_ids: ['int64', ['dyn', 'dyn']], attention_mask: ['int64', ['dyn', 'dyn']], position_ids: ['int64', ['dyn', 'dyn']] };
    const outputs: Expect = { logits: ['float32', ['dyn', 'dyn', config.vocab_size!]] };
    for (let i = 0; i < layers; i++) {
      for (const kv of ['key', 'value']) {
        inputs[`past_key_values.${i}.${kv}`] = ['float32', ['dyn', kvHeads, 'dyn', hd]];
        outputs[`present.${i}.${kv}`] = ['float32', ['dyn', kvHeads, 'dyn', hd]];
      }
    }
    check(s.inputs, inputs);
    check(s.outputs, outputs);
    // First step with an empty cache: 3 tokens in, a 3-long cache out.
    const feeds: Record<string, ReturnType<typeof fromTypedArray>> = {
      input_ids: fromTypedArray('int64', BigInt64Array.from([5n, 6n, 7n]), [1, 3]),
      attention_mask: fromTypedArray('int64', BigInt64Array.from([1n, 1n, 1n]), [1, 3]),
      position_ids: fromTypedArray('int64', BigInt64Array.from([0n, 1n, 2n]), [1, 3]),
    };
    for (let i = 0; i < layers; i++) for (const kv of ['key', 'value']) feeds[`past_key_values.${i}.${kv}`] = fromTypedArray('float32', new Float32Array(0), [1, kvHeads, 0, hd]);
    const out = await s.run(feeds);
    expect(out.logits!.dims).toEqual([1, 3, config.vocab_size]);
    expect(out['present.0.key']!.dims).toEqual([1, kvHeads, 3, hd]);
    await s.release();
  });
});
