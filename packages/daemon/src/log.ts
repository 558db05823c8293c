/** Structured JSON logs (pino) behind core's Logger port. Secret-looking fields are redacted by path. */
import type { LogFields, Logger } from "@weft/core";
import { pino, type Logger as Pino } from "pino";

const REDACT = ["password", "*.password", "privateKey", "*.privateKey", "psk", "*.psk", "PSK", "*.PSK", "etcd-password"];

class PinoLogger implements Logger {
  constructor(private readonly p: Pino) {}
  debug(msg: string, f?: LogFields) {
    this.p.debug(f ?? {}, msg);
  }
  info(msg: string, f?: LogFields) {
    this.p.info(f ?? {}, msg);
  }
  warn(msg: string, f?: LogFields) {
    this.p.warn(f ?? {}, msg);
  }
  error(msg: string, f?: LogFields) {
    this.p.error(f ?? {}, msg);
  }
  child(fields: LogFields): Logger {
    return new PinoLogger(this.p.child(fields));
  }
}

/** A JSON logger writing to stderr synchronously (so the last line before an exit is never lost). */
export function createLogger(level: string, base: LogFields = {}, name = "weftd"): Logger {
  const p = pino(
    {
      level,
      name,
      // Subsystems add their own `component`; the base must not carry one too (JSON would repeat the key).
      base: { ...base },
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT, censor: "(hidden)" },
    },
    pino.destination({ fd: 2, sync: true }),
  );
  return new PinoLogger(p);
}
