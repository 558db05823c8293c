/**
 * Structured JSON logs (pino) behind core's Logger port. Secret-looking fields are redacted by path, and every
 * message and string field goes through core's redactCredentials (a second line of defence: `user:pass@` in a
 * URL, and registered secrets such as the etcd password, never reach a log line whichever code path wrote it).
 */
import { type LogFields, type Logger, redactCredentials, redactFields } from "@weft/core";
import { type DestinationStream, pino, type Logger as Pino } from "pino";

const REDACT = ["password", "*.password", "privateKey", "*.privateKey", "psk", "*.psk", "PSK", "*.PSK", "etcd-password"];

class PinoLogger implements Logger {
  constructor(private readonly p: Pino) {}
  debug(msg: string, f?: LogFields) {
    if (this.p.isLevelEnabled("debug")) this.p.debug(redactFields(f ?? {}), redactCredentials(msg));
  }
  info(msg: string, f?: LogFields) {
    if (this.p.isLevelEnabled("info")) this.p.info(redactFields(f ?? {}), redactCredentials(msg));
  }
  warn(msg: string, f?: LogFields) {
    this.p.warn(redactFields(f ?? {}), redactCredentials(msg));
  }
  error(msg: string, f?: LogFields) {
    this.p.error(redactFields(f ?? {}), redactCredentials(msg));
  }
  child(fields: LogFields): Logger {
    return new PinoLogger(this.p.child(redactFields(fields)));
  }
}

/**
 * A JSON logger writing to stderr synchronously (so the last line before an exit is never lost), or to
 * `destination` (tests).
 */
export function createLogger(level: string, base: LogFields = {}, name = "weftd", destination?: DestinationStream): Logger {
  const p = pino(
    {
      level,
      name,
      // Subsystems add their own `component`; the base must not carry one too (JSON would repeat the key).
      base: redactFields({ ...base }),
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: "(hidden)" },
    },
    destination ?? pino.destination({ fd: 2, sync: true }),
  );
  return new PinoLogger(p);
}
