import { describe, expect, it } from "vitest";
import { renumber } from "./ip-coprocess.js";

describe("IpCoprocessRunner's stderr renumbering", () => {
  it("numbers failed lines from the batch's start and drops the end marker's lines", () => {
    // A coprocess that had read 10 lines before this batch of 3 (+ the marker, line 14).
    const stderr = [
      "RTNETLINK answers: File exists",
      "Command failed -:12",
      'Object "weft-sentinel" is unknown, try "ip help".',
      "Command failed -:13",
      'Object "weft-coprocess-end" is unknown, try "ip help".',
      "Command failed -:14",
      "",
    ].join("\n");
    expect(renumber(stderr, 10, 14)).toEqual({
      text: 'RTNETLINK answers: File exists\nCommand failed -:2\nObject "weft-sentinel" is unknown, try "ip help".\nCommand failed -:3\n',
      done: true,
      failed: true,
    });
  });

  it("is not done before the marker's line, and ignores a partial last line", () => {
    expect(renumber("Warning: x\nCommand failed -:3\nObject", 2, 5)).toEqual({ text: "Warning: x\nCommand failed -:1\n", done: false, failed: true });
    expect(renumber('Object "weft-coprocess-end" is unknown\nCommand failed -:1\n', 0, 1)).toEqual({ text: "", done: true, failed: false });
  });
});
