/**
 * reflectNodes: list + watch of Nodes, the way client-go's reflector does it, as an async stream of deltas.
 *
 *   1. LIST → the full set and its resourceVersion (delta `relisted`).
 *   2. WATCH from that resourceVersion with bookmarks and a server-side timeout; every event, bookmark
 *      included, advances the resourceVersion we resume from.
 *   3. The stream ends cleanly (timeout, server restart) → watch again from the last resourceVersion.
 *      It fails (network, 5xx) → back off, watch again from the last resourceVersion.
 *   4. 410 Gone — as an ERROR event carrying a Status with code 410 (what the watch cache sends) or as an HTTP
 *      410 — means the resourceVersion is older than the server's history: go back to 1. The consumer diffs
 *      the new full set against what it knew.
 *
 * Bookmarks matter when the watch is narrow (a field selector on one node): without them the resourceVersion
 * we hold stops moving, falls out of the history, and every reconnect costs a full re-list.
 */
import type { V1Node } from "@kubernetes/client-node";
import { Backoff, type Logger, errorMessage, sleep } from "@weft/core";
import { type KubeApiError, type KubeNodeClient, type WatchEventType, isKubeApiError } from "./kube-client.js";

export type NodeDelta =
  | { readonly kind: "relisted"; readonly nodes: readonly V1Node[]; readonly resourceVersion: string }
  | { readonly kind: "upsert"; readonly node: V1Node }
  | { readonly kind: "deleted"; readonly node: V1Node };

export interface ReflectorStats {
  /** LIST calls that succeeded (the first one included). */
  relists: number;
  /** Watches opened after the first one (normal server-side timeouts included). */
  watchRestarts: number;
  /** Failed LISTs and watches (errors and 410 Gone), the ones an operator should see: not normal timeouts. */
  watchFailures: number;
  bookmarks: number;
  /** The resourceVersion a reconnecting watch would resume from. */
  resourceVersion: string;
}

export interface ReflectorOptions {
  readonly client: KubeNodeClient;
  readonly logger: Logger;
  readonly stats: ReflectorStats;
  readonly fieldSelector?: string;
  /** First back-off after a failure; doubles up to 30 s. */
  readonly retryDelayMs: number;
  /** Server-side watch timeout; randomised up to twice this, as client-go does, so agents do not reconnect in step. */
  readonly watchTimeoutSeconds: number;
}

const MAX_BACKOFF_MS = 30_000;

type Item = { type: WatchEventType; object: V1Node & { code?: number; message?: string } } | { done: KubeApiError | null };

/** An unbounded FIFO that a callback producer fills and an async consumer drains. */
class Queue<T> {
  private items: T[] = [];
  private wake?: () => void;
  push(item: T): void {
    this.items.push(item);
    this.wake?.();
  }
  /** The next item, or undefined once `signal` aborts. */
  async next(signal: AbortSignal): Promise<T | undefined> {
    while (this.items.length === 0) {
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        this.wake = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        signal.addEventListener("abort", onAbort, { once: true });
      });
      this.wake = undefined;
    }
    return this.items.shift();
  }
}


export async function* reflectNodes(o: ReflectorOptions, signal: AbortSignal): AsyncGenerator<NodeDelta> {
  let rv: string | undefined;
  // retryDelayMs doubling up to 30 s, without jitter (the server-side watch timeout is jittered instead).
  const minMs = Math.max(1, o.retryDelayMs);
  const backoff = new Backoff({ minMs, maxMs: Math.max(minMs, MAX_BACKOFF_MS), jitter: 0 });
  let watches = 0;
  const fail = async (what: string, err: unknown) => {
    o.stats.watchFailures++;
    const delay = backoff.next();
    o.logger.warn(`${what} failed; retrying in ${delay} ms`, { error: errorMessage(err) });
    await sleep(delay, signal);
  };

  while (!signal.aborted) {
    if (rv === undefined) {
      let list;
      try {
        list = await o.client.listNodes(signal, o.fieldSelector);
      } catch (e) {
        if (signal.aborted) return;
        await fail("listing nodes", e);
        continue;
      }
      rv = list.metadata?.resourceVersion ?? "";
      o.stats.relists++;
      o.stats.resourceVersion = rv;
      yield { kind: "relisted", nodes: list.items, resourceVersion: rv };
      if (signal.aborted) return;
    }

    const watchAbort = new AbortController();
    const stopWatch = () => watchAbort.abort();
    signal.addEventListener("abort", stopWatch, { once: true });
    const queue = new Queue<Item>();
    const started = Date.now();
    if (watches++ > 0) o.stats.watchRestarts++;
    try {
      const timeoutSeconds = Math.round(o.watchTimeoutSeconds * (1 + Math.random()));
      await o.client.watchNodes({
        resourceVersion: rv,
        ...(o.fieldSelector ? { fieldSelector: o.fieldSelector } : {}),
        timeoutSeconds,
        signal: watchAbort.signal,
        onEvent: (type, object) => queue.push({ type, object }),
        onDone: (err) => queue.push({ done: err }),
      });
      for (;;) {
        const item = await queue.next(signal);
        if (item === undefined) return; // our caller aborted
        if ("done" in item) {
          if (signal.aborted) return;
          if (item.done === null) {
            // A clean end (server-side timeout). Reconnect at once, unless the server is closing us in a loop.
            if (Date.now() - started < 1000) await sleep(backoff.peek(), signal);
          } else if (isKubeApiError(item.done, 410)) {
            o.logger.info("node watch expired (410 Gone); listing again", { resourceVersion: rv });
            o.stats.watchFailures++;
            rv = undefined;
          } else {
            await fail("watching nodes", item.done);
          }
          break;
        }
        const { type, object } = item;
        if (type === "ERROR") {
          if (object.code === 410) {
            o.logger.info("node watch expired (410 Gone); listing again", { resourceVersion: rv, message: object.message });
            o.stats.watchFailures++;
            rv = undefined;
          } else {
            await fail("watching nodes", new Error(`watch ERROR event: ${object.code ?? "?"} ${object.message ?? JSON.stringify(object)}`));
          }
          break;
        }
        const objRv = object.metadata?.resourceVersion;
        if (objRv) {
          rv = objRv;
          o.stats.resourceVersion = rv;
        }
        backoff.reset(); // the watch delivers: the server is healthy again
        if (type === "BOOKMARK") {
          o.stats.bookmarks++;
          continue;
        }
        if (type === "ADDED" || type === "MODIFIED") yield { kind: "upsert", node: object };
        else if (type === "DELETED") yield { kind: "deleted", node: object };
        if (signal.aborted) return;
      }
    } finally {
      signal.removeEventListener("abort", stopWatch);
      watchAbort.abort();
    }
  }
}
