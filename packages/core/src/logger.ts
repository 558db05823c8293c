/** Structured logging port. The agent binds a JSON logger; tests bind a recording or silent one. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Structured logger: a short message plus fields. Never put secrets in either. */
export interface Logger {
  /** Detail for debugging; off in normal operation. */
  debug(msg: string, fields?: LogFields): void;
  /** A normal event an operator may want to see. */
  info(msg: string, fields?: LogFields): void;
  /** Something is wrong but the agent carries on (and retries). */
  warn(msg: string, fields?: LogFields): void;
  /** An operation failed. */
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record (e.g. `{ component: "vxlan" }`). */
  child(fields: LogFields): Logger;
}

/** A Logger that drops everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

/** One record kept by MemoryLogger, with the child loggers' fields merged in. */
export interface LogRecord {
  readonly level: "debug" | "info" | "warn" | "error";
  readonly msg: string;
  readonly fields: LogFields;
}

/** A logger that keeps records in memory, for tests. */
export class MemoryLogger implements Logger {
  constructor(
    readonly records: LogRecord[] = [],
    private readonly bound: LogFields = {},
  ) {}
  private push(level: LogRecord["level"], msg: string, fields?: LogFields) {
    this.records.push({ level, msg, fields: { ...this.bound, ...fields } });
  }
  debug(msg: string, f?: LogFields) {
    this.push("debug", msg, f);
  }
  info(msg: string, f?: LogFields) {
    this.push("info", msg, f);
  }
  warn(msg: string, f?: LogFields) {
    this.push("warn", msg, f);
  }
  error(msg: string, f?: LogFields) {
    this.push("error", msg, f);
  }
  child(fields: LogFields): Logger {
    return new MemoryLogger(this.records, { ...this.bound, ...fields });
  }
}
