// The chat tab: a text model's reply streamed token by token through /v1/chat/completions, with
// a system prompt, temperature and max tokens; Stop ends the stream; tokens/s shown. Tools: the
// functions the model may call (OpenAI's tools JSON) and tool_choice; a call shows its name and
// arguments, and the user types the tool's result back. JSON mode: response_format, with a
// schema or without (any object).
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, streamChat, type ChatMessage, type Model, type ToolCall } from './api.js';
import { Field, ModelPicker } from './fields.js';

/** The fields that show the API's message beside them; other errors show under the messages. */
const FIELDS: ReadonlySet<string> = new Set(['temperature', 'max_tokens', 'tools', 'response_format']);

/** The form field an error's field belongs to (`tools[0].function.name` is the tools box's). */
function owner(field: string | undefined): string | undefined {
  return field === undefined ? undefined : [...FIELDS].find((f) => field === f || field.startsWith(`${f}.`) || field.startsWith(`${f}[`));
}

/** A box's JSON, or a field error naming the box. */
function parseBox(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'EASEL_INVALID_PARAMETER', `${field} is not JSON`, field);
  }
}

interface Turn extends ChatMessage {
  /** The reply's speed: completion tokens ÷ seconds from sending to the last token. */
  tokensPerSecond?: number | undefined;
  stopped?: boolean | undefined;
}

