// The playground: Easel's image and chat models in a page, through the public API only.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { apiKey, healthy, listModels, setApiKey, whenKeyNeeded, type Model } from './api.js';
import { ChatTab } from './chat-tab.js';
import { ImageTab } from './image-tab.js';
import './style.css';

function App() {
  const [tab, setTab] = useState<'image' | 'chat'>('image');
  const [models, setModels] = useState<Model[]>([]);
  const [loadError, setLoadError] = useState('');
  const [up, setUp] = useState<boolean | null>(null);
  const [askKey, setAskKey] = useState(apiKey() !== '');
  const [key, setKey] = useState(apiKey());

  const load = (): void => {
    listModels().then(
      (m) => {
        setModels(m);
        setLoadError('');
      },
      (err: Error) => setLoadError(err.message),
    );
  };
  useEffect(() => {
    whenKeyNeeded(() => setAskKey(true));
    load();
    const check = (): void => void healthy().then(setUp);
    check();
    const timer = setInterval(check, 5000);
    return () => clearInterval(timer);
  }, []);

  const imageModels = models.filter((m) => m.easel?.task === 'text-to-image');
  const chatModels = models.filter((m) => m.easel?.task === 'text-generation' && m.easel.parameters.chat === true);
  return (
    <div class="app">
      <header>
        <h1>Easel</h1>
        <nav role="tablist">
          <button role="tab" aria-selected={tab === 'image'} data-testid="tab-image" onClick={() => setTab('image')}>Image</button>
          <button role="tab" aria-selected={tab === 'chat'} data-testid="tab-chat" onClick={() => setTab('chat')}>Chat</button>
        </nav>
        {askKey && (
          <label class="key">
            API key
            <input type="password" value={key} data-testid="api-key" onInput={(e) => setKey(e.currentTarget.value)} onChange={() => { setApiKey(key); load(); }} />
          </label>
        )}
        <span class={`health ${up === null ? '' : up ? 'up' : 'down'}`} data-testid="health" title={up === null ? 'checking the server' : up ? 'the server is healthy' : 'the server does not answer /ping'}>
          {up === null ? '…' : up ? 'healthy' : 'unreachable'}
        </span>
      </header>
      {loadError && <p class="error" role="alert">{loadError}</p>}
      {/* Both stay mounted: jobs keep running and streaming while the other tab is shown. */}
      <main>
        <section hidden={tab !== 'image'}>
          <ImageTab models={imageModels} />
        </section>
        <section hidden={tab !== 'chat'}>
          <ChatTab models={chatModels} />
        </section>
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
