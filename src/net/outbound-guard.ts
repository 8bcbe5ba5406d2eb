// The one guard for every outbound connection a user can aim (webhooks, model URLs): http/https
// only, the name resolved and every address checked (no loopback, private, link-local, CGNAT,
// multicast, reserved, or their IPv6 / IPv4-mapped / NAT64 forms), the connection made to the
// checked address (no DNS rebinding between check and connect), no redirects, a timeout and a
// size cap. An operator's anchored allow-list opens it for named hosts.
import { lookup as dnsLookup } from 'node:dns/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { BlockList, isIPv6, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { EaselError } from '../errors/easel-error.js';

export interface ResolvedAddress {
  address: string;
  family: number;
}

export interface OutboundPolicy {
  /** Anchored patterns over a URL's host (`name` or `name:port`) that may reach any address. */
  readonly allowedHosts: readonly RegExp[];
  /** The operator named this very URL (a model URL on `allowedUrls`): its host may be internal. */
  readonly operatorNamed?: boolean;
  /** Name resolution (tests pass their own); every address it returns is checked. */
  readonly resolve?: ((hostname: string) => Promise<ResolvedAddress[]>) | undefined;
}

/** Compiles an operator's patterns so that each must match the whole string (TorchServe's allowed_urls). */
export function anchoredPatterns(patterns: readonly string[]): RegExp[] {
  return patterns.map((p) => new RegExp(`^(?:${p})$`));
}

/**
 * The deprecated IPv4-compatible IPv6 block (::/96: `::127.0.0.1`, `::a9fe:a9fe`), refused whole:
 * some stacks route it to the IPv4 address it embeds. Node's own parser decides membership
 * (ipaddr.js reads `::8.8.8.8` as IPv4-mapped).
 */
const IPV4_COMPATIBLE = new BlockList();
IPV4_COMPATIBLE.addSubnet('::', 96, 'ipv6');

/** Whether an address is one the public internet routes to (only `unicast` ranges are). */
export function isPublicAddress(address: string): boolean {
  if (!ipaddr.isValid(address)) return false;
  if (isIPv6(address) && IPV4_COMPATIBLE.check(address, 'ipv6')) return false;
  let ip = ipaddr.parse(address);
  if (ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()) ip = (ip as ipaddr.IPv6).toIPv4Address();
  return ip.range() === 'unicast';
}

function refused(field: string, message: string): EaselError {
  return new EaselError('EASEL_URL_REFUSED', message, { field });
}

/** Parses a user-supplied URL: http(s), no credentials. Decimal/octal/hex IPv4 spellings are normalized by the URL parser. */
export function parseOutboundUrl(raw: unknown, field: string): URL {
  const url = typeof raw === 'string' && URL.canParse(raw) ? new URL(raw) : undefined;
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw refused(field, `${field} must be an http(s) URL, got ${JSON.stringify(raw)}`);
  if (url.username !== '' || url.password !== '') throw refused(field, `${field} must not carry credentials in the URL`);
  return url;
}

function hostAllowed(url: URL, policy: OutboundPolicy): boolean {
  return policy.operatorNamed === true || policy.allowedHosts.some((r) => r.test(url.host) || r.test(url.hostname));
}

/** The hostname without IPv6 brackets. */
function bareHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

const defaultResolve = async (hostname: string): Promise<ResolvedAddress[]> => dnsLookup(hostname, { all: true, verbatim: true });

/**
 * Resolves the URL's host and checks every address; returns those it may connect to. Throws
 * EASEL_URL_REFUSED naming `field` for an internal address (unless the host is allow-listed)
 * or a name that does not resolve.
 */
export async function checkOutbound(url: URL, policy: OutboundPolicy, field: string): Promise<ResolvedAddress[]> {
  const host = bareHost(url);
  if (ipaddr.isValid(host)) {
    const address = { address: host, family: host.includes(':') ? 6 : 4 };
    if (!hostAllowed(url, policy) && !isPublicAddress(host)) throw refused(field, `${field} points at ${host}, an internal address (loopback, private, link-local or reserved); only public addresses are allowed unless the operator allow-lists the host`);
    return [address];
  }
  // localhost names are loopback by definition (RFC 6761): refused by name, nothing is resolved.
  if (!hostAllowed(url, policy) && /(^|\.)localhost\.?$/i.test(host)) throw refused(field, `${field} points at ${host}, a loopback name; only public addresses are allowed unless the operator allow-lists the host`);
  let addresses: ResolvedAddress[];
  try {
    addresses = await (policy.resolve ?? defaultResolve)(host);
  } catch (err) {
    throw new EaselError('EASEL_URL_REFUSED', `${field}: the host ${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? 'lookup failed'})`, { field, cause: err });
  }
  if (addresses.length === 0) throw refused(field, `${field}: the host ${host} does not resolve`);
  if (hostAllowed(url, policy)) return addresses;
  const internal = addresses.find((a) => !isPublicAddress(a.address));
  if (internal) throw refused(field, `${field}: ${host} resolves to ${internal.address}, an internal address (loopback, private, link-local or reserved); only public addresses are allowed unless the operator allow-lists the host`);
  return addresses;
}

export interface OutboundRequest {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  timeoutMs: number;
  /** The request's field name, for errors (`webhook`, `url`). */
  field: string;
}

/**
 * Makes one request through the guard. The socket connects to an address checkOutbound
 * accepted, never to a second resolution; redirects are returned, not followed. The caller
 * reads (and caps) the response body.
 */
export async function guardedRequest(url: URL, policy: OutboundPolicy, o: OutboundRequest): Promise<IncomingMessage> {
  const checked = await checkOutbound(url, policy, o.field);
  const lookup: LookupFunction = (_hostname, options, callback) => {
    const first = checked[0]!;
    if ((options as { all?: boolean }).all) (callback as (err: null, addresses: ResolvedAddress[]) => void)(null, checked);
    else callback(null, first.address, first.family);
  };
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<IncomingMessage>((resolve, reject) => {
    const req = client.request(url, { method: o.method, headers: o.headers, lookup, timeout: o.timeoutMs, agent: false }, resolve);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Reads a response body up to `maxBytes`, then gives up on it. */
export async function readCapped(res: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      res.destroy();
      break;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
