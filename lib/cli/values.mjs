// Typed readers of option values: numbers, times, JSON text or @file, device-id lists. Each
// throws a usage error (exit 2) naming the option, so a typo never reaches the hub.
import { readFileSync } from 'node:fs';

import { usageError } from './failure.mjs';

/** A number as given (decimals allowed where `integer` is false), within [min, max]. */
export function number(values, name, { min = 0, max = Infinity, integer = true } = {}) {
  const text = values[name];
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
    const range = max === Infinity ? `at least ${min}` : `${min}..${max}`;
    throw usageError(`--${name} must be ${integer ? 'a whole number' : 'a number'} ${range}, not '${text}'`);
  }
  return n;
}

/** Seconds: a whole number unless `integer` is false. */
export const seconds = number;

export function ratio(values, name) {
  return number(values, name, { min: 0, max: 1, integer: false });
}

export function isoTime(values, name) {
  const text = values[name];
  if (text === undefined) return undefined;
  const time = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(time.getTime())) {
    throw usageError(`--${name} must be an ISO 8601 time such as 2026-12-24T06:00:00Z, not '${text}'`);
  }
  return time;
}

/** `@path` → the file's text; anything else is the text itself. */
function textOrFile(name, text) {
  if (!text.startsWith('@')) return text;
  try {
    return readFileSync(text.slice(1), 'utf8');
  } catch (err) {
    throw usageError(`--${name}: cannot read ${text.slice(1)} (${err.code ?? err.message})`);
  }
}

export function json(values, name) {
  const text = values[name];
  if (text === undefined) return undefined;
  try {
    return JSON.parse(textOrFile(name, text));
  } catch (err) {
    if (err.exitCode) throw err;
    throw usageError(`--${name} is not valid JSON (${err.message})`);
  }
}

/** A twin patch: an object with `tags` and/or `properties.desired`; `etag` defaults to '*'. */
export function twinPatch(values, name) {
  const patch = json(values, name);
  if (patch === undefined) return undefined;
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(patch) || !(isObject(patch.tags) || isObject(patch.properties?.desired))) {
    throw usageError(`--${name} must be a JSON object with "tags" and/or "properties": {"desired": …}`);
  }
  return { etag: '*', ...patch };
}

/** `@file` (one id per line, or a JSON array of strings) or `a,b,c`. */
export function deviceIds(values, name) {
  const text = values[name];
  if (text === undefined) return undefined;
  const content = textOrFile(name, text).trim();
  let ids;
  if (content.startsWith('[')) {
    try {
      ids = JSON.parse(content);
    } catch (err) {
      throw usageError(`--${name}: the JSON array does not parse (${err.message})`);
    }
    if (!ids.every((id) => typeof id === 'string')) throw usageError(`--${name}: the JSON array must hold strings only`);
  } else {
    ids = content.split(text.startsWith('@') ? /\r?\n/ : ',');
  }
  ids = ids.map((id) => id.trim()).filter(Boolean);
  if (ids.length === 0) throw usageError(`--${name}: no device id given`);
  const seen = new Set();
  for (const id of ids) {
    if (seen.has(id)) throw usageError(`--${name}: device '${id}' is listed twice`);
    seen.add(id);
  }
  return ids;
}

/** `10,100,1000` → [10, 100, 1000]. */
export function counts(values, name) {
  const text = values[name];
  if (text === undefined) return undefined;
  const list = text.split(',').map((part) => Number(part.trim()));
  if (list.length === 0 || !list.every((n) => Number.isInteger(n) && n > 0)) {
    throw usageError(`--${name} must be positive whole numbers separated by commas, e.g. 10,100,1000, not '${text}'`);
  }
  return list;
}

export function oneOf(values, name, allowed) {
  const text = values[name];
  if (text !== undefined && !allowed.includes(text)) {
    throw usageError(`--${name} must be one of ${allowed.join(', ')}, not '${text}'`);
  }
  return text;
}
