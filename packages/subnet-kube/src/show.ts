/** How values read from the cluster or a flag appear in a log line or an error: bounded and escaped. */

/**
 * A value as it may appear in a log line: JSON-quoted (control characters escaped, C1 controls and DEL too), cut
 * to 80 characters with the full length noted. Never echoes a megabyte.
 */
export function showAnnotationValue(raw: string, max = 80): string {
  const cut = raw.length > max ? raw.slice(0, max) : raw;
  const quoted = JSON.stringify(cut).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return raw.length > max ? `${quoted}… (${raw.length} characters)` : quoted;
}
