/**
 * What weftctl prints comes partly from the network (weftd's /status, /readyz and /drift, the CNI server's answer)
 * and from the node (device names, file names). A peer name, an error text or a device name can carry terminal
 * escape sequences (retitle the window, clear the screen, hide text, reorder it with bidi overrides); none of that
 * may reach the operator's terminal. Every such character is shown as a visible escape instead:
 *   - C0 controls (U+0000–U+001F), DEL (U+007F) and C1 controls (U+0080–U+009F) as `\xHH` (`\n`, `\r`, `\t` by name);
 *   - bidi controls (ALM U+061C, LRM/RLM U+200E/U+200F, embeddings and overrides U+202A–U+202E, isolates
 *     U+2066–U+2069) as `\u{HHHH}`.
 * A backslash is left as it is: the escapes are for reading, not for reversing.
 */

/** Every character {@link escapeText} rewrites. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
/** The same without newline: what {@link escapeOutput} rewrites in text weftctl composed itself. */
const CONTROL_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
/** What JSON.stringify leaves raw inside strings although a terminal acts on it. */
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

const NAMED: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function visible(ch: string): string {
  const named = NAMED[ch];
  if (named) return named;
  const code = ch.codePointAt(0)!;
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
}

/** `text` with every control character (newline too) shown as a visible escape: for one field from the network. */
export function escapeText(text: string): string {
  return text.replace(CONTROL, visible);
}

/** Like {@link escapeText}, cut to `max` characters (with `...`) first: for an error text that may be a megabyte. */
export function escapeShort(text: string, max = 80): string {
  return escapeText(text.length > max ? `${text.slice(0, max)}...` : text);
}

/** Text weftctl composed (lines it wrote, fields already escaped): every control character but newline escaped. */
export function escapeOutput(text: string): string {
  return text.replace(CONTROL_BUT_NEWLINE, visible);
}

/**
 * `value` as indented JSON for `--json`, with DEL, C1 and bidi controls written as `\uHHHH` (JSON.stringify
 * escapes only C0): the same data for a machine, nothing a terminal acts on.
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(JSON_UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
