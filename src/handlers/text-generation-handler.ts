// The `text-generation` handler (the job of TorchServe's GPT-Fast handler): a prompt or chat
// messages in, text out — plain text by default, JSON with the finish reason, token counts and
// log-probabilities when asked (Accept: application/json). It declares the decoder's step API;
// the worker's step loop (src/scheduling) runs every active sequence in one decoder call per
// step, so a request joins at the next step and leaves as soon as it is done or cancelled.
import { isEaselError, type EaselError } from '../errors/easel-error.js';
import { Guides, type GuideMatcher } from '../pipelines/text/guided.js';
import { TextPipeline, type Sequence, type TextGenerationRequest, type TextOutput } from '../pipelines/text/text-pipeline.js';
import type { TokenChoice } from '../pipelines/text/sampling.js';
import type { TextTokenizer } from '../pipelines/text/text-tokenizer.js';
import type { TokenLogprob } from '../models/model-control.js';
import { jsonResult, type Handler, type HandlerContext, type HandlerOutcome, type HandlerResult, type InferenceRequest, type RequestContext, type StepModel, type StepRunner } from './handler.js';
import { extractToolCalls } from './tool-calls.js';
import { checkDraft, parseTextGeneration, textGenerationRules, type TextGenerationParameters, type TextGenerationRules } from './text-generation-request.js';

/** The decoder's step API: begin prefills, a step is one decoder call over all, finish hands back the text. */
export function textSteps(pipeline: TextPipeline): StepModel<TextGenerationRequest, Sequence, TextOutput> {
  // Sequences finished since the last turn's report, by why (vLLM's request_success_total{finished_reason}).
  const finished = { finished_stop: 0, finished_length: 0 };
  return {
    begin: (requests) => pipeline.begin(requests),
    step: (states) => pipeline.step(states),
    isFinished: (s) => pipeline.isFinished(s),
    finish: async (states) => {
      const outputs = await pipeline.finish(states);
      for (const o of outputs) finished[`finished_${o.finishReason}`] += 1;
      return outputs;
    },
    // Every sequence can share a decoder call.
    group: () => '',
    progress: (s) => ({ step: s.generated.length, total: s.request.maxNewTokens }),
    length: (r) => r.maxNewTokens,
    memoryBytes: () => pipeline.cacheBytes(),
    memoryFor: (r) => pipeline.cacheBytesPerPosition() * (r.promptTokens.length + r.maxNewTokens),
    stages: { begin: 'prefill', step: 'decode', finish: 'finish' },
    counters: () => {
      const counts = { ...(pipeline.speculative ? pipeline.takeCounts() : {}), ...pipeline.takePrefixCounts(), ...finished };
      Object.assign(finished, { finished_stop: 0, finished_length: 0 });
      return counts;
    },
  };
}

/** A chosen token's score as the wire carries it: its text, id, log-probability and alternatives. */
function describeChoice(tokenizer: TextTokenizer, c: TokenChoice): TokenLogprob {
  return {
    token: tokenizer.tokenText(c.token), token_id: c.token, logprob: c.logprob,
    top_logprobs: c.top.map((t) => ({ token: tokenizer.tokenText(t.token), token_id: t.token, logprob: t.logprob })),
  };
}

export function generationRequest(p: TextGenerationParameters, guide?: GuideMatcher): TextGenerationRequest {
  return {
    guide,
    promptTokens: p.prompt_tokens,
    maxNewTokens: p.max_new_tokens,
    seed: p.seed,
    stop: p.stop,
    stopTokenIds: p.stop_token_ids,
    minTokens: p.min_tokens,
    ignoreEos: p.ignore_eos,
    promptLogprobs: p.prompt_logprobs,
    resumeTokens: p.resume_tokens,
    sampling: {
      temperature: p.temperature, topK: p.top_k, topP: p.top_p, minP: p.min_p, repetitionPenalty: p.repetition_penalty,
      presencePenalty: p.presence_penalty, frequencyPenalty: p.frequency_penalty, logitBias: new Map(p.logit_bias),
      logprobs: p.logprobs, topLogprobs: p.top_logprobs,
    },
  };
}

interface Run {
  readonly params: TextGenerationParameters;
  readonly accept: string | undefined;
}

type Output = { output: TextOutput; run: Run } | EaselError;

export class TextGenerationHandler implements Handler<Run[], Output> {
  #pipeline: TextPipeline | undefined;
  #loop: StepRunner<TextGenerationRequest, Sequence, TextOutput> | undefined;
  #rules: TextGenerationRules | undefined;
  /** The grammar compiler over the model's vocabulary, made at the first guided request. */
  #guides: (() => Promise<Guides>) | undefined;

