// The chat tab: a text model's reply streamed token by token through /v1/chat/completions, with
// a system prompt, temperature and max tokens; Stop ends the stream; tokens/s shown.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, streamChat, type ChatMessage, type Model } from './api.js';
import { Field, ModelPicker } from './fields.js';

/** The fields that show the API's message beside them; other errors show under the messages. */
const FIELDS: ReadonlySet<string> = new Set(['temperature', 'max_tokens']);

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
  useEffect(() => () => running.current?.abort(), []);

  if (!model) return <p class="empty">No chat model is served.</p>;

  const send = async (e?: Event): Promise<void> => {
    e?.preventDefault();
    if (busy || draft.trim() === '') return;
    setError(undefined);
    const history: ChatMessage[] = [...turns.map(({ role, content }) => ({ role, content })), { role: 'user', content: draft }];
    const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...history] : history;
    setTurns([...history, { role: 'assistant', content: '' }]);
    setDraft('');
    const controller = new AbortController();
    running.current = controller;
    setBusy(true);
    const started = performance.now();
    let text = '';
    const show = (change: Partial<Turn>): void => setTurns((t) => [...t.slice(0, -1), { ...t[t.length - 1]!, ...change }]);
    try {
      const usage = await streamChat({ model: model.id, messages, temperature, max_tokens: maxTokens }, (piece) => {
        text += piece;
        show({ content: text });
      }, controller.signal);
      const seconds = (performance.now() - started) / 1000;
      show({ content: text, stopped: controller.signal.aborted, tokensPerSecond: usage && seconds > 0 ? usage.completion_tokens / seconds : undefined });
    } catch (err) {
      setTurns(history);
      setDraft(history[history.length - 1]!.content);
      setError(err instanceof ApiError ? { field: err.field, message: `${err.message} (${err.code})` } : { message: String(err) });
    } finally {
      running.current = undefined;
      setBusy(false);
    }
  };

  const invalid = (field: string): string | undefined => (error?.field === field ? error.message : undefined);
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
        <div class="messages" data-testid="messages" aria-live="polite">
          {turns.map((t, i) => (
            <div class={`message ${t.role}`} data-testid={`message-${t.role}`} data-done={t.role === 'assistant' && !(busy && i === turns.length - 1) ? 'true' : 'false'}>
              <p>{t.content}</p>
              {t.tokensPerSecond !== undefined && <small data-testid="tokens-per-second">{t.tokensPerSecond.toFixed(0)} tokens/s</small>}
              {t.stopped && <small>stopped</small>}
            </div>
          ))}
        </div>
        {error && !FIELDS.has(error.field ?? '') && <p class="error" role="alert" data-testid="chat-error">{error.message}</p>}
        <div class="row send">
          <textarea name="message" rows={2} value={draft} onInput={(e) => setDraft(e.currentTarget.value)} onKeyDown={(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); void send(); } }} placeholder="Ask something (Enter sends, Shift+Enter for a new line)" data-testid="chat-input" />
          {busy ? <button type="button" class="secondary" data-testid="stop" onClick={() => running.current?.abort()}>Stop</button> : <button type="submit" data-testid="send">Send</button>}
        </div>
      </form>
    </div>
  );
}
