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
 *      the new full set against what it knew. When the watch that expired delivered nothing since the last
 *      list (a "410 storm": the server expires every watch while its cache re-initialises), the re-list waits
 *      out the same back-off as a failure, so a storm costs a bounded number of LISTs, not one per round trip.
 *
 * Every object is passed through `project` as it arrives (the consumer keeps only the fields it reads), and
 * events `accept` refuses (another node's event on a single-node watch: a broken server or proxy) are reported
 * to `onRejected` and otherwise ignored: they neither reach the consumer nor move the resourceVersion.
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
  /**
   * False while LIST or watch requests fail (the stream is being retried), true once a LIST succeeded or a watch
   * delivered again; undefined before the first LIST. The agent is not ready while it is false.
   */
  watchConnected?: boolean;
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
  /** Applied to every Node as it arrives (listed or watched), before it is queued: keep only what is read. */
  readonly project?: (node: V1Node) => V1Node;
  /** Events (and listed items) for which this is false are dropped: reported to onRejected, never yielded. */
  readonly accept?: (node: V1Node) => boolean;
  readonly onRejected?: (type: WatchEventType | "LIST", node: V1Node) => void;
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
  /** Whether any watch event arrived since the last LIST: a 410 after nothing at all is a storm, and waits. */
  let deliveredSinceList = true;
  const project = o.project ?? ((n: V1Node) => n);
  const accept = (type: WatchEventType | "LIST", n: V1Node): boolean => {
    if (!o.accept || o.accept(n)) return true;
    o.onRejected?.(type, n);
    return false;
  };
  const expired = async (message?: string) => {
    o.stats.watchFailures++;
    rv = undefined;
    if (deliveredSinceList) {
      o.logger.info("node watch expired (410 Gone); listing again", { resourceVersion: o.stats.resourceVersion, ...(message ? { message } : {}) });
      return;
    }
    const delay = backoff.next();
    o.logger.info(`node watch expired (410 Gone) again with nothing delivered since the last list; listing again in ${delay} ms`, {
      resourceVersion: o.stats.resourceVersion,
      ...(message ? { message } : {}),
    });
    await sleep(delay, signal);
  };
  const fail = async (what: string, err: unknown) => {
    o.stats.watchFailures++;
    o.stats.watchConnected = false;
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
      o.stats.watchConnected = true;
      deliveredSinceList = false;
      const nodes = list.items.filter((n) => accept("LIST", n)).map(project);
      list = undefined; // the whole list is not kept while the consumer works through it
      yield { kind: "relisted", nodes, resourceVersion: rv };
      if (signal.aborted) return;
    }

    const watchAbort = new AbortController();
    const stopWatch = () => watchAbort.abort();
    signal.addEventListener("abort", stopWatch, { once: true });
    const queue = new Queue<Item>();
    let ended = false;
    const started = performance.now();
    if (watches++ > 0) o.stats.watchRestarts++;
    try {
      const timeoutSeconds = Math.round(o.watchTimeoutSeconds * (1 + Math.random()));
      await o.client.watchNodes({
        resourceVersion: rv,
        ...(o.fieldSelector ? { fieldSelector: o.fieldSelector } : {}),
        timeoutSeconds,
        signal: watchAbort.signal,
        onEvent: (type, object) => {
          if (type === "ERROR" || type === "BOOKMARK") queue.push({ type, object });
          else if (accept(type, object)) queue.push({ type, object: project(object) });
        },
        onDone: (err) => {
          ended = true;
          queue.push({ done: err });
        },
      });
      // The stream is open (a failure would have ended it already): the server answers again, even if the
      // cluster is quiet and no event comes for a while.
      if (!ended) o.stats.watchConnected = true;
      for (;;) {
        const item = await queue.next(signal);
        if (item === undefined) return; // our caller aborted
        if ("done" in item) {
          if (signal.aborted) return;
          if (item.done === null) {
            // A clean end (server-side timeout). Reconnect at once, unless the server is closing us in a loop.
            if (performance.now() - started < 1000) await sleep(backoff.peek(), signal);
          } else if (isKubeApiError(item.done, 410)) {
            await expired();
          } else {
            await fail("watching nodes", item.done);
          }
          break;
        }
        const { type, object } = item;
        if (type === "ERROR") {
          if (object.code === 410) {
            await expired(typeof object.message === "string" ? object.message.slice(0, 200) : undefined);
          } else {
            await fail("watching nodes", new Error(`watch ERROR event: ${object.code ?? "?"} ${String(object.message ?? JSON.stringify(object)).slice(0, 200)}`));
          }
          break;
        }
        const objRv = object.metadata?.resourceVersion;
        if (objRv) {
          rv = objRv;
          o.stats.resourceVersion = rv;
        }
        backoff.reset(); // the watch delivers: the server is healthy again
        deliveredSinceList = true;
        o.stats.watchConnected = true;
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
