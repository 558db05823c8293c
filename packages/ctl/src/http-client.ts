/**
 * The HTTP client weftctl reads weftd with (node:http, GET only). A failure to connect becomes one line naming
 * the endpoint and what to check, never a stack trace.
 */
import { request } from "node:http";

/** The default endpoint: weftd's health server on this node as docs/deploy/weft.yaml runs it (--healthz-ip 127.0.0.1, --healthz-port 8081). */
export const DEFAULT_ENDPOINT = "http://127.0.0.1:8081";

/** weftd could not be read: connection refused, timeout, a bad answer. The message is the one line to print. */
export class EndpointError extends Error {
  override readonly name = "EndpointError";
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** Validates an `--endpoint` value: http://host:port, no path. */
export function parseEndpoint(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new EndpointError(`--endpoint ${JSON.stringify(text)} is not a URL: use http://<healthz-ip>:<healthz-port>, e.g. ${DEFAULT_ENDPOINT}`);
  }
  if (url.protocol !== "http:") throw new EndpointError(`--endpoint ${JSON.stringify(text)}: weftd's health server speaks plain http; use http://<healthz-ip>:<healthz-port>`);
  return url;
}

export function unreachable(endpoint: string, cause: string): EndpointError {
  return new EndpointError(
    `cannot reach weftd at ${endpoint} (${cause}): check that weftd is running on this node with --healthz-port set, and that --endpoint matches its --healthz-ip and --healthz-port`,
  );
}

/** GET `path` from `endpoint`. Any status is an answer; only transport failures throw (EndpointError). */
export function httpGet(endpoint: string, path: string, timeoutMs = 5000): Promise<HttpAnswer> {
  const base = parseEndpoint(endpoint);
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: "GET", timeout: timeoutMs, headers: { Accept: "application/json, text/plain" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", (err) => reject(unreachable(endpoint, err.message)));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (err: NodeJS.ErrnoException) => reject(unreachable(endpoint, err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message)));
    req.end();
  });
}