  async initialize(ctx: HandlerContext): Promise<void> {
    const speculative = ctx.spec.speculative;
    if (speculative) checkDraft({ spec: ctx.spec, dir: ctx.modelDir, draftDir: ctx.draftDir });
    this.#pipeline = await TextPipeline.load(ctx.modelDir, ctx.spec.runtime, speculative && { draftDir: ctx.draftDir!, k: speculative.k, maxBatch: speculative.maxBatch, adaptive: speculative.adaptive }, ctx.spec.prefixCache.maxBytes);
    this.#rules = textGenerationRules(ctx.spec, ctx.modelDir, this.#pipeline.tokenizer);
    this.#loop = ctx.stepLoop(textSteps(this.#pipeline));
    const { vocabSize, eosTokenIds } = this.#pipeline.info;
    let guides: Promise<Guides> | undefined;
    this.#guides = () => (guides ??= Guides.load(ctx.modelDir, vocabSize, eosTokenIds));
    ctx.logger.info({ ...this.#pipeline.info, speculative: this.#pipeline.speculative }, 'text-generation pipeline loaded');
    if (ctx.spec.runtime.warmup) await this.#loop.run([generationRequest(parseTextGeneration({ prompt: 'Hello', max_new_tokens: 2, seed: 0 }, this.#rules))]);
  }

  preprocess(requests: readonly InferenceRequest[]): Run[] {
    return requests.map((r) => ({ params: parseTextGeneration(r.input, this.#rules!), accept: r.accept }));
  }

  async inference(runs: Run[], ctx: RequestContext): Promise<Output[]> {
    const loop = this.#loop!;
    const pipeline = this.#pipeline!;
    return Promise.all(
      runs.map(async (run, i): Promise<Output> => {
        const handle = ctx.requests[i];
        // A retried attempt's client already has the first resume_chars of the text and the scores of its resumed tokens.
        let sent = run.params.resume_chars ?? 0;
        let scored = run.params.resume_tokens?.length ?? 0;
        let reported = scored;
        // Each report says where a retry would go on from: the tokens made since the last one, and the characters sent.
        const resume = (generated: readonly number[]): { resume: Record<string, unknown> } => {
          const fresh = generated.slice(reported);
          reported = generated.length;
          return { resume: { resume_tokens: fresh, resume_chars: sent } };
        };
        // With logprobs asked, each chunk carries the scores of the tokens chosen since the last one.
        const scores = (choices: readonly TokenChoice[]): { logprobs?: TokenLogprob[] } => {
          if (!run.params.logprobs) return {};
          const fresh = choices.slice(scored).map((c) => describeChoice(pipeline.tokenizer, c));
          scored = choices.length;
          return { logprobs: fresh };
        };
        // A guided request's matcher: its grammar compiled (or taken from the cache) before it joins the step loop.
        let guide: GuideMatcher | undefined;
        try {
          if (run.params.guide) guide = await (await this.#guides!()).matcher(run.params.guide, run.params.stop_token_ids);
        } catch (err) {
          if (isEaselError(err)) return err;
          throw err;
        }
        try {
          // What is certain by now (a stop string may still be forming at the end): the stream's
          // next chunk (token events of jobs and of streamed predictions). The first token comes
          // from the prefill, at once.
          const report = (states: readonly Sequence[]): void => {
            const s = states[0]!;
            const text = pipeline.stableText(s);
            if (text.length > sent) {
              const delta = text.slice(sent);
              sent = text.length;
              handle?.progress({ step: s.generated.length, total: s.request.maxNewTokens, text: delta, ...scores(s.choices), ...resume(s.generated) });
            }
          };
          const [output] = await loop.run([generationRequest(run.params, guide)], { signal: handle?.signal, onStep: report, onBegin: report });
          if (output!.text.length > sent || (run.params.logprobs && output!.choices.length > scored)) {
            const text = output!.text.slice(sent);
            sent = output!.text.length;
            handle?.progress({ step: output!.tokens.length, total: run.params.max_new_tokens, text, ...scores(output!.choices), ...resume(output!.tokens) });
          }
          return { output: output!, run };
        } catch (err) {
          if (isEaselError(err) && err.code === 'EASEL_CANCELLED') return err;
          throw err;
        } finally {
          guide?.dispose();
        }
      }),
    );
  }

  postprocess(outputs: Output[]): HandlerOutcome[] {
    return outputs.map((o) => (isEaselError(o) ? o : this.#respond(o.output, o.run)));
  }

  #respond(output: TextOutput, run: Run): HandlerResult {
    if (!run.accept || !/application\/json/.test(run.accept)) return { contentType: 'text/plain; charset=utf-8', data: new TextEncoder().encode(output.text) };
    const tokenizer = this.#pipeline!.tokenizer;
    const described = (c: TokenChoice): TokenLogprob => describeChoice(tokenizer, c);
    // With tools: the calls in the text, and the text around them; an answer that ends with calls finishes for them.
    const tools = run.params.tool_choice && run.params.tool_choice.mode !== 'none' ? extractToolCalls(output.text) : undefined;
    const calls = tools && tools.calls.length > 0 ? { content: tools.content, tool_calls: tools.calls } : {};
    return jsonResult({
      text: output.text,
      ...calls,
      finish_reason: 'tool_calls' in calls && output.finishReason === 'stop' ? 'tool_calls' : output.finishReason,
      seed: run.params.seed,
      usage: { prompt_tokens: output.promptTokens, completion_tokens: output.tokens.length, total_tokens: output.promptTokens + output.tokens.length },
      ...(run.params.logprobs ? { logprobs: output.choices.map(described) } : {}),
      // The prompt's tokens, scored (the first has nothing before it: null, as OpenAI's echo gives it).
      ...(output.promptChoices
        ? { prompt_logprobs: [{ token: tokenizer.tokenText(run.params.prompt_tokens[0]!), token_id: run.params.prompt_tokens[0], logprob: null, top_logprobs: null }, ...output.promptChoices.map(described)] }
        : {}),
    });
  }

  async dispose(): Promise<void> {
    await this.#pipeline?.release();
  }
}
