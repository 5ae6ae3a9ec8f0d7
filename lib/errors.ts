/**
 * An error the user can fix (bad spec, bad flag, unreachable host). Commands print
 * its message as one paragraph, without a stack trace, and exit with `exitCode`.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "UserError";
  }
}
