/** The one ProcessRunner this library uses (tests may read it to run their own commands the same way). */
import { ExecaRunner } from "@weft/kernel";

export const labRunner: ExecaRunner = new ExecaRunner();