export function ChatTab({ models }: { models: Model[] }) {
  const [modelId, setModelId] = useState('');
  const model = models.find((m) => m.id === modelId) ?? models[0];
  const [system, setSystem] = useState('');
  const [temperature, setTemperature] = useState(0.7);
  const [maxTokens, setMaxTokens] = useState(128);
  const [draft, setDraft] = useState('');
  const [turns, setTurns] = useState<Turn[]>([]);
  const [error, setError] = useState<{ field?: string | undefined; message: string } | undefined>();
  const running = useRef<AbortController | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [tools, setTools] = useState('');
  const [toolChoice, setToolChoice] = useState<'auto' | 'required' | 'none'>('auto');
  const [jsonMode, setJsonMode] = useState(false);
  const [schema, setSchema] = useState('');
  /** The results typed for the last turn's calls, by call id. */
  const [results, setResults] = useState<Record<string, string>>({});
  useEffect(() => () => running.current?.abort(), []);

  if (!model) return <p class="empty">No chat model is served.</p>;

  const pending = turns.at(-1)?.tool_calls;
  const send = async (e?: Event): Promise<void> => {
    e?.preventDefault();
    // The next turn: the user's message, or the results of the calls the model just made.
    const answering = pending && pending.every((c) => (results[c.id] ?? '') !== '');
    if (busy || (!answering && draft.trim() === '')) return;
    setError(undefined);
    const next: ChatMessage[] = answering ? pending.map((c) => ({ role: 'tool', content: results[c.id]!, tool_call_id: c.id })) : [{ role: 'user', content: draft }];
    const history: ChatMessage[] = [...turns.map(({ role, content, tool_calls, tool_call_id }) => ({ role, content, tool_calls, tool_call_id })), ...next];
    const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...history] : history;
    let extra: Record<string, unknown>;
    try {
      extra = {
        ...(tools.trim() ? { tools: parseBox(tools, 'tools'), tool_choice: toolChoice } : {}),
        ...(jsonMode ? { response_format: schema.trim() ? { type: 'json_schema', json_schema: { name: 'playground', schema: parseBox(schema, 'response_format') } } : { type: 'json_object' } } : {}),
      };
    } catch (err) {
      setError(err instanceof ApiError ? { field: err.field, message: err.message } : { message: String(err) });
      return;
    }
    setTurns([...history, { role: 'assistant', content: '' }]);
    if (!answering) setDraft('');
    setResults({});
    const controller = new AbortController();
    running.current = controller;
    setBusy(true);
    const started = performance.now();
    let text = '';
    const calls: ToolCall[] = [];
    const show = (change: Partial<Turn>): void => setTurns((t) => [...t.slice(0, -1), { ...t[t.length - 1]!, ...change }]);
    try {
      const usage = await streamChat({ model: model.id, messages, temperature, max_tokens: maxTokens, ...extra }, (piece) => {
        text += piece;
        show({ content: text });
      }, controller.signal, (call) => {
        calls.push(call);
        show({ tool_calls: [...calls] });
      });
      const seconds = (performance.now() - started) / 1000;
      show({ content: text, stopped: controller.signal.aborted, tokensPerSecond: usage && seconds > 0 ? usage.completion_tokens / seconds : undefined });
    } catch (err) {
      setTurns(history.slice(0, history.length - next.length));
      if (!answering) setDraft(history[history.length - 1]!.content);
      setError(err instanceof ApiError ? { field: err.field, message: `${err.message} (${err.code})` } : { message: String(err) });
    } finally {
      running.current = undefined;
      setBusy(false);
    }
  };

  const invalid = (field: string): string | undefined => (owner(error?.field) === field ? error!.message : undefined);
  return (
    <div class="chat-tab">
      <form class="panel" onSubmit={(e) => void send(e)} data-testid="chat-form">
        <div class="row">
          <ModelPicker models={models} value={model.id} onChange={setModelId} />
          <Field name="temperature" label="Temperature" error={invalid('temperature')}>
            <input type="number" name="temperature" min={0} max={2} step={0.1} value={temperature} onInput={(e) => setTemperature(Number(e.currentTarget.value))} />
          </Field>
          <Field name="max_tokens" label="Max tokens" error={invalid('max_tokens')}>
            <input type="number" name="max_tokens" min={1} step={1} value={maxTokens} onInput={(e) => setMaxTokens(Number(e.currentTarget.value))} />
          </Field>
        </div>
        <Field name="system" label="System prompt">
          <textarea name="system" rows={2} value={system} onInput={(e) => setSystem(e.currentTarget.value)} placeholder="You are a helpful assistant." />
        </Field>
        <details class="structured">
          <summary>Tools and JSON mode</summary>
          <Field name="tools" label="Tools (OpenAI's tools JSON)" error={invalid('tools')}>
            <textarea name="tools" rows={3} value={tools} onInput={(e) => setTools(e.currentTarget.value)} placeholder='[{"type": "function", "function": {"name": "time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}}}}]' data-testid="tools" />
          </Field>
          <Field name="tool_choice" label="Tool choice">
            <select name="tool_choice" value={toolChoice} onChange={(e) => setToolChoice(e.currentTarget.value as 'auto' | 'required' | 'none')} data-testid="tool-choice">
              <option value="auto">auto</option>
              <option value="required">required</option>
              <option value="none">none</option>
            </select>
          </Field>
          <label class="toggle">
            <input type="checkbox" checked={jsonMode} onChange={(e) => setJsonMode(e.currentTarget.checked)} data-testid="json-mode" /> JSON mode
          </label>
          {jsonMode && (
            <Field name="response_format" label="JSON schema (empty: any object)" error={invalid('response_format')}>
              <textarea name="schema" rows={3} value={schema} onInput={(e) => setSchema(e.currentTarget.value)} placeholder='{"type": "object", "properties": {"color": {"enum": ["red", "blue"]}}, "required": ["color"]}' data-testid="json-schema" />
            </Field>
          )}
        </details>
        <div class="messages" data-testid="messages" aria-live="polite">
          {turns.map((t, i) => (
            <div class={`message ${t.role}`} data-testid={`message-${t.role}`} data-done={t.role === 'assistant' && !(busy && i === turns.length - 1) ? 'true' : 'false'}>
              {t.content !== '' && <p>{t.content}</p>}
              {t.tool_calls?.map((c) => (
                <div class="tool-call" data-testid="tool-call">
                  <code data-testid="tool-call-name">{c.function.name}</code> <code data-testid="tool-call-arguments">{c.function.arguments}</code>
                  {i === turns.length - 1 && !busy && (
                    <input type="text" aria-label={`result of ${c.function.name}`} placeholder="the tool's result" value={results[c.id] ?? ''} onInput={(e) => setResults({ ...results, [c.id]: e.currentTarget.value })} data-testid="tool-result" />
                  )}
                </div>
              ))}
              {t.role === 'tool' && <small>tool result</small>}
              {t.tokensPerSecond !== undefined && <small data-testid="tokens-per-second">{t.tokensPerSecond.toFixed(0)} tokens/s</small>}
              {t.stopped && <small>stopped</small>}
            </div>
          ))}
        </div>
        {error && !owner(error.field) && <p class="error" role="alert" data-testid="chat-error">{error.message}</p>}
        <div class="row send">
          <textarea name="message" rows={2} value={draft} onInput={(e) => setDraft(e.currentTarget.value)} onKeyDown={(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); void send(); } }} placeholder="Ask something (Enter sends, Shift+Enter for a new line)" data-testid="chat-input" />
          {busy ? <button type="button" class="secondary" data-testid="stop" onClick={() => running.current?.abort()}>Stop</button> : <button type="submit" data-testid="send">{pending ? 'Send results' : 'Send'}</button>}
        </div>
      </form>
    </div>
  );
}
