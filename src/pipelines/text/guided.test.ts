// Guided decoding in the text pipeline (xgrammar): every greedy answer follows its grammar (a
// JSON schema validated by Ajv, a regular expression, a choice, an EBNF grammar); a batch that
// mixes guided and free sequences gives each the tokens it gets alone; speculative decoding with a
// grammar keeps exactly the tokens of plain guided decoding; a resumed guided run goes on as the
// uninterrupted one did.
import path from 'node:path';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPU, generate, GREEDY, PROMPTS } from '../../../test/helpers/text-prompts.js';
import { Guides, type GuideMatcher, type GuideSpec } from './guided.js';
import { TextPipeline, type TextGenerationRequest } from './text-pipeline.js';

const MODELS = path.resolve(import.meta.dirname, '../../../models');

const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 120 }, pets: { type: 'array', items: { enum: ['cat', 'dog', 'bird'] }, maxItems: 3 } },
  required: ['name', 'age', 'pets'],
  additionalProperties: false,
};
const GUIDES: GuideSpec[] = [
  { type: 'json_schema', schema: PERSON, field: 'guided_json' },
  { type: 'json_schema', schema: { type: 'object' }, field: 'response_format' },
  { type: 'regex', pattern: '[A-Z][a-z]{2,8} (is|was) [0-9]{1,2}\\.', field: 'guided_regex' },
  { type: 'choice', choices: ['red', 'green', 'blue'], field: 'guided_choice' },
  { type: 'grammar', grammar: 'root ::= "The " animal " says " sound "."\nanimal ::= "cat" | "dog" | "cow"\nsound ::= [a-z]{1,8}', field: 'guided_grammar' },
];

/** Whether a finished text follows its guide. */
function follows(spec: GuideSpec, text: string): boolean {
  switch (spec.type) {
    case 'json_schema':
      return new Ajv().validate(spec.schema as object, JSON.parse(text));
    case 'regex':
      return new RegExp(`^(?:${spec.pattern})$`).test(text);
    case 'choice':
      return spec.choices.includes(text);
    case 'grammar':
      return /^The (cat|dog|cow) says [a-z]+\.$/.test(text);
    case 'tools':
      return false;
  }
}

