// A server of both demo chat models (tiny-llama, tiny-lm) and the official OpenAI client pointed at it.
import path from 'node:path';
import OpenAI from 'openai';
import { ROOT, startEasel, waitHealthy, type EaselProcess } from './easel-process.js';

export async function serveChatModels(): Promise<{ easel: EaselProcess; client: OpenAI }> {
  const easel = await startEasel(['--models', ['tiny-llama', 'tiny-lm'].map((m) => `${m}=${path.join(ROOT, 'models', m)}`).join(',')]);
  await waitHealthy(easel, 60_000);
  return { easel, client: new OpenAI({ baseURL: `${easel.inference}/v1`, apiKey: 'unused', maxRetries: 0 }) };
}
