/**
 * The exit codes every command shares (the README's table): 0 success, 1 a check or an operation
 * failed, 2 bad input or usage, or a refusal before anything changed. Codes 3 and up are
 * command-specific and listed in each command's --help.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/**
 * An error the user can fix (bad spec, bad flag, unreachable host). Commands print
 * its message as one paragraph, without a stack trace, and exit with `exitCode`
 * (2, bad input, unless the error is a failed operation: EXIT.failed).
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.usage,
  ) {
    super(message);
    this.name = "UserError";
  }
}
