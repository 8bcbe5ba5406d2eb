// How a job's input is stored: JSON that keeps uploaded bytes.

/** JSON that keeps uploaded bytes: Uint8Array ↔ {"$bytes": base64}. */
export function encodeInput(input: Readonly<Record<string, unknown>>): string {
  return JSON.stringify(input, (_key, value: unknown) => (value instanceof Uint8Array ? { $bytes: Buffer.from(value).toString('base64') } : value));
}

export function decodeInput(text: string): Record<string, unknown> {
  return JSON.parse(text, (_key, value: unknown) => {
    if (value && typeof value === 'object' && typeof (value as { $bytes?: unknown }).$bytes === 'string') {
      return new Uint8Array(Buffer.from((value as { $bytes: string }).$bytes, 'base64'));
    }
    return value;
  }) as Record<string, unknown>;
}
