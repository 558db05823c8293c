/**
 * Is CNI_NETNS a network namespace? Checked before a direct-mode ADD or CHECK touches anything, so that a wrong
 * path is the spec's "invalid environment variables" (code 4) with one line, not an `ip` failure halfway through.
 *
 * A namespace file (a bind mount under /run/netns, or /proc/<pid>/ns/net) lives on nsfs. Its kind shows in the
 * link target of the descriptor that opens it ("net:[4026531992]"). The file is opened only once statfs has said
 * nsfs: opening anything else (a FIFO, a device) could block or have side effects.
 */
import { closeSync, constants, openSync, readlinkSync, statfsSync } from "node:fs";

/** statfs f_type of nsfs (linux/magic.h NSFS_MAGIC). */
const NSFS_MAGIC = 0x6e736673;

/**
 * Undefined when `path` is a network namespace; otherwise the problem, as the rest of a message that starts with
 * "CNI_NETNS=<value>" (e.g. "does not exist: ..."). Never throws.
 */
export function netnsProblem(path: string): string | undefined {
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    if (code === "ENOENT" || code === "ENOTDIR") return "does not exist: the container's network namespace is gone or the path is wrong";
    return `cannot be examined (${code}): it must be the path of the container's network namespace`;
  }
  if (type !== NSFS_MAGIC) return "is not a network namespace: give the path of a namespace file such as /run/netns/<name> or /proc/<pid>/ns/net";
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    const target = readlinkSync(`/proc/self/fd/${fd}`);
    const kind = /^([a-z_]+):\[\d+\]$/.exec(target)?.[1];
    if (kind !== undefined && kind !== "net") return `is a ${kind.slice(0, 20)} namespace, not a network namespace`;
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    // Without /proc the kind cannot be read; nsfs was enough then.
    if (fd !== undefined && code === "ENOENT") return undefined;
    return `cannot be opened (${code}): it must be the path of the container's network namespace`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
