/**
 * TrafficRules over the NetfilterPort, the same for both modes: the plan becomes Flannel's rules as data
 * (model.ts), one ruleset per family, and the port makes the kernel hold exactly those, atomically, writing
 * only what differs. This file decides what is wanted and reports what changed; the port (in @weft/kernel)
 * owns the tools, their syntax and their errors.
 */
import { type Family, type Logger, SerialQueue, silentLogger } from "@weft/core";
import { type NetfilterPort, type NetfilterRuleset, netsOf } from "@weft/kernel";
import { type TrafficPlan, type TrafficReport, type TrafficRules, checkPlan, forwardRules, masqueradeRules, previousDiffers } from "./model.js";

/** Masquerade and forward rules through a NetfilterPort (see TrafficRules). */
export class NetfilterTrafficRules implements TrafficRules {
  private readonly logger: Logger;
  /** Families whose absence from the plan has already been enforced (so a v4-only node reads IPv6 tables once). */
  private readonly absentChecked = new Set<Family>();
  private readonly warned = new Set<Family>();
  private readonly queue = new SerialQueue();

  constructor(
    /** The port the rules are written through; its mode is the traffic mode. */
    readonly port: NetfilterPort,
    options: { readonly logger?: Logger } = {},
  ) {
    this.logger = options.logger ?? silentLogger;
  }

  async ensure(plan: TrafficPlan): Promise<TrafficReport> {
    checkPlan(plan);
    return this.queue.run(() => this.ensureNow(plan));
  }

  async cleanup(): Promise<void> {
    await this.removeAll();
  }

  /** cleanup(), returning what was rewritten (e.g. `iptables nat`, `ip weft-ipv4`); empty when nothing of Weft's was there. */
  removeAll(): Promise<string[]> {
    return this.queue.run(async () => {
      const removed = await this.port.remove();
      this.absentChecked.clear();
      return removed;
    });
  }

  private async ensureNow(plan: TrafficPlan): Promise<TrafficReport> {
    const rulesets: NetfilterRuleset[] = [];
    let fullyRandom = false;
    for (const f of ["v4", "v6"] as const) {
      const t = plan[f];
      if (!t) {
        // A family not (or no longer) in the plan: remove Weft's rules there once; the port tolerates a host
        // without that family's tools (there can be nothing of ours there then).
        if (!this.absentChecked.has(f)) rulesets.push({ family: f, chains: {} });
        continue;
      }
      const random = plan.masquerade && plan.fullyRandom && (await this.supportsFullyRandom(f));
      if (plan.masquerade) fullyRandom ||= random;
      rulesets.push({
        family: f,
        chains: {
          ...(plan.masquerade ? { postrouting: masqueradeRules(t, random) } : {}),
          ...(plan.forward ? { forward: forwardRules(t) } : {}),
        },
      });
    }
    const changes = await this.port.apply(rulesets);
    const rewritten: string[] = [];
    const removedPrevious: Family[] = [];
    for (const change of changes) {
      const t = plan[change.family];
      rewritten.push(...change.rewritten);
      if (t) this.absentChecked.delete(change.family);
      else this.absentChecked.add(change.family);
      if (t && change.rewritten.length > 0 && previousDiffers(t)) {
        // Weft owns its chains whole, so rules of the previous values went in the same write; say so.
        const previous = [t.previous!.network, t.previous!.subnet].filter((n) => !n.equals(t.network) && !n.equals(t.subnet));
        if (netsOf(change.before).some((n) => previous.some((p) => p.equals(n)))) removedPrevious.push(change.family);
      }
    }
    if (rewritten.length > 0) this.logger.info(`traffic rules rewritten: ${rewritten.join(", ")}`, { mode: this.port.mode, rewritten });
    return { changed: rewritten.length > 0, rewritten, fullyRandom, removedPrevious };
  }

  private async supportsFullyRandom(f: Family): Promise<boolean> {
    const s = await this.port.supportsFullyRandom(f);
    if (!s.supported && !this.warned.has(f)) {
      this.warned.add(f);
      this.logger.warn(`${this.port.mode}: masquerade with fully random ports (--random-fully) is not accepted for ${f} (${s.detail ?? "no reason given"}); masquerading without it`);
    }
    return s.supported;
  }
}
