import { createServer, type Server } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { anchoredPatterns, checkOutbound, guardedRequest, isPublicAddress, parseOutboundUrl, readCapped, type OutboundPolicy, type ResolvedAddress } from './outbound-guard.js';

/** A resolver that must not be asked (the address is refused from its spelling alone). */
const noLookup = async (host: string): Promise<ResolvedAddress[]> => {
  throw new Error(`lookup of ${host} attempted`);
};
const closed: OutboundPolicy = { allowedHosts: [], resolve: noLookup };

describe('outbound guard', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    server = undefined;
  });

  it('knows public addresses from internal ones, IPv4-mapped and NAT64 forms included', () => {
    for (const a of ['8.8.8.8', '1.1.1.1', '2001:4860:4860::8888']) expect(isPublicAddress(a), a).toBe(true);
    const internal = ['127.0.0.1', '127.1.2.3', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255',
      '::1', '::', 'fe80::1', 'fc00::1', 'fd12::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '64:ff9b::a9fe:a9fe', '2002:7f00:1::1', 'ff02::1', 'not-an-ip',
      // IPv4-compatible IPv6 (::/96), deprecated: loopback, metadata, private and public IPv4 inside.
      '::127.0.0.1', '::a9fe:a9fe', '::10.0.0.1', '::8.8.8.8', '0:0:0:0:0:0:7f00:1'];
    for (const a of internal) expect(isPublicAddress(a), a).toBe(false);
  });

  it('refuses internal addresses in every spelling before any lookup or connection', async () => {
    // Any socket connect would throw here: a refusal that came from the network could not pass.
    const connect = vi.spyOn(Socket.prototype, 'connect').mockImplementation(() => {
      throw new Error('a connection was attempted');
    });
    onTestFinished(() => connect.mockRestore());
    const urls = ['http://127.0.0.1:8081/models?url=x', 'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://2130706433/', 'http://0x7f000001/', 'http://017700000001/', 'http://127.1/',
      'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://192.168.0.1/', 'http://[fd00::1]/', 'http://0/', 'http://[::127.0.0.1]/', 'http://[::a9fe:a9fe]/'];
    for (const u of urls) {
      await expect(checkOutbound(parseOutboundUrl(u, 'webhook'), closed, 'webhook'), u).rejects.toMatchObject({ code: 'EASEL_URL_REFUSED', field: 'webhook' });
      await expect(guardedRequest(parseOutboundUrl(u, 'webhook'), closed, { method: 'POST', timeoutMs: 1000, field: 'webhook' }), u).rejects.toMatchObject({ code: 'EASEL_URL_REFUSED' });
    }
    expect(connect).not.toHaveBeenCalled();
  });

  it('refuses a name when any address it resolves to is internal, without connecting', async () => {
    const connect = vi.spyOn(Socket.prototype, 'connect').mockImplementation(() => {
      throw new Error('a connection was attempted');
    });
    onTestFinished(() => connect.mockRestore());
    // A fake resolver answers (no DNS is asked): one public address, one loopback; connect is stubbed, so neither is reached.
    const evil: OutboundPolicy = { allowedHosts: [], resolve: async () => [{ address: '93.184.216.34', family: 4 }, { address: '127.0.0.1', family: 4 }] };
    await expect(checkOutbound(new URL('http://rebind.example/'), evil, 'webhook')).rejects.toThrow(/resolves to 127\.0\.0\.1, an internal address/);
    await expect(guardedRequest(new URL('http://rebind.example/'), evil, { method: 'POST', timeoutMs: 1000, field: 'webhook' })).rejects.toMatchObject({ code: 'EASEL_URL_REFUSED' });
    expect(connect).not.toHaveBeenCalled();
    // localhost names are refused by name: not even a lookup is made.
    const noLookup: OutboundPolicy = { allowedHosts: [], resolve: async () => { throw new Error('a lookup was attempted'); } };
    for (const host of ['localhost', 'LOCALHOST.', 'api.localhost']) {
      await expect(checkOutbound(new URL(`http://${host}:9/`), noLookup, 'webhook'), host).rejects.toMatchObject({ code: 'EASEL_URL_REFUSED', message: expect.stringMatching(/loopback name/) });
    }
  });

  it('refuses other schemes and credentials in the URL', () => {
    for (const u of ['file:///etc/passwd', 'gopher://x/', 'ftp://x/', 'not a url', 'http://user:pw@example.com/']) expect(() => parseOutboundUrl(u, 'webhook'), u).toThrow(/webhook must/);
  });

  it('reaches an allow-listed host, connects to the address it checked, and does not follow redirects', async () => {
    const seen: string[] = [];
    server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} host=${req.headers.host}`);
      if (req.url === '/redirect') res.writeHead(302, { location: 'http://127.0.0.1:1/models' }).end();
      else res.end('x'.repeat(1000));
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    // A name the operator allows, which the resolver maps to loopback: the socket goes there.
    const policy: OutboundPolicy = { allowedHosts: anchoredPatterns([`hooks\\.internal:${port}`]), resolve: async () => [{ address: '127.0.0.1', family: 4 }] };
    const res = await guardedRequest(new URL(`http://hooks.internal:${port}/ok`), policy, { method: 'POST', body: '{}', timeoutMs: 2000, field: 'webhook' });
    expect(res.statusCode).toBe(200);
    expect((await readCapped(res, 100)).length).toBeLessThanOrEqual(100);
    const redirected = await guardedRequest(new URL(`http://hooks.internal:${port}/redirect`), policy, { method: 'POST', timeoutMs: 2000, field: 'webhook' });
    expect(redirected.statusCode).toBe(302);
    redirected.resume();
    expect(seen).toEqual([`POST /ok host=hooks.internal:${port}`, `POST /redirect host=hooks.internal:${port}`]);
    // Anchored: a pattern for one host does not open another that merely contains it.
    const loose: OutboundPolicy = { allowedHosts: anchoredPatterns(['hooks\\.internal']), resolve: async () => [{ address: '127.0.0.1', family: 4 }] };
    await expect(checkOutbound(new URL('http://hooks.internal/'), loose, 'webhook')).resolves.toHaveLength(1);
    await expect(checkOutbound(new URL('http://hooks.internal.evil/'), loose, 'webhook')).rejects.toMatchObject({ code: 'EASEL_URL_REFUSED' });
  });
});
