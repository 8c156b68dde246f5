// Reading untrusted JSON as plain data: only own properties count, never anything inherited from Object.prototype.

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** o[k] when k is o's own property, else undefined (so "constructor", "__proto__" etc. are never inherited). */
export function ownValue(o: Record<string, unknown> | undefined, k: string): unknown {
  return o !== undefined && Object.hasOwn(o, k) ? o[k] : undefined;
}
