/** Structured logging port. The agent binds a JSON logger; tests bind a recording or silent one. */
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

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
