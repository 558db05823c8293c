/**
 * Typed DI tokens from one helper (STYLE 8). A token is a unique symbol carrying its value type, so
 * `container.resolve(KERNEL)` is typed without casts. Every constructor parameter of an injectable class takes
 * an explicit `@inject(TOKEN)`: esbuild bundles and vitest emit no decorator metadata.
 */
import type { InjectionToken } from "tsyringe";

/** A tsyringe injection token that carries the type of the value it resolves to. */
export type Token<T> = InjectionToken<T> & symbol & { readonly __type?: T };

/**
 * Creates the token for `name` (`Symbol.for(name)`, so the same name gives the same token across copies of this
 * package). Names are `weft.<thing>` by convention.
 */
export function createToken<T>(name: string): Token<T> {
  return Symbol.for(name) as Token<T>;
}
