// Admission of text-generation requests with tiny-lm's tokenizer and limits: defaults, the
// context limit, sampling ranges, chat messages, and idempotence (a parsed request parses to itself).
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readModelSpec } from '../models/model-spec.js';
import { parseTextGeneration, textGenerationRules } from './text-generation-request.js';

const TINY_LM = path.resolve(import.meta.dirname, '../../models/tiny-lm');
const rules = textGenerationRules(readModelSpec(TINY_LM), TINY_LM);

describe('parseTextGeneration', () => {
  it('fills defaults from easel.yaml and generation_config.json, and parses its own output to itself', () => {
    const p = parseTextGeneration({ prompt: 'Once upon a time' }, rules);
    expect(p).toMatchObject({ max_new_tokens: 64, temperature: 0, top_p: 1, stream: false });
    expect(p.prompt_tokens).toEqual(rules.tokenizer.encode('Once upon a time'));
    expect(parseTextGeneration({ ...p }, rules)).toEqual(p);
  });

  it('renders chat messages through the chat template', () => {
    const p = parseTextGeneration({ messages: [{ role: 'user', content: 'Hi' }] }, rules);
    expect(rules.tokenizer.decode(p.prompt_tokens)).toBe('user\nHi\nassistant\n');
    expect(p.prompt_tokens).toEqual(rules.tokenizer.encode('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n', true, true));
  });

  it('a Llama tokenizer: one <s> before a prompt, and one before a chat (the template writes it, encoding adds none)', () => {
    const dir = path.resolve(import.meta.dirname, '../../models/tiny-llama');
    const llama = textGenerationRules(readModelSpec(dir), dir);
    const bos = 1;
    const prompt = parseTextGeneration({ prompt: 'Once upon a time' }, llama).prompt_tokens;
    expect(prompt[0]).toBe(bos);
    expect(llama.tokenizer.decode(prompt)).toBe('Once upon a time');
    const chat = parseTextGeneration({ messages: [{ role: 'user', content: 'Hi' }] }, llama).prompt_tokens;
    expect(chat.filter((t) => t === bos)).toEqual([bos]);
    expect(chat[0]).toBe(bos);
  });

  it('keeps prompt + tokens within the context: a default gives way, a request\'s own is a 400', () => {
    const long = 'tom '.repeat(120);
    const n = rules.tokenizer.encode(long).length;
    expect(n).toBeLessThan(256);
    expect(parseTextGeneration({ prompt: long }, rules).max_new_tokens).toBe(Math.min(64, 256 - n));
    expect(() => parseTextGeneration({ prompt: long, max_tokens: 256 - n + 1 }, rules)).toThrow(/maximum context length is 256 tokens\. However, you requested \d+ tokens \(\d+ in the prompt, \d+ in max_tokens\)/);
    expect(() => parseTextGeneration({ prompt: 'tom '.repeat(400) }, rules)).toThrow(/maximum context length is 256 tokens/);
  });

  it('names the field that is out of range or unknown', () => {
    for (const [input, field] of [
      [{ prompt: 'x', temperature: 3 }, 'temperature'],
      [{ prompt: 'x', top_p: 0 }, 'top_p'],
      [{ prompt: 'x', logit_bias: { '99999': 1 } }, 'logit_bias'],
      [{ prompt: 'x', stop: ['a', ''] }, 'stop'],
      [{ prompt: 'x', constructor: 1 }, 'constructor'],
      [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
      [{}, 'prompt'],
    ] as const) {
      expect(() => parseTextGeneration(input as Record<string, unknown>, rules), JSON.stringify(input)).toThrow(expect.objectContaining({ field }));
    }
  });
});