describe.each(['tiny-llama', 'tiny-lm'])('guided decoding on %s', (name) => {
  let pipeline: TextPipeline;
  let guides: Guides;
  const matchers: GuideMatcher[] = [];
  beforeAll(async () => {
    pipeline = await TextPipeline.load(path.join(MODELS, name), CPU);
    guides = await Guides.load(path.join(MODELS, name), pipeline.info.vocabSize, pipeline.info.eosTokenIds);
  });
  afterAll(async () => {
    for (const m of matchers) m.dispose();
    await pipeline.release();
  });
  const guided = async (spec: GuideSpec): Promise<GuideMatcher> => {
    const m = await guides.matcher(spec);
    matchers.push(m);
    return m;
  };
  const request = (prompt: string, maxNewTokens: number, guide?: GuideMatcher, resumeTokens?: number[]): TextGenerationRequest => ({
    promptTokens: pipeline.tokenizer.encode(prompt, true, true), maxNewTokens, sampling: GREEDY, seed: 0, stopTokenIds: [], stop: [], guide, resumeTokens,
  });
  const text = (tokens: number[]): string => pipeline.tokenizer.decode(tokens);

  it('greedy answers follow a JSON schema, any object, a regular expression, a choice and a grammar on ten prompts', async () => {
    for (const spec of GUIDES) {
      let stopped = 0;
      for (const prompt of PROMPTS) {
        const [out] = await pipeline.finish(await run([request(prompt, 200, await guided(spec))]));
        const what = `${spec.type} (${spec.field}) on ${JSON.stringify(prompt)}: ${out!.text}`;
        // An open object (json_object) may go on until the length runs out: a tiny model has many keys to say.
        if (out!.finishReason === 'length' && spec.field === 'response_format') continue;
        expect(out!.finishReason, what).toBe('stop');
        expect(follows(spec, out!.text), what).toBe(true);
        stopped++;
      }
      expect(stopped, `${spec.field}: answers that ended`).toBeGreaterThan(0);
    }
  });

  it('finishing by length leaves a prefix of the grammar (the JSON cut short)', async () => {
    const [out] = await pipeline.finish(await run([request(PROMPTS[0]!, 10, await guided(GUIDES[0]!))]));
    expect(out!.finishReason).toBe('length');
    // A prefix of {"name":"…","age":N}: cut inside the name, after it inside ,"age":, or in the number.
    const [, afterName] = /^\{"name":"[^"]*"(.*)$/.exec(out!.text) ?? [];
    const prefix = afterName === undefined ? /^\{"name":("[^"]*)?$/.test(out!.text) : ',"age":'.startsWith(afterName) || /^,"age":[0-9]+$/.test(afterName);
    expect(prefix, out!.text).toBe(true);
  });

  it('a batch mixing guided and free sequences gives each the tokens it gets alone', async () => {
    const specs = PROMPTS.map((_, i) => (i % 3 === 2 ? undefined : GUIDES[i % GUIDES.length]!));
    const alone: number[][] = [];
    for (const [i, p] of PROMPTS.entries()) alone.push((await generate(pipeline, [request(p, 40, specs[i] && (await guided(specs[i])))]))[0]!);
    const together = await generate(pipeline, await Promise.all(PROMPTS.map(async (p, i) => request(p, 40, specs[i] && (await guided(specs[i]))))));
    expect(together).toEqual(alone);
    // The guides changed what the free model would say.
    const free = await generate(pipeline, PROMPTS.map((p) => request(p, 40)));
    expect(free.filter((t, i) => specs[i] !== undefined && text(t) !== text(together[i]!)).length).toBeGreaterThan(3);
  });

  it('a resumed guided run goes on exactly as the uninterrupted one', async () => {
    const spec = GUIDES[0]!;
    const [whole] = await generate(pipeline, [request(PROMPTS[2]!, 60, await guided(spec))]);
    const cut = Math.floor(whole!.length / 2);
    const [rest] = await generate(pipeline, [request(PROMPTS[2]!, 60, await guided(spec), whole!.slice(0, cut))]);
    expect(rest).toEqual(whole);
  });

  async function run(requests: TextGenerationRequest[]) {
    const states = await pipeline.begin(requests);
    while (states.some((s) => !pipeline.isFinished(s))) await pipeline.step(states);
    return states;
  }
});

describe('guided speculative decoding (tiny-lm, draft tiny-lm-draft)', () => {
  it('keeps exactly the tokens of plain guided decoding, alone and in a batch, for k = 1, 4 and adaptive', async () => {
    const dir = path.join(MODELS, 'tiny-lm');
    const plain = await TextPipeline.load(dir, CPU);
    const guides = await Guides.load(dir, plain.info.vocabSize, plain.info.eosTokenIds);
    const request = async (prompt: string, i: number): Promise<TextGenerationRequest> => ({
      promptTokens: plain.tokenizer.encode(prompt, true, true), maxNewTokens: 48, sampling: GREEDY, seed: 0, stopTokenIds: [], stop: [],
      guide: i % 4 === 3 ? undefined : await guides.matcher(GUIDES[i % GUIDES.length]!),
    });
    const expected = await generate(plain, await Promise.all(PROMPTS.map(request)));
    for (const [k, adaptive] of [[1, false], [4, false], [2, true]] as const) {
      const speculative = await TextPipeline.load(dir, CPU, { draftDir: path.join(MODELS, 'tiny-lm-draft'), k, adaptive });
      for (const [i, p] of PROMPTS.entries()) expect((await generate(speculative, [await request(p, i)]))[0], `k=${k} alone: ${p}`).toEqual(expected[i]);
      expect(await generate(speculative, await Promise.all(PROMPTS.map(request))), `k=${k} in a batch`).toEqual(expected);
      // The draft's proposals were kept (or the test would not be testing rollback).
      expect(speculative.takeCounts().accepted).toBeGreaterThan(0);
      await speculative.release();
    }
    await plain.release();
  });
});
