/**
 * A JSON reader for configuration text that behaves like Go's encoding/json where JSON.parse does not, so a
 * Flannel net-conf.json means the same thing to Weft:
 *
 * - Duplicate keys: the LAST occurrence in the text wins, and the resulting object lists each key at the
 *   position of its last occurrence (JSON.parse keeps the first position), so a case-insensitive lookup that
 *   takes the last match (getKeyInsensitive) sees the keys in text order. A `null` repeat of a key that has
 *   a value changes nothing (Go leaves a value field unchanged for null).
 * - Numbers are checked in the raw text: `1e400` is refused as out of range (JSON.parse makes it Infinity, and
 *   JSON.stringify then prints "null").
 * - Nesting is bounded (MAX_JSON_DEPTH) and the reader is iterative: a deeply nested value is one clear error
 *   naming its path, never "Maximum call stack size exceeded" here or in whoever walks the value later.
 * - `__proto__` is an ordinary own key (never the object's prototype).
 *
 * Errors are ConfigErrors naming the source and the JSON path, with the value cut to a bounded length.
 */
import { ConfigError, describeValue } from "./errors.js";

/** Deepest nesting accepted in configuration JSON; real configs are 2 or 3 levels deep. */
export const MAX_JSON_DEPTH = 64;

type Container = { kind: "object"; value: Record<string, unknown>; key: string | undefined; path: string } | { kind: "array"; value: unknown[]; path: string };

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (Object.prototype.hasOwnProperty.call(obj, key)) {
    // Go leaves a field unchanged for null: a null repeat of a set key changes nothing.
    if (value === null && obj[key] !== null) return;
    delete obj[key]; // the last occurrence decides the position
  }
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function childPath(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  const shown = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/.test(key) ? key : describeValue(key, 40);
  return parent === "" ? shown : `${parent}.${shown}`;
}

/**
 * Parses JSON `text` as configuration (see the module note: last duplicate wins, finite numbers, bounded
 * depth). Throws a ConfigError naming `source` and the JSON path on any problem.
 */
export function parseConfigJson(text: string, source: string, maxDepth: number = MAX_JSON_DEPTH): unknown {
  let i = 0;
  const n = text.length;
  const fail = (path: string, msg: string): never => {
    throw new ConfigError(source, path, msg);
  };
  const where = (): string => {
    let line = 1;
    let col = 1;
    for (let j = 0; j < i && j < n; j++) {
      if (text.charCodeAt(j) === 10) {
        line++;
        col = 1;
      } else col++;
    }
    return `line ${line} column ${col}`;
  };
  const syntax = (what: string): never => fail("", `not valid JSON (${what} at ${where()}): fix the syntax`);
  const skipWs = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  // A string token ends at the first unescaped quote; control characters are not allowed inside. The token is
  // found with a regex (fast on megabyte values) and decoded by JSON.parse only when it holds an escape.
  const STRING_STOP = /["\\\u0000-\u001f]/g;
  const readString = (): string => {
    const start = i; // the opening quote
    let j = i + 1;
    let escaped = false;
    for (;;) {
      STRING_STOP.lastIndex = j;
      const m = STRING_STOP.exec(text);
      if (m === null) {
        i = n;
        return syntax("unterminated string");
      }
      const k = m.index;
      const ch = text.charCodeAt(k);
      if (ch === 0x22) {
        i = k + 1;
        break;
      }
      if (ch === 0x5c) {
        escaped = true;
        j = k + 2;
        continue;
      }
      i = k;
      return syntax("control character in a string");
    }
    const token = text.slice(start, i);
    if (!escaped) return token.slice(1, -1);
    try {
      return JSON.parse(token) as string;
    } catch {
      i = start;
      return syntax("bad escape in a string");
    }
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const readScalar = (path: string): unknown => {
    const c = text[i];
    if (c === '"') return readString();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m === null || m[0] === "" || m[0] === "-") return syntax(i >= n ? "unexpected end of input" : `unexpected character ${describeValue(text[i])}`);
    i += m[0].length;
    const v = Number(m[0]);
    if (!Number.isFinite(v)) return fail(path, `${path || "value"} ${describeValue(m[0], 40)} is out of range: use a finite number`);
    return v;
  };

  const stack: Container[] = [];
  let root: unknown;
  let done = false;
  // Places a finished value into the innermost container (or as the root).
  const place = (v: unknown): void => {
    const top = stack[stack.length - 1];
    if (top === undefined) {
      root = v;
      done = true;
    } else if (top.kind === "array") top.value.push(v);
    else setOwn(top.value, top.key!, v);
  };
  const pathHere = (): string => {
    const top = stack[stack.length - 1];
    if (top === undefined) return "";
    return top.kind === "array" ? childPath(top.path, top.value.length) : childPath(top.path, top.key!);
  };

  skipWs();
  for (;;) {
    // Expect a value.
    skipWs();
    if (i >= n) return syntax("unexpected end of input");
    const c = text[i];
    if (c === "{" || c === "[") {
      const path = pathHere();
      if (stack.length >= maxDepth) return fail(path, `${path || "value"} is nested deeper than ${maxDepth} levels: configuration values are flat; remove the nesting`);
      i++;
      skipWs();
      if (c === "{") {
        const obj: Record<string, unknown> = {};
        if (text[i] === "}") {
          i++;
          place(obj);
        } else {
          if (text[i] !== '"') return syntax("expected a key");
          const key = readString();
          skipWs();
          if (text[i] !== ":") return syntax("expected ':'");
          i++;
          stack.push({ kind: "object", value: obj, key, path });
          continue;
        }
      } else {
        const arr: unknown[] = [];
        if (text[i] === "]") {
          i++;
          place(arr);
        } else {
          stack.push({ kind: "array", value: arr, path });
          continue;
        }
      }
    } else {
      place(readScalar(pathHere()));
    }
    // After a value: close containers or move to the next element.
    for (;;) {
      if (done) {
        skipWs();
        if (i < n) return syntax("unexpected text after the value");
        return root;
      }
      skipWs();
      const top = stack[stack.length - 1]!;
      const d = text[i];
      if (d === ",") {
        i++;
        skipWs();
        if (top.kind === "object") {
          if (text[i] !== '"') return syntax("expected a key");
          top.key = readString();
          skipWs();
          if (text[i] !== ":") return syntax("expected ':'");
          i++;
        }
        break;
      }
      if ((d === "}" && top.kind === "object") || (d === "]" && top.kind === "array")) {
        i++;
        stack.pop();
        place(top.value);
        continue;
      }
      return syntax(i >= n ? "unexpected end of input" : `unexpected character ${describeValue(d)}`);
    }
  }
}
