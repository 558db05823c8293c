/**
 * Real `nft -j list table ip weft-ipv4` output (nft 1.0.6, kernel 6.18), captured from a throw-away namespace
 * after applying Weft's rules for network 198.19.0.0/16, subnet 198.19.1.0/24, masquerade fully-random and
 * forward. Unit tests check that Weft's expected JSON matches what nft really prints.
 */
export const NFT_JSON_WEFT_IPV4 = `{"nftables":[
{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},
{"table":{"family":"ip","name":"weft-ipv4","handle":1}},
{"chain":{"family":"ip","table":"weft-ipv4","name":"postrtg","handle":1,"type":"nat","hook":"postrouting","prio":100,"policy":"accept"}},
{"chain":{"family":"ip","table":"weft-ipv4","name":"forward","handle":2,"type":"filter","hook":"forward","prio":0,"policy":"accept"}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"postrtg","handle":3,"expr":[{"match":{"op":"==","left":{"&":[{"meta":{"key":"mark"}},16384]},"right":16384}},{"return":null}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"postrtg","handle":4,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.19.1.0","len":24}}}},{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"return":null}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"postrtg","handle":5,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"198.19.1.0","len":24}}}},{"return":null}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"postrtg","handle":6,"expr":[{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"198.19.1.0","len":24}}}},{"return":null}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"postrtg","handle":7,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"224.0.0.0","len":4}}}},{"masquerade":{"flags":"fully-random"}}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"postrtg","handle":8,"expr":[{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"masquerade":{"flags":"fully-random"}}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"forward","handle":9,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"accept":null}]}},
{"rule":{"family":"ip","table":"weft-ipv4","chain":"forward","handle":10,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"198.19.0.0","len":16}}}},{"accept":null}]}}
]}`;

/** The same table as JSON with the rule of handle `handle` left out (a rule deleted by hand). */
export function withoutRule(json: string, handle: number): string {
  const doc = JSON.parse(json) as { nftables: Array<Record<string, { handle?: number }>> };
  return JSON.stringify({ nftables: doc.nftables.filter((i) => !(i.rule && i.rule.handle === handle)) });
}
